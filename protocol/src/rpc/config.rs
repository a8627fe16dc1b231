//! Settings of one RPC connection, with Seata 1.2's defaults.

use std::time::Duration;

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
