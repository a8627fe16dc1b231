//! TCC (spec §6.5) as a scoped global transaction: [`tcc_global_transaction`] prepares, hands
//! the closure a [`Tcc`] whose [`call_branch`](Tcc::call_branch) registers a branch **first**
//! (so the server will cancel it even if this process dies right after) and then calls its try
//! itself; an `Err` from the closure aborts (the server cancels every registered branch), `Ok`
//! submits (the server confirms them, in reverse registration order).
//!
//! ```no_run
//! # async fn f(dtm: seata_dtm::DtmClient) -> Result<(), seata_dtm::DtmError> {
//! use seata_dtm::tcc_global_transaction;
//! let gid = dtm.new_gid().await?;
//! tcc_global_transaction(&dtm, gid, |tcc| async move {
//!     let body = serde_json::json!({"user": 1, "amount": 30});
//!     tcc.call_branch(&body, "http://account/try", "http://account/confirm", "http://account/cancel")
//!         .await?;
//!     Ok::<_, seata_dtm::DtmError>(())
//! })
//! .await
//! # }
//! ```
//!
//! If the closure panics, nothing is aborted from here: the server cancels the branches once
//! the transaction's `timeout_to_fail` passes.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::branch::op;
use crate::client::{DtmClient, Registration};
use crate::error::DtmError;
use crate::options::TransOptions;
use crate::scope::{self, Scope};

/// Runs `f` as one TCC global transaction with the server's default options; see the module
/// docs. The closure's error type only needs `From<DtmError>` (so `?` works on
/// [`Tcc::call_branch`]) and `Display` (its text becomes the `rollback_reason`).
pub async fn tcc_global_transaction<T, E, F, Fut>(
    client: &DtmClient,
    gid: impl Into<String>,
    f: F,
) -> Result<T, E>
where
    F: FnOnce(Tcc) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<DtmError> + Display,
{
    tcc_global_transaction_with(client, gid, TransOptions::default(), f).await
}

/// [`tcc_global_transaction`] with options (`timeout_to_fail`, `retry_interval`, `wait_result`
/// for the final submit/abort, `branch_headers` for the server's confirm/cancel calls and this
/// client's try calls, `request_timeout` for both).
pub async fn tcc_global_transaction_with<T, E, F, Fut>(
    client: &DtmClient,
    gid: impl Into<String>,
    options: TransOptions,
    f: F,
) -> Result<T, E>
where
    F: FnOnce(Tcc) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<DtmError> + Display,
{
    let scope = Scope::new(client, gid.into(), "tcc", options);
    let tcc = Tcc {
        scope: scope.clone(),
    };
    scope::run(scope, tcc, f).await
}

/// The running TCC, handed to the closure of [`tcc_global_transaction`]; cheap to clone (to
/// call branches from several tasks: ids are handed out atomically).
#[derive(Debug, Clone)]
pub struct Tcc {
    scope: Arc<Scope>,
}

impl Tcc {
    /// The gid.
    pub fn gid(&self) -> &str {
        &self.scope.gid
    }

    /// Registers a branch (`registerBranch`, §3.5: its confirm and cancel URLs, with `body` as
    /// their body), then POSTs `body` to `try_url` with `gid`, `trans_type=tcc`, `branch_id`,
    /// `op=try` and `dtm=<server>`; returns the try's answer body. A try that answers 409 is
    /// [`DtmError::Failure`], 425 [`DtmError::Ongoing`], anything else but 200
    /// [`DtmError::Status`] — return the error from the closure to abort.
    pub async fn call_branch(
        &self,
        body: &impl Serialize,
        try_url: &str,
        confirm_url: &str,
        cancel_url: &str,
    ) -> Result<Bytes, DtmError> {
        let data = serde_json::to_vec(body).map_err(|e| DtmError::invalid("TCC branch body", e))?;
        self.call_branch_bytes(data, try_url, confirm_url, cancel_url)
            .await
    }

    /// [`Tcc::call_branch`] with a body of raw bytes, sent byte for byte to the try and (by the
    /// server) to confirm/cancel. Each URL is `http(s)://…` or a gRPC branch
    /// `host:port/pkg.Service/Method`, whose try this client calls over gRPC with the metadata
    /// `dtm-gid`, `dtm-trans_type`, `dtm-branch_id`, `dtm-op=try`, `dtm-dtm`; a try that
    /// answers `Aborted` is [`DtmError::Failure`], `FailedPrecondition`
    /// [`DtmError::Ongoing`]. Over an HTTP server the body must be UTF-8 text.
    pub async fn call_branch_bytes(
        &self,
        body: impl Into<Vec<u8>>,
        try_url: &str,
        confirm_url: &str,
        cancel_url: &str,
    ) -> Result<Bytes, DtmError> {
        let scope = &self.scope;
        let branch_id = scope.next_branch_id()?;
        let data = body.into();
        let register = Registration {
            gid: &scope.gid,
            trans_type: "tcc",
            branch_id: &branch_id,
            op: op::TRY,
            urls: &[("confirm", confirm_url), ("cancel", cancel_url)],
            payload: Some(&data),
        };
        scope.client.register_branch(&register).await?;
        scope
            .call_first_phase(try_url, &branch_id, op::TRY, &[], data)
            .await
    }

    /// A TCC branch of gRPC services: registers it, calls the try with `request` and decodes
    /// its answer as `R` (a reply that is not an `R` is [`DtmError::BadAnswer`]). Errors as
    /// for [`Tcc::call_branch_bytes`].
    #[cfg(feature = "grpc")]
    pub async fn call_branch_message<R: prost::Message + Default>(
        &self,
        request: &impl prost::Message,
        try_url: &str,
        confirm_url: &str,
        cancel_url: &str,
    ) -> Result<R, DtmError> {
        let answer = self
            .call_branch_bytes(request.encode_to_vec(), try_url, confirm_url, cancel_url)
            .await?;
        crate::grpc::decode(&format!("try of {try_url}"), &answer)
    }
}
