//! Settings of one RPC connection, with Seata 1.2's defaults.

use std::sync::Arc;
use std::time::Duration;

use crate::codec::FrameBudget;
use crate::frame::DEFAULT_MAX_FRAME_LEN;

/// How a connection times requests, sends heartbeats and batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// How long a request waits for its response. Seata: 30 s both ways.
    pub request_timeout: Duration,
    /// Send a PING after writing nothing for this long (Seata clients: 5 s; servers: never).
    pub heartbeat_interval: Option<Duration>,
    /// Close the connection after reading nothing for this long (Seata: 15 s both sides).
    pub read_idle_timeout: Option<Duration>,
    /// Largest frame read or written.
    pub max_frame_len: usize,
    /// Pack requests that queue up together into one MergedWarpMessage (Seata clients: on).
    pub batch_requests: bool,
    /// Most requests in one MergedWarpMessage.
    pub max_batch: usize,
    /// Commands queued for the writer before senders wait (back-pressure).
    pub queue_capacity: usize,
    /// On close, how long answers to requests already being handled may still be written.
    pub shutdown_grace: Duration,
    /// Longest a write (frame and flush) may wait for the peer to take bytes; a peer that
    /// reads nothing for this long is closed. Default 30 s (Seata's RPC timeout).
    pub write_timeout: Duration,
    /// Inbound requests handled at once on one connection; when reached, the connection is
    /// not read until one is answered (back-pressure). Default 1000.
    pub max_inflight: usize,
    /// Process-wide budget for frames being assembled, shared by connections; `None`: none.
    pub frame_budget: Option<Arc<FrameBudget>>,
}

impl RpcConfig {
    /// Seata 1.2's client side: 5 s heartbeats, 15 s read idle, batching on.
    pub fn client() -> Self {
        RpcConfig {
            request_timeout: Duration::from_secs(30),
            heartbeat_interval: Some(Duration::from_secs(5)),
            read_idle_timeout: Some(Duration::from_secs(15)),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            batch_requests: true,
            max_batch: 128,
            queue_capacity: 4096,
            shutdown_grace: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            max_inflight: 1000,
            frame_budget: None,
        }
    }

    /// Seata 1.2's server side: no heartbeats of its own, 15 s read idle, no batching (the
    /// server sends few requests, and Java clients do not expect merged requests).
    pub fn server() -> Self {
        RpcConfig {
            heartbeat_interval: None,
            batch_requests: false,
            ..RpcConfig::client()
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig::client()
    }
}
