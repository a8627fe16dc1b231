//! Errors of the wire layer: everything that can be wrong with bytes from a peer, and the few
//! things that cannot be put on the wire. Transport failures of the RPC layer live in
//! [`crate::rpc::RpcError`].

use thiserror::Error;

/// A frame or body that could not be decoded or encoded.
///
/// Every variant is final for the connection it came from: protocol v1 has no way to
/// resynchronise after a bad frame, so the receiver closes the connection (as Java Seata does)
/// and the peer reconnects.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The first two bytes were not `0xDADA`: the peer does not speak Seata protocol v1.
    #[error("bad magic 0x{0:04x} (expected 0xdada): peer is not speaking Seata protocol v1")]
    BadMagic(u16),
    /// A protocol version other than 1.
    #[error("unsupported protocol version {0} (only v1 is spoken)")]
    UnsupportedVersion(u8),
    /// fullLength is larger than the configured maximum frame length.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes; raise max-frame-len on both sides or send less")]
    FrameTooLong { len: u64, max: usize },
    /// The header's length fields contradict each other or the minimum header size.
    #[error("corrupt frame header: {0}")]
    BadLength(&'static str),
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    TruncatedFrame(usize),
    /// A field needs more bytes than the body has left.
    #[error("truncated {what}: needs {needed} bytes, {remaining} left")]
    Truncated {
        what: &'static str,
        needed: usize,
        remaining: usize,
    },
    /// A length prefix was negative.
    #[error("negative length {len} for {what}")]
    NegativeLength { what: &'static str, len: i64 },
    /// The body decoded completely but bytes were left over.
    #[error("{0} trailing bytes after the message body")]
    TrailingBytes(usize),
    /// A string field was not valid UTF-8.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A whole frame whose body's type code is not a Seata 1.2 message (e.g. a newer
    /// release's message). Unlike the other variants it is not final: the frame was complete,
    /// so the stream codec skips it and the connection stays up.
    #[error("message type code {code} (request id {request_id}) is not a Seata 1.2 message")]
    UnknownMessage { code: i16, request_id: i32 },
    /// A code outside the table of its enum (or of the message type codes).
    #[error("unknown {what} code {code}")]
    UnknownCode { what: &'static str, code: i64 },
    /// The frame's serializer id is not SEATA.
    #[error("unsupported codec 0x{0:02x}: only SEATA (0x01) is supported; set transport.serialization = \"seata\" on the peer")]
    UnsupportedCodec(u8),
    /// The frame's compressor id is not one we implement.
    #[error(
        "unsupported compressor 0x{0:02x}: use none (0x00) or gzip (0x01) (transport.compressor)"
    )]
    UnsupportedCompressor(u8),
    /// Decompression failed or produced more than the frame limit.
    #[error("compressed body is invalid: {0}")]
    Decompress(String),
    /// A value does not fit the width of its length prefix (e.g. a Str16 over 32767 bytes).
    #[error("{what} is {len} bytes, over the {max}-byte limit of its field")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A merged message contained another merged message, or a heartbeat frame carried a
    /// message, or a message is placed where the protocol does not allow it.
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

/// Result alias for the wire layer.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;
