//! The RPC layer shared by the TC, TM and RM: one reader and one writer task per connection,
//! a cloneable [`RpcHandle`] to send requests and await responses by request id, heartbeats,
//! merged (batched) requests, timeouts, and [`TcClient`] for clients that keep connections to a
//! list of TCs.
//!
//! Failure semantics: when a connection dies every waiting request fails at once; a request
//! that was never written fails with [`RpcError::NotSent`], one that was written but not
//! answered with an "outcome unknown" error ([`RpcError::is_undetermined`]).

mod client;
mod config;
mod connection;
mod error;
mod handle;
mod pending;

pub use client::{Registration, TcClient, TcClientConfig};
pub use config::RpcConfig;
pub use connection::{connect, spawn, spawn_tcp, NoRequests, RequestHandler};
pub use error::RpcError;
pub use handle::RpcHandle;
pub use pending::next_request_id;
