//! Seata RPC protocol v1, byte-exact with Java Seata 1.2, and the RPC layer every seata-rs
//! peer uses.
//!
//! Layers, bottom up:
//! - [`wire`]: checked big-endian primitives and length-prefixed strings.
//! - [`types`]: the enum tables (branch/global status, result and exception codes, ids).
//! - [`message`]: every SEATA-serialized message body and the one type-code dispatch.
//! - [`frame`]: the 16-byte header, head map, compression; [`codec`]: tokio-util framing.
//! - [`rpc`]: connections with request ids, response futures, heartbeats and merged messages.
//!
//! Everything below `rpc` is I/O-free: it never touches sockets or clocks.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod codec;
pub mod error;
pub mod frame;
pub mod message;
pub mod rpc;
pub mod types;
pub mod wire;

pub use codec::{CodecError, SeataCodec};
pub use error::ProtocolError;
pub use frame::{HeadMap, RpcFrame, DEFAULT_MAX_FRAME_LEN};
pub use message::*;
pub use types::*;
