//! [`TmClient`]: the TM's connections to the TCs and the five global-transaction requests, by
//! XID. The commit/rollback retry policy of Seata 1.2's TM lives here; the lifecycle of one
//! transaction lives in [`crate::transaction`], the closure template in [`crate::template`].
//!
//! Connecting, registering with the 1.2 version string, reconnecting with back-off and
//! spreading requests over several TCs are the RPC layer's job ([`TcClient`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use seata_protocol::rpc::{NoRequests, TcClient};
use seata_protocol::{
    GlobalBeginRequest, GlobalBeginResponse, GlobalCommitRequest, GlobalCommitResponse,
    GlobalReportRequest, GlobalReportResponse, GlobalRollbackRequest, GlobalRollbackResponse,
    GlobalStatus, GlobalStatusRequest, GlobalStatusResponse,
};
use tracing::{debug, info, warn};

use crate::config::TmConfig;
use crate::error::{Op, TmError};
use crate::transaction::GlobalTransaction;

/// A TM client: begins global transactions and ends them. Cheap to clone (clones share the
/// connections); the connections close when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct TmClient {
    tc: TcClient,
    config: Arc<TmConfig>,
}

impl TmClient {
    /// Validates `config`, connects to every TC and waits (up to `connect-timeout-ms`) until
    /// one accepted the TM registration.
    pub async fn connect(config: TmConfig) -> Result<Self, TmError> {
        config.validate()?;
        let timeout = Duration::from_millis(config.connect_timeout_ms);
        let tc = TcClient::connect(config.tc_client_config(), Arc::new(NoRequests), timeout)
            .await
            .map_err(|source| TmError::Connect { source })?;
        Ok(TmClient {
            tc,
            config: Arc::new(config),
        })
    }

    /// Validates `config` and starts connecting in the background; returns at once. Requests
    /// wait (up to the request timeout) for a connection.
    pub fn start(config: TmConfig) -> Result<Self, TmError> {
        config.validate()?;
        let tc = TcClient::start(config.tc_client_config(), Arc::new(NoRequests));
        Ok(TmClient {
            tc,
            config: Arc::new(config),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &TmConfig {
        &self.config
    }

    /// The underlying RPC client (its live connections, `wait_connected`, ...).
    pub fn tc_client(&self) -> &TcClient {
        &self.tc
    }

    /// Waits until some TC connection is registered; false after `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.tc.wait_connected(timeout).await
    }

    /// Closes every connection and stops reconnecting; later requests fail as not sent.
    pub fn shutdown(&self) {
        self.tc.shutdown();
    }

    /// Begins a global transaction that the TC rolls back if it is not ended within
    /// `timeout`. The returned handle is the launcher: it must be committed or rolled back.
    ///
    /// A begin is not retried beyond the RPC layer's move to another connection: an
    /// outcome-unknown error may have left a transaction behind, which the TC times out.
    pub async fn begin(&self, name: &str, timeout: Duration) -> Result<GlobalTransaction, TmError> {
        let xid = self.begin_xid(name, timeout).await?;
        Ok(GlobalTransaction::launcher(self.clone(), xid))
    }

    /// GlobalBegin, answering the XID (the template makes the [`GlobalTransaction`] once it
    /// needs it).
    pub(crate) async fn begin_xid(&self, name: &str, timeout: Duration) -> Result<String, TmError> {
        let r = self.try_begin(name, timeout).await;
        crate::metrics::record(crate::metrics::Op::Begin, &r);
        r
    }

    async fn try_begin(&self, name: &str, timeout: Duration) -> Result<String, TmError> {
        let timeout_ms = match i32::try_from(timeout.as_millis()) {
            Ok(ms) if ms > 0 => ms,
            _ => {
                return Err(TmError::InvalidArgument(format!(
                    "transaction timeout {timeout:?} of {name:?} must be 1 ms ..= i32::MAX ms \
                     (the TC rolls back a 0 ms transaction at once)"
                )))
            }
        };
        let req = GlobalBeginRequest {
            timeout: timeout_ms,
            transaction_name: name.to_owned(),
        };
        let resp: GlobalBeginResponse = self
            .tc
            .request(req)
            .await
            .map_err(|e| TmError::from_rpc(Op::Begin, "", e))?;
        TmError::from_result(Op::Begin, "", &resp.result)?;
        if resp.xid.is_empty() {
            return Err(TmError::BeginFailed {
                code: resp.result.transaction_exception_code,
                msg: "the TC answered Success without an XID".into(),
            });
        }
        info!(xid = %resp.xid, name, timeout_ms, "global transaction begun");
        Ok(resp.xid)
    }

    /// Commits the global transaction `xid`, retrying up to `commit-retry-count` attempts
    /// what is safe to retry (not sent, or answered `Failed`).
    ///
    /// `Ok` carries the TC's status once it decided to commit: `Committed`, `AsyncCommitting`,
    /// `Committing` or `CommitRetrying` (the TC finishes phase two itself), or `Finished` when
    /// an earlier attempt had reached the TC. A rollback status is [`TmError::RolledBackInstead`].
    pub async fn commit(&self, xid: &str) -> Result<GlobalStatus, TmError> {
        let r = self.try_commit(xid).await;
        crate::metrics::record(crate::metrics::Op::Commit, &r);
        r
    }

    async fn try_commit(&self, xid: &str) -> Result<GlobalStatus, TmError> {
        let attempts = self.config.commit_retry_count;
        let done = retry(Op::Commit, xid, attempts, || self.commit_once(xid)).await?;
        let status = commit_outcome(xid, done.value, done.after_failed_answer)?;
        info!(xid, ?status, "global commit accepted");
        Ok(status)
    }

    /// Rolls back the global transaction `xid`, retrying up to `rollback-retry-count`
    /// attempts what is safe to retry.
    ///
    /// `Ok` carries the TC's status once it decided to roll back (any rollback status but a
    /// failed one, or `Finished`: a transaction the TC no longer holds is not committed by us).
    pub async fn rollback(&self, xid: &str) -> Result<GlobalStatus, TmError> {
        let r = self.try_rollback(xid).await;
        crate::metrics::record(crate::metrics::Op::Rollback, &r);
        r
    }

    async fn try_rollback(&self, xid: &str) -> Result<GlobalStatus, TmError> {
        let attempts = self.config.rollback_retry_count;
        let done = retry(Op::Rollback, xid, attempts, || self.rollback_once(xid)).await?;
        let status = rollback_outcome(xid, done.value)?;
        info!(xid, ?status, "global rollback accepted");
        Ok(status)
    }

    /// The TC's status of `xid` (`Finished` when the TC no longer holds it).
    pub async fn status(&self, xid: &str) -> Result<GlobalStatus, TmError> {
        let req = GlobalStatusRequest {
            xid: xid.to_owned(),
            extra_data: String::new(),
        };
        let resp: GlobalStatusResponse = self
            .tc
            .request(req)
            .await
            .map_err(|e| TmError::from_rpc(Op::Status, xid, e))?;
        TmError::from_result(Op::Status, xid, &resp.result)?;
        debug!(xid, status = ?resp.global_status, "global status");
        Ok(resp.global_status)
    }

    /// Reports the status a SAGA transaction reached (GlobalReport); returns the TC's status.
    pub async fn report(&self, xid: &str, status: GlobalStatus) -> Result<GlobalStatus, TmError> {
        let req = GlobalReportRequest {
            xid: xid.to_owned(),
            extra_data: String::new(),
            global_status: Some(status),
        };
        let resp: GlobalReportResponse = self
            .tc
            .request(req)
            .await
            .map_err(|e| TmError::from_rpc(Op::Report, xid, e))?;
        TmError::from_result(Op::Report, xid, &resp.result)?;
        info!(xid, reported = ?status, status = ?resp.global_status, "global status reported");
        Ok(resp.global_status)
    }

    async fn commit_once(&self, xid: &str) -> Result<GlobalStatus, TmError> {
        let req = GlobalCommitRequest {
            xid: xid.to_owned(),
            extra_data: String::new(),
        };
        let resp: GlobalCommitResponse = self
            .tc
            .request(req)
            .await
            .map_err(|e| TmError::from_rpc(Op::Commit, xid, e))?;
        TmError::from_result(Op::Commit, xid, &resp.result)?;
        Ok(resp.global_status)
    }

    async fn rollback_once(&self, xid: &str) -> Result<GlobalStatus, TmError> {
        let req = GlobalRollbackRequest {
            xid: xid.to_owned(),
            extra_data: String::new(),
        };
        let resp: GlobalRollbackResponse = self
            .tc
            .request(req)
            .await
            .map_err(|e| TmError::from_rpc(Op::Rollback, xid, e))?;
        TmError::from_result(Op::Rollback, xid, &resp.result)?;
        Ok(resp.global_status)
    }
}

/// The value of the attempt that succeeded, and whether an earlier attempt reached the TC.
#[derive(Debug)]
pub(crate) struct Retried<T> {
    pub(crate) value: T,
    /// An earlier attempt was answered `Failed`: the TC saw the request before.
    pub(crate) after_failed_answer: bool,
}

/// Seata 1.2's TM retry loop, made safe: up to `attempts` tries, but only an error that
/// proves the TC did not act (not sent) or a `Failed` answer (the TC returns the current
/// status to a repeated commit/rollback) is retried. An outcome-unknown error ends the loop at
/// once: resending could not tell us what the first request did.
pub(crate) async fn retry<T, F, Fut>(
    op: Op,
    xid: &str,
    attempts: u32,
    mut attempt: F,
) -> Result<Retried<T>, TmError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TmError>>,
{
    let mut after_failed_answer = false;
    let mut tried = 0u32;
    loop {
        tried += 1;
        match attempt().await {
            Ok(value) => {
                return Ok(Retried {
                    value,
                    after_failed_answer,
                })
            }
            Err(e) if tried < attempts && (e.is_not_sent() || e.is_failed_response()) => {
                after_failed_answer |= e.is_failed_response();
                warn!(%op, xid, attempt = tried, of = attempts, error = %e, "retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

/// What a commit's returned status means (tc-semantics 2.5, 2.8).
fn commit_outcome(
    xid: &str,
    status: GlobalStatus,
    after_failed_answer: bool,
) -> Result<GlobalStatus, TmError> {
    use GlobalStatus as S;
    let xid = xid.to_owned();
    match status {
        S::Committed | S::AsyncCommitting | S::Committing | S::CommitRetrying => Ok(status),
        // A Failed answer means the TC took the commit decision before failing on a branch;
        // the session being gone now means the retry job finished it.
        S::Finished if after_failed_answer => Ok(status),
        S::Finished => Err(TmError::AlreadyFinished { xid }),
        S::CommitFailed => Err(TmError::CommitFailed { xid, status }),
        S::Rollbacking
        | S::RollbackRetrying
        | S::TimeoutRollbacking
        | S::TimeoutRollbackRetrying
        | S::Rollbacked
        | S::TimeoutRollbacked
        | S::RollbackFailed
        | S::TimeoutRollbackFailed => Err(TmError::RolledBackInstead { xid, status }),
        S::Begin | S::UnKnown => Err(TmError::UnexpectedStatus {
            op: Op::Commit,
            xid,
            status,
        }),
    }
}

/// What a rollback's returned status means (tc-semantics 2.6).
fn rollback_outcome(xid: &str, status: GlobalStatus) -> Result<GlobalStatus, TmError> {
    use GlobalStatus as S;
    let xid = xid.to_owned();
    match status {
        S::Rollbacking
        | S::RollbackRetrying
        | S::TimeoutRollbacking
        | S::TimeoutRollbackRetrying
        | S::Rollbacked
        | S::TimeoutRollbacked
        | S::Finished => Ok(status),
        S::RollbackFailed | S::TimeoutRollbackFailed => {
            Err(TmError::RollbackFailed { xid, status })
        }
        S::Committing | S::CommitRetrying | S::AsyncCommitting | S::Committed | S::CommitFailed => {
            Err(TmError::CommittedInstead { xid, status })
        }
        S::Begin | S::UnKnown => Err(TmError::UnexpectedStatus {
            op: Op::Rollback,
            xid,
            status,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use seata_protocol::rpc::RpcError;
    use seata_protocol::TransactionExceptionCode;

    use super::*;
    use crate::fake_tc::{Answer, FakeTc};
    use crate::transaction::TxState;

    fn not_sent() -> TmError {
        TmError::from_rpc(Op::Commit, "x", RpcError::NotSent { peer: "tc".into() })
    }

    fn failed() -> TmError {
        TmError::Tc {
            op: Op::Commit,
            xid: "x".into(),
            code: TransactionExceptionCode::FailedLockGlobalTransaction,
            msg: "busy".into(),
        }
    }

    #[tokio::test]
    async fn retry_resends_what_was_not_sent() {
        let calls = AtomicU32::new(0);
        let done = retry(Op::Commit, "x", 5, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(not_sent()),
                _ => Ok(GlobalStatus::Committed),
            }
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(!done.after_failed_answer);
    }

    #[tokio::test]
    async fn retry_stops_at_once_on_outcome_unknown() {
        let calls = AtomicU32::new(0);
        let err = retry(Op::Commit, "x", 5, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<GlobalStatus, _>(TmError::from_rpc(
                Op::Commit,
                "x",
                RpcError::Timeout {
                    peer: "tc".into(),
                    timeout_ms: 1,
                },
            ))
        })
        .await
        .unwrap_err();
        assert!(err.is_undetermined(), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retry_gives_up_after_the_configured_attempts() {
        let calls = AtomicU32::new(0);
        let err = retry(Op::Rollback, "x", 5, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<GlobalStatus, _>(failed())
        })
        .await
        .unwrap_err();
        assert!(matches!(err, TmError::Tc { .. }), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn begin_commit_and_status_against_a_tc() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let mut tx = tm.begin("order", Duration::from_secs(60)).await.unwrap();
        assert!(tx.xid().starts_with("127.0.0.1:"), "{}", tx.xid());
        assert_eq!(tx.status().await.unwrap(), GlobalStatus::Begin);
        assert_eq!(tx.commit().await.unwrap(), GlobalStatus::Committed);
        assert_eq!(tx.state(), TxState::Committed);
        assert_eq!(tc.state.registrations.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn begin_rejects_a_zero_timeout() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let err = tm.begin("t", Duration::ZERO).await.unwrap_err();
        assert!(matches!(err, TmError::InvalidArgument(_)), "{err}");
        assert_eq!(tc.state.begins.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn commit_retries_failed_answers_up_to_the_retry_count() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        tc.state.script_commit([Answer::failed(), Answer::failed()]);
        assert_eq!(tx.commit().await.unwrap(), GlobalStatus::Committed);
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 3);

        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        tc.state
            .script_commit(std::iter::repeat_n(Answer::failed(), 5));
        let err = tx.commit().await.unwrap_err();
        assert!(matches!(err, TmError::Tc { .. }), "{err}");
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 3 + 5);
        assert_eq!(tx.state(), TxState::Unknown);
    }

    #[tokio::test]
    async fn finished_after_a_failed_answer_counts_as_committed() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        tc.state
            .script_commit([Answer::failed(), Answer::status(GlobalStatus::Finished)]);
        assert_eq!(tx.commit().await.unwrap(), GlobalStatus::Finished);
    }

    #[tokio::test]
    async fn finished_on_the_first_commit_is_not_reported_as_committed() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        tc.state
            .script_commit([Answer::status(GlobalStatus::Finished)]);
        let err = tx.commit().await.unwrap_err();
        assert!(matches!(err, TmError::AlreadyFinished { .. }), "{err}");
        assert_eq!(tx.state(), TxState::CommitFailed);
    }

    #[tokio::test]
    async fn commit_answered_with_a_timeout_rollback_is_an_error() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        for status in [
            GlobalStatus::TimeoutRollbacking,
            GlobalStatus::TimeoutRollbacked,
        ] {
            let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
            tc.state.script_commit([Answer::status(status)]);
            let err = tx.commit().await.unwrap_err();
            assert!(err.is_rolled_back(), "{err}");
            assert_eq!(tx.state(), TxState::RolledBack);
            // The transaction is over: no second decision is sent.
            let again = tx.rollback().await.unwrap_err();
            assert!(matches!(again, TmError::InvalidState { .. }), "{again}");
        }
    }

    #[tokio::test]
    async fn commit_failed_status_needs_manual_repair() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        tc.state
            .script_commit([Answer::status(GlobalStatus::CommitFailed)]);
        let err = tm.commit("127.0.0.1:1:1").await.unwrap_err();
        assert!(err.needs_manual_repair(), "{err}");
    }

    #[tokio::test]
    async fn lost_connection_during_commit_is_undetermined_and_the_client_reconnects() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        tc.state.script_commit([Answer::DropConnection]);
        let err = tx.commit().await.unwrap_err();
        assert!(err.is_undetermined(), "{err}");
        assert_eq!(tx.state(), TxState::Unknown);
        // Never resent: the first request may have been carried out.
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 1);
        // The next request waits for the reconnect, then finds the transaction still open.
        assert_eq!(tx.status().await.unwrap(), GlobalStatus::Begin);
        assert_eq!(tc.state.registrations.load(Ordering::SeqCst), 2);
        assert_eq!(tx.commit().await.unwrap(), GlobalStatus::Committed);
    }

    #[tokio::test]
    async fn rollback_of_a_committing_transaction_is_refused() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        tc.state
            .script_rollback([Answer::status(GlobalStatus::CommitRetrying)]);
        let err = tx.rollback().await.unwrap_err();
        assert!(matches!(err, TmError::CommittedInstead { .. }), "{err}");
        assert_eq!(tx.state(), TxState::Committed);
    }

    #[tokio::test]
    async fn rollback_ends_rolled_back_and_failed_rollback_needs_repair() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        assert_eq!(tx.rollback().await.unwrap(), GlobalStatus::Rollbacked);
        assert_eq!(tx.state(), TxState::RolledBack);
        assert_eq!(tc.state.session(tx.xid()), Some(GlobalStatus::Rollbacked));

        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        tc.state
            .script_rollback([Answer::status(GlobalStatus::TimeoutRollbackFailed)]);
        let err = tx.rollback().await.unwrap_err();
        assert!(err.needs_manual_repair(), "{err}");
        assert_eq!(tx.state(), TxState::RollbackFailed);
    }

    #[tokio::test]
    async fn report_returns_the_tc_status() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let mut tx = tm.begin("saga", Duration::from_secs(60)).await.unwrap();
        let status = tx.report(GlobalStatus::Committed).await.unwrap();
        assert_eq!(status, GlobalStatus::Committed);
        assert_eq!(tx.state(), TxState::Committed);
    }

    #[tokio::test]
    async fn fails_over_to_a_live_address() {
        let tc = FakeTc::start().await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let config = TmConfig {
            addresses: vec![dead, tc.addr.clone()],
            ..tc.config()
        };
        let tm = TmClient::connect(config).await.unwrap();
        for _ in 0..4 {
            let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
            tx.commit().await.unwrap();
        }
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn connect_to_no_tc_fails_with_a_next_step() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let config = TmConfig {
            connect_timeout_ms: 200,
            ..TmConfig::new("tm-test", vec![dead])
        };
        let err = TmClient::connect(config).await.unwrap_err();
        assert!(matches!(err, TmError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("seata-tc is running"), "{err}");
    }
}
