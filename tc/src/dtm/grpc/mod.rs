//! DTM's gRPC side (spec §9): the `dtmgimp.Dtm` service front-end ([`service`]), the edge
//! that calls gRPC branches ([`branch`]), and etcd ([`etcd`]): registering the gRPC listener
//! the way go-zero's publisher does and resolving `etcd://` branch URLs.
//!
//! The service only translates: a prost request becomes the same checked request the HTTP
//! API builds (`api/body.rs`), one [`DtmEngine`](crate::dtm::engine::DtmEngine) call is made,
//! and its error becomes a [`tonic::Status`] in one place ([`service::status`]).

pub mod branch;
mod codec;
pub mod etcd;
pub mod service;

pub use service::serve;

/// Code generated from `tc/proto/` by `build.rs` (protox + tonic-prost-build).
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]
pub mod pb {
    /// `dtmgimp`: DTM's gRPC API.
    pub mod dtmgimp {
        tonic::include_proto!("dtmgimp");
    }
    /// `etcdserverpb`: the part of etcd's v3 API the TC uses.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}
