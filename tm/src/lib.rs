//! The seata-rs TM client: begin, commit and roll back global transactions against `seata-tc`
//! or a Java Seata 1.2 server, and carry the XID between tasks and services.
//!
//! - [`TmClient`] connects to the TCs (registering as a TM, reconnecting with back-off and
//!   failing over between addresses) and sends begin/commit/rollback/status/report, with
//!   Seata 1.2's commit/rollback retry counts.
//! - [`GlobalTransaction`] is one transaction's lifecycle; dropping an active one warns.
//! - [`GlobalTx`] / [`TmClient::run`] run an async closure inside a transaction: commit on
//!   `Ok`, rollback on `Err` or panic, with Spring/Seata [`Propagation`] modes. The closure
//!   starts while the begin is on its way; what needs the XID waits for it ([`context`]).
//! - [`context`] binds the XID to a task; [`propagation`] (features `http`, `tower`/`axum`,
//!   `reqwest`) carries it in the `TX_XID` header.
//!
//! Errors are [`TmError`]. An outcome-unknown answer ([`TmError::is_undetermined`]) never
//! claims a status: query it with [`TmClient::status`].
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use seata_tm::{current_xid, TmClient, TmConfig, TxError};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = TmConfig::new("order-service", vec!["127.0.0.1:8091".into()]);
//! let tm = TmClient::connect(config).await?;
//!
//! // By hand: the launcher must commit or roll back.
//! let mut tx = tm.begin("place-order", Duration::from_secs(60)).await?;
//! println!("began {}", tx.xid());
//! tx.commit().await?;
//!
//! // With the template: commit on Ok, roll back on Err (or panic).
//! let result: Result<u64, TxError<std::io::Error>> = tm
//!     .run("place-order", Duration::from_secs(60), |ctx| async move {
//!         // The XID is bound here: AT statements and outgoing calls join the transaction.
//!         assert_eq!(current_xid().as_deref(), ctx.xid());
//!         Ok(42)
//!     })
//!     .await;
//! match result {
//!     Ok(id) => println!("order {id} committed"),
//!     Err(e) if e.is_undetermined() => println!("outcome unknown, check its status: {e}"),
//!     Err(e) => println!("not committed: {e}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Without a TC, the XID context alone:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use seata_tm::{current_xid, with_xid};
//! let seen = with_xid("10.0.0.1:8091:2000042948", async { current_xid() }).await;
//! assert_eq!(seen.as_deref(), Some("10.0.0.1:8091:2000042948"));
//! assert_eq!(current_xid(), None);
//! # }
//! ```
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod client;
mod config;
pub mod context;
mod error;
pub mod metrics;
#[cfg(feature = "http")]
pub mod propagation;
mod template;
mod transaction;

#[cfg(test)]
mod fake_tc;

pub use client::TmClient;
pub use config::TmConfig;
pub use context::{current_xid, in_global_transaction, with_xid, without_xid, XID_HEADER};
pub use error::{Op, TmError};
pub use template::{GlobalTx, Propagation, TxContext, TxError};
pub use transaction::{GlobalTransaction, Role, TxState};

/// Seata's message types this crate's API speaks in, re-exported so callers need not depend
/// on `seata-protocol` for them.
pub use seata_protocol::{GlobalStatus, TransactionExceptionCode};
