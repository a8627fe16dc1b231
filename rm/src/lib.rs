//! The seata-rs RM client and AT mode.
//!
//! - [`client`]: the RM's connection to the TC (register, branch register/report, lock query,
//!   TC-pushed phase two).
//! - [`at`]: AT mode: a SQL proxy over `mysql_async` that records undo logs and row locks.
//! - [`tcc`]: TCC mode: actions with prepare/commit/rollback, optionally fenced (Seata 1.5's
//!   `tcc_fence_log`).
//! - [`xa`]: XA mode: MySQL XA transactions as branches, with restart recovery.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod at;
pub mod client;
pub mod error;
pub mod metrics;
pub mod tcc;
pub mod xa;
