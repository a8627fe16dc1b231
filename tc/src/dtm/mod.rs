//! DTM-compatible transactions (saga, two-phase message, TCC, XA) served over DTM's HTTP API
//! (`../shared/spec/dtm-http-api.md`), on the same stores, jobs and shutdown as the Seata
//! coordinator.

pub mod model;
