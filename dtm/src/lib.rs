//! A Rust client for DTM-compatible transaction coordinators — `seata-tc`'s HTTP mode or DTM
//! itself — following the contract in the DTM HTTP API spec (§2–§4 client side, §6 modes, §8
//! barrier). It mirrors the contract, not any server's code.
//!
//! - Initiators: [`Saga`], [`Msg`] (two-phase message), TCC ([`tcc_global_transaction`]) and
//!   XA ([`xa_global_transaction`], with [`XaLocal`] for the branch's local part), over
//!   [`DtmClient`] (`newGid`, `query`).
//! - Branch side for axum ([`branch`]): the [`BranchParams`] extractor and [`BranchError`] /
//!   [`BranchResult`], which answer 200 / 409 FAILURE / 425 ONGOING / 500.
//! - gRPC (feature `grpc`, on by default; [`grpc`]): the same initiators over DTM's gRPC API
//!   when the server URL is `grpc://host:port` ([`DtmClient::grpc`]) or
//!   `etcd://host:port/dtmservice` (go-zero's discovery), gRPC branch URLs
//!   (`host:port/pkg.Service/Method`) with binary payloads, and for tonic handlers
//!   [`BranchParams::from_request`] (metadata `dtm-gid`, …) and `Status: From<BranchError>`.
//! - The sub-transaction barrier ([`barrier`]): [`BranchBarrier`] on `mysql_async`, DTM's table
//!   and algorithm, running the business in the same local transaction.
//!
//! Errors: [`DtmError`] separates FAILURE (final: rolled back), ONGOING (not decided: query
//! later), a transport error (not sent) and an unknown outcome (sent, no answer: query before
//! deciding).
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod barrier;
pub mod branch;
pub mod client;
pub mod error;
#[cfg(feature = "grpc")]
mod etcd;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod msg;
pub mod options;
pub mod saga;
mod scope;
pub mod tcc;
pub mod xa;

pub use barrier::mysql::{cleanup_barriers, query_prepared};
pub use barrier::{
    BarrierOutcome, BarrierTable, BranchBarrier, BARRIER_SQL, BARRIER_TABLE_DDL,
    DEFAULT_BARRIER_TABLE,
};
pub use branch::{BranchError, BranchParams, BranchResult, BranchSuccess, MissingParams};
pub use client::{BranchStatus, DtmClient, GlobalStatus, TransBranch, TransGlobal, TransQuery};
pub use error::DtmError;
pub use msg::Msg;
pub use options::TransOptions;
pub use saga::Saga;
pub use tcc::{tcc_global_transaction, tcc_global_transaction_with, Tcc};
pub use xa::{xa_global_transaction, xa_global_transaction_with, Xa, XaLocal};

/// The README's examples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
