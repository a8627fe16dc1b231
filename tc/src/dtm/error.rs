//! [`DtmError`]: why a DTM request was refused. The API maps each variant to DTM's status
//! codes in one place (`api/error.rs`).

use thiserror::Error;

use crate::store::StoreError;

/// Why a DTM operation did not succeed.
#[derive(Debug, Error)]
pub enum DtmError {
    /// A state conflict or a transaction that failed: DTM's FAILURE (409).
    #[error("{0}")]
    Failure(String),
    /// Still being processed (`wait_result`): DTM's ONGOING (425).
    #[error("{0}")]
    Ongoing(String),
    /// The request is malformed or asks for something not served (400).
    #[error("{0}")]
    Invalid(String),
    /// No transaction with that gid where DTM answers a plain error (500).
    #[error("{0}")]
    NotFound(String),
    /// The store failed; the operation may or may not have been recorded (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}
