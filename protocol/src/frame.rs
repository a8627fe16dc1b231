//! The protocol v1 frame (spec 1.1–1.2): a 16-byte header, an optional head map and the body.
//!
//! ```text
//!  0      2   3          7        9     10     11     12         16            headLength   fullLength
//!  +------+---+----------+--------+-----+------+------+----------+--------------+------------+
//!  | DADA | 1 | fullLen  | headLen| type| codec| compr| requestId| head map ... | body ...   |
//!  +------+---+----------+--------+-----+------+------+----------+--------------+------------+
//!         ver   i32        i16      u8    u8     u8      i32       (k,v) Str16s   compressed
//! ```
//!
//! This module knows no sockets: [`crate::codec::SeataCodec`] finds frame boundaries and hands
//! complete frames here.

use std::io::Read;

use bytes::{BufMut, BytesMut};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::error::{ProtocolError, Result};
use crate::message::{Message, TypeCode};
use crate::types::{Codec, Compressor, MessageType};
use crate::wire;

/// `0xDADA`, the first two bytes of every frame.
pub const MAGIC: u16 = 0xDADA;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Seata's `ProtocolConstants.MAX_FRAME_LENGTH` (8 MiB), the default limit on `fullLength`.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Head map entries in wire order. Values may be null (length `0xFFFF`); the head map is the
/// only place where protocol v1 tells null from empty. Lookups should take the last match.
pub type HeadMap = Vec<(String, Option<String>)>;

/// The fixed header, parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Total frame length including the header.
    pub full_len: usize,
    /// 16 + head map length.
    pub head_len: usize,
    /// Frame byte 9.
    pub message_type: MessageType,
    /// Frame byte 10, raw: only checked when there is a body to deserialize.
    pub codec: u8,
    /// Frame byte 11, raw: only checked when there is a body to decompress.
    pub compressor: u8,
    /// Frame bytes 12–15.
    pub request_id: i32,
}

impl FrameHeader {
    /// Checks the magic as soon as two bytes are there, so garbage is refused before we wait
    /// for a whole header.
    pub fn check_magic(prefix: &[u8]) -> Result<()> {
        if let [a, b, ..] = prefix {
            let magic = u16::from_be_bytes([*a, *b]);
            if magic != MAGIC {
                return Err(ProtocolError::BadMagic(magic));
            }
        }
        Ok(())
    }

    /// Parses the 16 header bytes and checks every length against `max_frame_len` before any
    /// byte of the body is awaited or buffered.
    pub fn parse(mut header: &[u8], max_frame_len: usize) -> Result<Self> {
        let buf = &mut header;
        let magic = wire::get_i16(buf, "magic")? as u16;
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic(magic));
        }
        let version = wire::get_u8(buf, "version")?;
        if version != VERSION {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        let full_len = wire::get_i32(buf, "fullLength")?;
        let head_len = wire::get_i16(buf, "headLength")?;
        let message_type = MessageType::try_from(wire::get_u8(buf, "messageType")?)?;
        let codec = wire::get_u8(buf, "codec")?;
        let compressor = wire::get_u8(buf, "compressor")?;
        let request_id = wire::get_i32(buf, "requestId")?;

        let full_len = usize::try_from(full_len)
            .map_err(|_| ProtocolError::BadLength("negative fullLength"))?;
        if full_len > max_frame_len {
            return Err(ProtocolError::FrameTooLong {
                len: full_len as u64,
                max: max_frame_len,
            });
        }
        if full_len < HEADER_LEN {
            return Err(ProtocolError::BadLength(
                "fullLength shorter than the 16-byte header",
            ));
        }
        let head_len = usize::try_from(head_len)
            .map_err(|_| ProtocolError::BadLength("negative headLength"))?;
        if head_len < HEADER_LEN {
            return Err(ProtocolError::BadLength(
                "headLength shorter than the 16-byte header",
            ));
        }
        if head_len > full_len {
            return Err(ProtocolError::BadLength(
                "headLength larger than fullLength",
            ));
        }
        Ok(FrameHeader {
            full_len,
            head_len,
            message_type,
            codec,
            compressor,
            request_id,
        })
    }
}

/// One decoded frame: header fields, head map and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcFrame {
    /// Request, response, one-way request or heartbeat.
    pub message_type: MessageType,
    /// Body serializer; always SEATA for frames with a body.
    pub codec: Codec,
    /// Body compressor.
    pub compressor: Compressor,
    /// Request id; a response carries the id of its request.
    pub request_id: i32,
    /// Optional string pairs between header and body (real 1.2 peers send none).
    pub head_map: HeadMap,
    /// The message; `None` for heartbeats and for frames whose body is empty.
    pub body: Option<Message>,
}

impl RpcFrame {
    /// A single request the way Java 1.2 sends it: message type 2 ("oneway"), SEATA, no
    /// compression.
    pub fn request(request_id: i32, body: Message) -> Self {
        RpcFrame::with_type(MessageType::RequestOneway, request_id, Some(body))
    }

    /// A batch request (message type 0), as Java 1.2 sends a `MergedWarpMessage`.
    pub fn merged_request(request_id: i32, body: Message) -> Self {
        RpcFrame::with_type(MessageType::Request, request_id, Some(body))
    }

    /// The response to `request`: same request id, codec and compressor echoed.
    pub fn response_to(request: &RpcFrame, body: Message) -> Self {
        RpcFrame {
            message_type: MessageType::Response,
            codec: request.codec,
            compressor: request.compressor,
            request_id: request.request_id,
            head_map: HeadMap::new(),
            body: Some(body),
        }
    }

    /// A heartbeat PING.
    pub fn ping(request_id: i32) -> Self {
        RpcFrame::with_type(MessageType::HeartbeatRequest, request_id, None)
    }

    /// The PONG answering a PING (same id, codec and compressor echoed).
    pub fn pong_to(ping: &RpcFrame) -> Self {
        RpcFrame {
            message_type: MessageType::HeartbeatResponse,
            codec: ping.codec,
            compressor: ping.compressor,
            request_id: ping.request_id,
            head_map: HeadMap::new(),
            body: None,
        }
    }

    fn with_type(message_type: MessageType, request_id: i32, body: Option<Message>) -> Self {
        RpcFrame {
            message_type,
            codec: Codec::Seata,
            compressor: Compressor::None,
            request_id,
            head_map: HeadMap::new(),
            body,
        }
    }

    /// Decodes a complete frame (`frame.len()` must equal `fullLength`).
    pub fn decode(frame: &[u8], max_frame_len: usize) -> Result<Self> {
        let header_bytes = frame
            .get(..HEADER_LEN)
            .ok_or(ProtocolError::TruncatedFrame(frame.len()))?;
        let header = FrameHeader::parse(header_bytes, max_frame_len)?;
        if header.full_len != frame.len() {
            return Err(ProtocolError::BadLength(
                "fullLength differs from the frame size",
            ));
        }
        let rest = frame.get(HEADER_LEN..).unwrap_or_default();
        RpcFrame::decode_after_header(&header, rest, max_frame_len)
    }

    /// Decodes head map and body; `rest` is the frame after its 16 header bytes.
    pub(crate) fn decode_after_header(
        header: &FrameHeader,
        rest: &[u8],
        max_frame_len: usize,
    ) -> Result<Self> {
        let (mut head, body) = rest
            .split_at_checked(header.head_len - HEADER_LEN)
            .ok_or(ProtocolError::BadLength("head map longer than the frame"))?;
        let head_map = decode_head_map(&mut head)?;

        let codec_for_heartbeat = Codec::try_from(header.codec).unwrap_or_default();
        let compressor_for_heartbeat = Compressor::try_from(header.compressor).unwrap_or_default();
        if header.message_type.is_heartbeat() {
            // Java keys heartbeats on the message type alone and never reads their body
            // (spec 2.4.10), whatever codec byte the peer is configured with.
            return Ok(RpcFrame {
                message_type: header.message_type,
                codec: codec_for_heartbeat,
                compressor: compressor_for_heartbeat,
                request_id: header.request_id,
                head_map,
                body: None,
            });
        }

        let codec = Codec::try_from(header.codec)
            .map_err(|_| ProtocolError::UnsupportedCodec(header.codec))?;
        let compressor = Compressor::try_from(header.compressor)
            .map_err(|_| ProtocolError::UnsupportedCompressor(header.compressor))?;
        let body = if body.is_empty() {
            None
        } else {
            if codec != Codec::Seata {
                return Err(ProtocolError::UnsupportedCodec(header.codec));
            }
            let inflated;
            let plain = match compressor {
                Compressor::None => body,
                Compressor::Gzip => {
                    inflated = gunzip(body, max_frame_len)?;
                    &inflated[..]
                }
                other => return Err(ProtocolError::UnsupportedCompressor(other.code())),
            };
            // A type code we do not know is told apart from a corrupt body, so the stream
            // codec can skip the frame instead of closing the connection.
            if let [a, b, ..] = plain {
                let code = i16::from_be_bytes([*a, *b]);
                if TypeCode::try_from(code).is_err() {
                    return Err(ProtocolError::UnknownMessage {
                        code,
                        request_id: header.request_id,
                    });
                }
            }
            Some(Message::decode_body(plain)?)
        };
        Ok(RpcFrame {
            message_type: header.message_type,
            codec,
            compressor,
            request_id: header.request_id,
            head_map,
            body,
        })
    }

    /// Appends the encoded frame to `dst`. Heartbeats are written without a body whatever
    /// `body` holds.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<()> {
        let start = dst.len();
        dst.reserve(64);
        dst.put_u16(MAGIC);
        dst.put_u8(VERSION);
        dst.put_i32(0); // fullLength, patched below
        dst.put_i16(0); // headLength, patched below
        dst.put_u8(self.message_type.code());
        dst.put_u8(self.codec.code());
        dst.put_u8(self.compressor.code());
        dst.put_i32(self.request_id);
        encode_head_map(&self.head_map, dst)?;
        let head_len = dst.len() - start;

        if let (false, Some(body)) = (self.message_type.is_heartbeat(), &self.body) {
            if self.codec != Codec::Seata {
                return Err(ProtocolError::UnsupportedCodec(self.codec.code()));
            }
            match self.compressor {
                Compressor::None => body.encode_body(dst)?,
                Compressor::Gzip => {
                    let mut plain = BytesMut::new();
                    body.encode_body(&mut plain)?;
                    gzip(&plain, dst)?;
                }
                other => return Err(ProtocolError::UnsupportedCompressor(other.code())),
            }
        }

        let full_len = dst.len() - start;
        let full = i32::try_from(full_len).map_err(|_| ProtocolError::TooLong {
            what: "frame",
            len: full_len,
            max: i32::MAX as usize,
        })?;
        let head = i16::try_from(head_len).map_err(|_| ProtocolError::TooLong {
            what: "head map",
            len: head_len,
            max: i16::MAX as usize,
        })?;
        if let Some(slot) = dst.get_mut(start + 3..start + 7) {
            slot.copy_from_slice(&full.to_be_bytes());
        }
        if let Some(slot) = dst.get_mut(start + 7..start + 9) {
            slot.copy_from_slice(&head.to_be_bytes());
        }
        Ok(())
    }

    /// The last value of `key` in the head map.
    pub fn head(&self, key: &str) -> Option<&str> {
        self.head_map
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// A head string: `i16` length, `-1` for null.
fn get_head_str(buf: &mut &[u8]) -> Result<Option<String>> {
    let len = wire::get_i16(buf, "head map string")?;
    match len {
        -1 => Ok(None),
        n if n < 0 => Err(ProtocolError::NegativeLength {
            what: "head map string",
            len: i64::from(n),
        }),
        n => {
            let bytes = wire::get_slice(buf, n as usize, "head map string")?;
            std::str::from_utf8(bytes)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| ProtocolError::InvalidUtf8("head map string"))
        }
    }
}

fn decode_head_map(buf: &mut &[u8]) -> Result<HeadMap> {
    let mut map = HeadMap::new();
    while !buf.is_empty() {
        let key = get_head_str(buf)?;
        let value = get_head_str(buf)?;
        // Java's encoder never writes a null key; a null key has nothing to be found by.
        if let Some(key) = key {
            map.push((key, value));
        }
    }
    Ok(map)
}

fn encode_head_map(map: &HeadMap, dst: &mut BytesMut) -> Result<()> {
    for (key, value) in map {
        wire::put_str16(dst, key, "head map key")?;
        match value {
            Some(v) => wire::put_str16(dst, v, "head map value")?,
            None => dst.put_i16(-1),
        }
    }
    Ok(())
}

/// Inflates a gzip body, refusing to produce more than `limit` bytes (a small frame must not
/// expand into an unbounded allocation).
fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    let mut reader = GzDecoder::new(data).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| ProtocolError::Decompress(e.to_string()))?;
    if out.len() > limit {
        return Err(ProtocolError::Decompress(format!(
            "inflates past the {limit}-byte frame limit"
        )));
    }
    Ok(out)
}

fn gzip(plain: &[u8], dst: &mut BytesMut) -> Result<()> {
    use std::io::Write;
    let mut enc = GzEncoder::new(dst.writer(), flate2::Compression::default());
    enc.write_all(plain)
        .and_then(|_| enc.finish().map(|_| ()))
        .map_err(|e| ProtocolError::Decompress(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::GlobalBeginRequest;

    fn begin() -> Message {
        GlobalBeginRequest {
            timeout: 60000,
            transaction_name: "t".into(),
        }
        .into()
    }

    #[test]
    fn ping_matches_java_bytes() {
        let mut out = BytesMut::new();
        RpcFrame::ping(42).encode(&mut out).unwrap();
        assert_eq!(
            &out[..],
            &[0xda, 0xda, 1, 0, 0, 0, 0x10, 0, 0x10, 3, 1, 0, 0, 0, 0, 0x2a]
        );
    }

    #[test]
    fn gzip_round_trips() {
        let mut frame = RpcFrame::request(7, begin());
        frame.compressor = Compressor::Gzip;
        let mut out = BytesMut::new();
        frame.encode(&mut out).unwrap();
        assert_eq!(
            RpcFrame::decode(&out, DEFAULT_MAX_FRAME_LEN).unwrap(),
            frame
        );
    }

    #[test]
    fn rejects_gzip_bomb() {
        let mut frame = RpcFrame::request(7, begin());
        frame.compressor = Compressor::Gzip;
        let mut plain = BytesMut::new();
        plain.put_bytes(0, 1 << 20);
        let mut out = BytesMut::new();
        gzip(&plain, &mut out).unwrap();
        assert!(matches!(
            gunzip(&out, 1024),
            Err(ProtocolError::Decompress(_))
        ));
    }

    #[test]
    fn rejects_unsupported_codec_and_compressor_with_body() {
        let mut out = BytesMut::new();
        RpcFrame::request(1, begin()).encode(&mut out).unwrap();
        let mut kryo = out.clone();
        kryo[10] = 4;
        assert_eq!(
            RpcFrame::decode(&kryo, DEFAULT_MAX_FRAME_LEN).unwrap_err(),
            ProtocolError::UnsupportedCodec(4)
        );
        let mut bz = out.clone();
        bz[11] = 4;
        assert_eq!(
            RpcFrame::decode(&bz, DEFAULT_MAX_FRAME_LEN).unwrap_err(),
            ProtocolError::UnsupportedCompressor(4)
        );
        let mut unknown = out;
        unknown[11] = 9;
        assert_eq!(
            RpcFrame::decode(&unknown, DEFAULT_MAX_FRAME_LEN).unwrap_err(),
            ProtocolError::UnsupportedCompressor(9)
        );
    }

    #[test]
    fn heartbeat_with_other_codec_is_accepted() {
        let bytes = [0xda, 0xda, 1, 0, 0, 0, 0x10, 0, 0x10, 3, 4, 0, 0, 0, 0, 1];
        let f = RpcFrame::decode(&bytes, DEFAULT_MAX_FRAME_LEN).unwrap();
        assert_eq!(f.message_type, MessageType::HeartbeatRequest);
        assert_eq!(f.codec, Codec::Kryo);
    }

    #[test]
    fn head_map_keeps_null_and_order() {
        let mut frame = RpcFrame::request(3, begin());
        frame.head_map = vec![("b".into(), None), ("a".into(), Some(String::new()))];
        let mut out = BytesMut::new();
        frame.encode(&mut out).unwrap();
        let back = RpcFrame::decode(&out, DEFAULT_MAX_FRAME_LEN).unwrap();
        assert_eq!(back, frame);
        assert_eq!(back.head("a"), Some(""));
        assert_eq!(back.head("b"), None);
    }

    #[test]
    fn rejects_bad_header_lengths() {
        let mut h = [0xda, 0xda, 1, 0, 0, 0, 0x10, 0, 0x10, 3, 1, 0, 0, 0, 0, 1];
        h[6] = 0x0f; // fullLength 15
        assert!(matches!(
            FrameHeader::parse(&h, 1024),
            Err(ProtocolError::BadLength(_))
        ));
        h[6] = 0x10;
        h[8] = 0x20; // headLength 32 > fullLength 16
        assert!(matches!(
            FrameHeader::parse(&h, 1024),
            Err(ProtocolError::BadLength(_))
        ));
        h[8] = 0x10;
        h[3] = 0x80; // negative fullLength
        assert!(matches!(
            FrameHeader::parse(&h, 1024),
            Err(ProtocolError::BadLength(_))
        ));
        h[3] = 0x01; // 16 MiB
        assert!(matches!(
            FrameHeader::parse(&h, DEFAULT_MAX_FRAME_LEN),
            Err(ProtocolError::FrameTooLong { .. })
        ));
        h[3] = 0;
        h[2] = 2;
        assert_eq!(
            FrameHeader::parse(&h, 1024),
            Err(ProtocolError::UnsupportedVersion(2))
        );
    }
}
