//! [`SeataCodec`]: protocol v1 framing for `tokio_util::codec::Framed`.
//!
//! Like Netty's `LengthFieldBasedFrameDecoder` in Java Seata, it finds frames by `fullLength`
//! and refuses one over the limit; unlike it, it checks the header (magic, version, lengths)
//! before waiting for the body, so a bad or oversized frame costs no buffering.
//!
//! Memory: a frame's buffer grows with the bytes that actually arrived (the read buffer
//! doubles as it fills), never from the claimed `fullLength` alone, so a header claiming 8 MiB
//! costs what was sent. Frames larger than [`UNCHARGED_FRAME_LEN`] are also charged, while
//! they are being assembled, to a process-wide [`FrameBudget`]: when it is spent, the
//! connection asking for more is closed rather than the process running out of memory.
//!
//! A frame whose body has a type code this crate does not know (a message newer than Seata
//! 1.2, e.g. Seata 2.x's resource unregister) is consumed and skipped: the connection stays up
//! and the peer's request simply gets no answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};
use tracing::info;

use crate::error::ProtocolError;
use crate::frame::{FrameHeader, RpcFrame, DEFAULT_MAX_FRAME_LEN, HEADER_LEN};

/// Frames up to this length are not charged to the [`FrameBudget`]: they fit the read buffer
/// every connection has anyway.
pub const UNCHARGED_FRAME_LEN: usize = 64 * 1024;

/// A codec failure: the socket, or the bytes on it.
#[derive(Debug, Error)]
pub enum CodecError {
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not a valid frame, or a frame could not be encoded.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Assembling this frame would take the process over its budget for partly received
    /// frames (`frame-memory-budget`).
    #[error("frame of {frame_len} bytes refused: {used} of the {limit}-byte budget for partly received frames is in use")]
    MemoryBudget {
        /// Claimed length of the frame.
        frame_len: usize,
        /// Bytes charged to the budget when it was refused.
        used: usize,
        /// The budget.
        limit: usize,
    },
}

impl CodecError {
    /// True when the peer reset or aborted the connection (not a fault of its bytes).
    pub fn is_peer_reset(&self) -> bool {
        use std::io::ErrorKind;
        matches!(self, CodecError::Io(e) if matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ))
    }
}

/// Process-wide budget of bytes held by frames being assembled (shared by every connection's
/// codec). Charges are taken as a frame's buffer grows and given back when the frame is
/// complete or its connection goes away.
#[derive(Debug)]
pub struct FrameBudget {
    limit: usize,
    used: AtomicUsize,
}

impl PartialEq for FrameBudget {
    /// The same budget object (the budget is shared, not a value).
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for FrameBudget {}

impl FrameBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FrameBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn try_charge(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Frames [`RpcFrame`]s on a byte stream.
#[derive(Debug)]
pub struct SeataCodec {
    max_frame_len: usize,
    /// Header of the frame whose body we are waiting for.
    pending: Option<FrameHeader>,
    budget: Option<Arc<FrameBudget>>,
    /// Bytes this codec has charged to `budget` for the pending frame.
    charged: usize,
    /// Frames skipped because of an unknown body type code.
    skipped: u64,
}

impl Clone for SeataCodec {
    /// A codec with the same limits; charges stay with the original.
    fn clone(&self) -> Self {
        SeataCodec {
            max_frame_len: self.max_frame_len,
            pending: self.pending,
            budget: self.budget.clone(),
            charged: 0,
            skipped: 0,
        }
    }
}

impl Drop for SeataCodec {
    fn drop(&mut self) {
        self.uncharge();
    }
}

impl Default for SeataCodec {
    fn default() -> Self {
        SeataCodec::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl SeataCodec {
    /// A codec refusing frames longer than `max_frame_len` bytes (both directions).
    pub fn new(max_frame_len: usize) -> Self {
        SeataCodec {
            max_frame_len,
            pending: None,
            budget: None,
            charged: 0,
            skipped: 0,
        }
    }

    /// The same, charging frames being assembled to `budget`.
    pub fn with_budget(max_frame_len: usize, budget: Option<Arc<FrameBudget>>) -> Self {
        SeataCodec {
            budget,
            ..SeataCodec::new(max_frame_len)
        }
    }

    /// The frame length limit.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Frames skipped so far because their body's type code is unknown.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped
    }

    fn uncharge(&mut self) {
        if let Some(b) = &self.budget {
            b.release(self.charged);
        }
        self.charged = 0;
    }

    /// Charges the buffer of a large frame being assembled to the budget.
    fn charge(&mut self, header: &FrameHeader, src: &BytesMut) -> Result<(), CodecError> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        if header.full_len <= UNCHARGED_FRAME_LEN {
            return Ok(());
        }
        let want = src.capacity().min(header.full_len);
        if want <= self.charged {
            return Ok(());
        }
        let more = want - self.charged;
        if !budget.try_charge(more) {
            return Err(CodecError::MemoryBudget {
                frame_len: header.full_len,
                used: budget.used(),
                limit: budget.limit(),
            });
        }
        self.charged = want;
        Ok(())
    }

    /// One frame from `src`, if complete; an unknown body type is an `UnknownMessage` error
    /// with the frame consumed.
    fn decode_one(&mut self, src: &mut BytesMut) -> Result<Option<RpcFrame>, CodecError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                FrameHeader::check_magic(src)?;
                let Some(head) = src.get(..HEADER_LEN) else {
                    return Ok(None);
                };
                let h = FrameHeader::parse(head, self.max_frame_len)?;
                self.pending = Some(h);
                h
            }
        };
        if src.len() < header.full_len {
            // Nothing is reserved here: the read buffer grows (doubling) as bytes arrive, so a
            // peer claiming a large frame and sending little costs little.
            self.charge(&header, src)?;
            return Ok(None);
        }
        self.pending = None;
        self.uncharge();
        let frame = src.split_to(header.full_len);
        let rest = frame.get(HEADER_LEN..).unwrap_or_default();
        Ok(Some(RpcFrame::decode_after_header(
            &header,
            rest,
            self.max_frame_len,
        )?))
    }
}

impl Decoder for SeataCodec {
    type Item = RpcFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RpcFrame>, CodecError> {
        loop {
            match self.decode_one(src) {
                Err(CodecError::Protocol(ProtocolError::UnknownMessage { code, request_id })) => {
                    // Not fatal: the frame was whole and is consumed; the next one starts
                    // right after it.
                    self.skipped += 1;
                    info!(
                        code,
                        request_id,
                        "frame skipped: message type code unknown to Seata 1.2; no answer is sent"
                    );
                }
                other => return other,
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<RpcFrame>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::TruncatedFrame(src.len()).into()),
        }
    }
}

impl Encoder<RpcFrame> for SeataCodec {
    type Error = CodecError;

    fn encode(&mut self, item: RpcFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Encoder::<&RpcFrame>::encode(self, &item, dst)
    }
}

impl Encoder<&RpcFrame> for SeataCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &RpcFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let start = dst.len();
        if let Err(e) = item.encode(dst) {
            dst.truncate(start); // never leave half a frame in the buffer (unlike Java)
            return Err(e.into());
        }
        let len = dst.len() - start;
        if len > self.max_frame_len {
            dst.truncate(start);
            return Err(ProtocolError::FrameTooLong {
                len: len as u64,
                max: self.max_frame_len,
            }
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{GlobalBeginRequest, Message};

    fn frame_bytes() -> BytesMut {
        let mut out = BytesMut::new();
        let msg: Message = GlobalBeginRequest {
            timeout: 1,
            transaction_name: "x".repeat(40),
        }
        .into();
        SeataCodec::default()
            .encode(RpcFrame::request(5, msg), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn decodes_byte_by_byte() {
        let all = frame_bytes();
        let mut codec = SeataCodec::default();
        let mut buf = BytesMut::new();
        let mut got = None;
        for (i, b) in all.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let r = codec.decode(&mut buf).unwrap();
            if i + 1 < all.len() {
                assert!(r.is_none());
            } else {
                got = r;
            }
        }
        assert_eq!(got.unwrap().request_id, 5);
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_magic_before_a_full_header() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1"[..2]);
        let err = SeataCodec::default().decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            CodecError::Protocol(ProtocolError::BadMagic(0x4745))
        ));
    }

    #[test]
    fn refuses_oversized_frame_without_buffering_it() {
        let mut buf = frame_bytes();
        buf.truncate(16);
        let mut codec = SeataCodec::new(32);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            CodecError::Protocol(ProtocolError::FrameTooLong { .. })
        ));
    }

    /// A header claiming `len` bytes, with an empty head map.
    fn header_claiming(len: u32) -> BytesMut {
        let mut h = frame_bytes();
        h.truncate(HEADER_LEN);
        h[3..7].copy_from_slice(&len.to_be_bytes());
        h[7..9].copy_from_slice(&16u16.to_be_bytes());
        h
    }

    #[test]
    fn header_claiming_the_max_reserves_nothing_for_it() {
        let mut buf = header_claiming(DEFAULT_MAX_FRAME_LEN as u32);
        let before = buf.capacity();
        let mut codec = SeataCodec::default();
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.capacity(), before);
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn frame_budget_refuses_past_the_limit_and_is_given_back() {
        let budget = Arc::new(FrameBudget::new(300 * 1024));
        let claim = 1024 * 1024u32;
        let mut a = SeataCodec::with_budget(DEFAULT_MAX_FRAME_LEN, Some(budget.clone()));
        let mut buf_a = header_claiming(claim);
        buf_a.reserve(200 * 1024);
        assert!(a.decode(&mut buf_a).unwrap().is_none());
        assert!(budget.used() >= 200 * 1024);
        let mut b = SeataCodec::with_budget(DEFAULT_MAX_FRAME_LEN, Some(budget.clone()));
        let mut buf_b = header_claiming(claim);
        buf_b.reserve(200 * 1024);
        assert!(matches!(
            b.decode(&mut buf_b),
            Err(CodecError::MemoryBudget { .. })
        ));
        // Small frames are never charged.
        let mut c = SeataCodec::with_budget(DEFAULT_MAX_FRAME_LEN, Some(budget.clone()));
        let mut small = frame_bytes();
        small.reserve(200 * 1024);
        assert!(c.decode(&mut small).unwrap().is_some());
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn unknown_message_type_is_skipped_and_the_stream_goes_on() {
        let mut unknown = frame_bytes();
        // Body type code (right after the 16-byte header): 120, a code Seata 1.2 lacks.
        unknown[16..18].copy_from_slice(&120i16.to_be_bytes());
        let mut buf = unknown.clone();
        buf.extend_from_slice(&frame_bytes());
        let mut codec = SeataCodec::default();
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.request_id, 5);
        assert!(buf.is_empty());
        assert_eq!(codec.skipped_frames(), 1);
        assert!(matches!(
            RpcFrame::decode(&unknown, DEFAULT_MAX_FRAME_LEN),
            Err(ProtocolError::UnknownMessage {
                code: 120,
                request_id: 5
            })
        ));
    }

    #[test]
    fn eof_inside_a_frame_is_an_error() {
        let mut buf = frame_bytes();
        buf.truncate(20);
        let err = SeataCodec::default().decode_eof(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            CodecError::Protocol(ProtocolError::TruncatedFrame(_))
        ));
    }

    #[test]
    fn encoder_refuses_frames_over_limit_and_leaves_buffer_clean() {
        let mut codec = SeataCodec::new(20);
        let mut out = BytesMut::from(&b"xy"[..]);
        let msg: Message = GlobalBeginRequest::default().into();
        let err = codec
            .encode(RpcFrame::request(1, msg), &mut out)
            .unwrap_err();
        assert!(matches!(
            err,
            CodecError::Protocol(ProtocolError::FrameTooLong { .. })
        ));
        assert_eq!(&out[..], b"xy");
    }
}
