//! The seata-rs transaction coordinator (TC).
//!
//! - [`server`]: accept loop and one handler task per connection; [`dispatch`]: request →
//!   [`coordinator`] call; [`registry`]: which RM/TM connections exist (applicationId → ip →
//!   port), implementing [`gateway::BranchGateway`] for phase two.
//! - [`coordinator`]: begin/commit/rollback/branch operations over [`session`] state machines,
//!   the sharded row [`lock`] manager and a [`store`].
//! - [`jobs`]: retry commit/rollback, async commit, timeout check, undo-log-delete broadcast;
//!   for DTM mode, the cron that resumes due transactions and the purge of finished ones.
//! - [`dtm`]: DTM-compatible saga, msg, tcc and xa transactions over HTTP, served by the
//!   [`http`] listener.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod admin;
pub mod config;
pub mod coordinator;
pub mod dispatch;
pub mod dtm;
pub mod error;
pub mod failpoints;
pub mod gateway;
pub mod http;
pub mod id;
pub mod jobs;
pub mod lock;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod registry;
pub mod server;
pub mod session;
pub mod store;
