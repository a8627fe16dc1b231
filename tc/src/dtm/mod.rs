//! DTM-compatible transactions (saga, two-phase message, TCC, XA) served over DTM's HTTP API
//! (`../shared/spec/dtm-http-api.md`), on the same stores, jobs and shutdown as the Seata
//! coordinator.
//!
//! - [`model`]: the transaction and branch rows; [`machine`] with [`saga`], [`msg`] and
//!   [`phase2`] (tcc, xa): pure state machines; [`schedule`]: retry timers.
//! - [`caller`]: the HTTP edge that calls branches; [`engine`]: processing rounds and the
//!   operations behind each endpoint; [`jobs`]: the cron that resumes due transactions.
//! - [`api`]: the axum router (`/api/dtmsvr/*`), which only translates.

pub mod api;
pub mod caller;
pub mod engine;
pub mod error;
mod locks;
pub mod machine;
pub mod model;
mod msg;
mod phase2;
mod saga;
pub mod schedule;
