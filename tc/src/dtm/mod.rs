//! DTM-compatible transactions (saga, two-phase message, TCC, XA) served over DTM's HTTP and
//! gRPC APIs (`../shared/spec/dtm-http-api.md`), on the same stores, jobs and shutdown as the
//! Seata coordinator.
//!
//! - [`model`]: the transaction and branch rows; [`machine`] with [`saga`], [`msg`] and
//!   [`phase2`] (tcc, xa): pure state machines; [`schedule`]: retry timers.
//! - [`caller`]: the edge that calls branches, over HTTP or gRPC as each URL says;
//!   [`engine`]: processing rounds and the operations behind each endpoint; [`jobs`]: the cron
//!   that resumes due transactions.
//! - Front-ends, which only translate into engine calls: [`api`], the axum router
//!   (`/api/dtmsvr/*`), and [`grpc`], the tonic service `dtmgimp.Dtm` (plus the gRPC branch
//!   edge and etcd registration). Both check requests with the same code ([`TransRequest`],
//!   [`RegisterRequest`]).

pub mod api;
pub mod caller;
pub mod engine;
pub mod error;
pub mod grpc;
mod locks;
pub mod machine;
pub mod model;
mod msg;
mod phase2;
mod saga;
pub mod schedule;

pub use api::body::{RegisterRequest, TransRequest};
