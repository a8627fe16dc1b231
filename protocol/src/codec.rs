//! [`SeataCodec`]: protocol v1 framing for `tokio_util::codec::Framed`.
//!
//! Like Netty's `LengthFieldBasedFrameDecoder` in Java Seata, it finds frames by `fullLength`
//! and refuses one over the limit; unlike it, it checks the header (magic, version, lengths)
//! before waiting for the body, so a bad or oversized frame costs no buffering.

use bytes::BytesMut;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::ProtocolError;
use crate::frame::{FrameHeader, RpcFrame, DEFAULT_MAX_FRAME_LEN, HEADER_LEN};

/// A codec failure: the socket, or the bytes on it.
#[derive(Debug, Error)]
pub enum CodecError {
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not a valid frame, or a frame could not be encoded.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Frames [`RpcFrame`]s on a byte stream.
#[derive(Debug, Clone)]
pub struct SeataCodec {
    max_frame_len: usize,
    /// Header of the frame whose body we are waiting for.
    pending: Option<FrameHeader>,
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
        }
    }

    /// The frame length limit.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }
}

impl Decoder for SeataCodec {
    type Item = RpcFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RpcFrame>, CodecError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                FrameHeader::check_magic(src)?;
                let Some(head) = src.get(..HEADER_LEN) else {
                    src.reserve(HEADER_LEN - src.len());
                    return Ok(None);
                };
                let h = FrameHeader::parse(head, self.max_frame_len)?;
                self.pending = Some(h);
                h
            }
        };
        if src.len() < header.full_len {
            // Safe to reserve: full_len was checked against the limit above.
            src.reserve(header.full_len - src.len());
            return Ok(None);
        }
        self.pending = None;
        let frame = src.split_to(header.full_len);
        let rest = frame.get(HEADER_LEN..).unwrap_or_default();
        Ok(Some(RpcFrame::decode_after_header(
            &header,
            rest,
            self.max_frame_len,
        )?))
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
