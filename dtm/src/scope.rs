//! What TCC and XA initiators share (spec §6.5, §6.6): a scoped global transaction — prepare,
//! run the caller's closure, submit on `Ok` or abort on `Err` — and the client's own call of a
//! branch's first phase with the query parameters of §4.1 plus `dtm`.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;

use crate::client::{DtmClient, TransBody};
use crate::error::DtmError;
use crate::options::TransOptions;

/// Most branches one transaction can hold: branch ids are two digits (§1).
const MAX_BRANCHES: u32 = 99;
/// DTM stores `rollback_reason` in a varchar(1024).
const ROLLBACK_REASON_CAP: usize = 1024;

/// One running TCC or XA global transaction.
#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) client: DtmClient,
    pub(crate) gid: String,
    pub(crate) trans_type: &'static str,
    pub(crate) options: TransOptions,
    branches: AtomicU32,
}

impl Scope {
    pub(crate) fn new(
        client: &DtmClient,
        gid: String,
        trans_type: &'static str,
        options: TransOptions,
    ) -> Arc<Scope> {
        Arc::new(Scope {
            client: client.clone(),
            gid,
            trans_type,
            options,
            branches: AtomicU32::new(0),
        })
    }

    /// The next branch id, `01` … `99`.
    pub(crate) fn next_branch_id(&self) -> Result<String, DtmError> {
        let n = self.branches.fetch_add(1, Ordering::Relaxed) + 1;
        if n > MAX_BRANCHES {
            return Err(DtmError::invalid(
                format!("{} branch", self.trans_type),
                format!("a transaction holds at most {MAX_BRANCHES} branches (two-digit ids)"),
            ));
        }
        Ok(format!("{n:02}"))
    }

    /// Calls the branch `url` with `data`, the parameters `dtm`, `gid`, `trans_type`,
    /// `branch_id`, `op` and `extra`, the `branch_headers` and the `request_timeout`, and
    /// classifies the answer (§4.2): an `http(s)://` URL is POSTed with the parameters in the
    /// query string; any other (`host:port/pkg.Service/Method`) is a unary gRPC call with
    /// them as `dtm-<name>` metadata (§9).
    pub(crate) async fn call_first_phase(
        &self,
        url: &str,
        branch_id: &str,
        op: &str,
        extra: &[(&str, &str)],
        data: Vec<u8>,
    ) -> Result<Bytes, DtmError> {
        let what = format!("{op} of branch {branch_id} ({url})");
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return self.call_grpc(url, &what, branch_id, op, extra, data).await;
        }
        let mut target =
            Url::parse(url).map_err(|e| DtmError::invalid(format!("branch URL {url:?}"), e))?;
        {
            let mut q = target.query_pairs_mut();
            q.append_pair("dtm", self.client.dtm_param())
                .append_pair("gid", &self.gid)
                .append_pair("trans_type", self.trans_type)
                .append_pair("branch_id", branch_id)
                .append_pair("op", op);
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        let mut req = self
            .client
            .http()
            .post(target.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(data);
        for (name, value) in self.options.branch_headers() {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(secs) = self.options.request_timeout_secs() {
            req = req.timeout(Duration::from_secs(secs));
        }
        self.client.send(&what, &self.gid, &target, req).await
    }

    #[cfg(feature = "grpc")]
    async fn call_grpc(
        &self,
        url: &str,
        what: &str,
        branch_id: &str,
        op: &str,
        extra: &[(&str, &str)],
        data: Vec<u8>,
    ) -> Result<Bytes, DtmError> {
        let mut params = vec![
            ("gid", self.gid.as_str()),
            ("trans_type", self.trans_type),
            ("branch_id", branch_id),
            ("op", op),
            ("dtm", self.client.dtm_param()),
        ];
        params.extend_from_slice(extra);
        crate::grpc::call_branch(
            self.client.branch_channels(),
            url,
            what,
            &self.gid,
            &params,
            &self.options,
            data,
        )
        .await
    }

    #[cfg(not(feature = "grpc"))]
    async fn call_grpc(
        &self,
        url: &str,
        _: &str,
        _: &str,
        _: &str,
        _: &[(&str, &str)],
        _: Vec<u8>,
    ) -> Result<Bytes, DtmError> {
        Err(DtmError::invalid(
            format!("branch URL {url:?}"),
            "not http(s)://; gRPC branches need seata-dtm's `grpc` feature",
        ))
    }
}

/// prepare → `f` → submit (`Ok`) or abort with the error's text as `rollback_reason` (`Err`).
/// A failed abort is only logged: the server aborts the transaction after `timeout_to_fail`.
pub(crate) async fn run<H, T, E, F, Fut>(scope: Arc<Scope>, handle: H, f: F) -> Result<T, E>
where
    F: FnOnce(H) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<DtmError> + Display,
{
    let body = TransBody::new(&scope.gid, scope.trans_type, &scope.options);
    scope.client.trans("prepare", &body).await?;
    match f(handle).await {
        Ok(v) => {
            scope.client.trans("submit", &body).await?;
            Ok(v)
        }
        Err(e) => {
            let reason: String = e.to_string().chars().take(ROLLBACK_REASON_CAP).collect();
            let abort = TransBody {
                rollback_reason: &reason,
                ..TransBody::new(&scope.gid, scope.trans_type, &scope.options)
            };
            if let Err(abort_error) = scope.client.trans("abort", &abort).await {
                tracing::warn!(gid = %scope.gid, error = %abort_error,
                    "abort failed; the server rolls the branches back after timeout_to_fail");
            }
            Err(e)
        }
    }
}
