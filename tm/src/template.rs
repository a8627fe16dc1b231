//! The closure template: [`GlobalTx::run`] (and [`TmClient::run`]) runs an async closure
//! inside a global transaction, with the XID bound for the rm crate and for outgoing calls, and
//! commits on `Ok`, rolls back on `Err` or panic. Propagation decides whether the closure
//! begins a transaction, joins the one bound to the task, or runs outside any.
//!
//! Only the launcher ends a transaction: a closure that joined returns its result as is and
//! leaves commit or rollback to whoever began the transaction.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use seata_protocol::TransactionExceptionCode;
use serde::Deserialize;
use thiserror::Error;
use tokio::runtime::RuntimeFlavor;
use tracing::{error, info};

use crate::client::TmClient;
use crate::context::{
    current_bound_xid, with_bound_xid, without_xid, BeginFailedUnwind, BoundXid, NotBegun,
    PendingXid,
};
use crate::error::TmError;
use crate::transaction::{GlobalTransaction, Role};

/// How a closure relates to a global transaction already bound to the task (the Spring/Seata
/// propagation modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Propagation {
    /// Join the bound transaction, or begin one if none is bound. The default.
    #[default]
    Required,
    /// Always begin a new transaction; a bound one is suspended (its XID is shadowed) and
    /// bound again afterwards.
    RequiresNew,
    /// Join the bound transaction, or run without one.
    Supports,
    /// Run without a transaction; a bound one is suspended.
    NotSupported,
    /// Run without a transaction; fail with [`TmError::ExistingTransaction`] if one is bound.
    Never,
    /// Join the bound transaction; fail with [`TmError::NoTransaction`] if none is bound.
    Mandatory,
}

/// What the closure is told about the transaction it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxContext {
    xid: Option<BoundXid>,
    role: Option<Role>,
}

impl TxContext {
    /// The XID the closure runs under (also bound as [`current_xid`]); `None` outside a
    /// transaction. While the TC's answer to the begin is on its way this waits for it, as
    /// [`current_xid`] does; [`TxContext::wait_xid`] waits without blocking.
    pub fn xid(&self) -> Option<&str> {
        self.xid.as_ref().and_then(BoundXid::get_blocking)
    }

    /// The XID, waiting without blocking for the TC's answer to the begin if needed.
    pub async fn wait_xid(&self) -> Result<Option<String>, NotBegun> {
        match &self.xid {
            Some(bound) => bound.wait().await,
            None => Ok(None),
        }
    }

    /// `Launcher` when this run began the transaction, `Participant` when it joined one,
    /// `None` outside a transaction.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// True when this run began the transaction and will commit or roll it back.
    pub fn is_launcher(&self) -> bool {
        self.role == Some(Role::Launcher)
    }
}

/// How a templated run failed. `E` is the closure's own error type.
#[derive(Debug, Error)]
pub enum TxError<E> {
    /// The closure returned `Err`. If this run began the transaction it has been rolled back;
    /// if it joined one, the launcher decides (normally it rolls back when it sees this).
    #[error("the operation failed and its global transaction was rolled back: {0}")]
    Business(E),
    /// The closure returned `Err` and the rollback failed too.
    #[error("the operation failed ({error}) and so did the rollback: {rollback}")]
    RollbackFailed {
        /// The closure's error.
        error: E,
        /// The rollback's error (see [`TmError::is_undetermined`]).
        #[source]
        rollback: TmError,
    },
    /// Begin or commit failed, or the propagation mode refused to run. When a commit fails,
    /// the closure had succeeded: see the inner error for what the TC did.
    #[error(transparent)]
    Tm(#[from] TmError),
}

impl<E> TxError<E> {
    /// True when a commit or rollback outcome is unknown.
    pub fn is_undetermined(&self) -> bool {
        match self {
            TxError::Tm(e) | TxError::RollbackFailed { rollback: e, .. } => e.is_undetermined(),
            TxError::Business(_) => false,
        }
    }

    /// The closure's error, if the closure failed.
    pub fn business(&self) -> Option<&E> {
        match self {
            TxError::Business(e) | TxError::RollbackFailed { error: e, .. } => Some(e),
            TxError::Tm(_) => None,
        }
    }

    /// The TM error, if a TM operation failed.
    pub fn tm(&self) -> Option<&TmError> {
        match self {
            TxError::Tm(e) | TxError::RollbackFailed { rollback: e, .. } => Some(e),
            TxError::Business(_) => None,
        }
    }
}

/// A templated global transaction: name, timeout and propagation, then [`GlobalTx::run`].
#[derive(Debug, Clone)]
pub struct GlobalTx {
    client: TmClient,
    name: String,
    timeout: Duration,
    propagation: Propagation,
    overlap_begin: bool,
}

impl GlobalTx {
    /// A `Required` transaction named `name` with the client's default timeout.
    pub fn new(client: &TmClient, name: impl Into<String>) -> Self {
        GlobalTx {
            timeout: client.config().default_timeout(),
            client: client.clone(),
            name: name.into(),
            propagation: Propagation::Required,
            overlap_begin: client.config().overlap_begin,
        }
    }

    /// Whether the closure may start before the TC answers the begin (default: the client's
    /// `overlap-begin`, true); see [`TmConfig::overlap_begin`](crate::TmConfig::overlap_begin).
    pub fn overlap_begin(mut self, overlap: bool) -> Self {
        self.overlap_begin = overlap;
        self
    }

    /// The time after which the TC rolls the transaction back.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How to relate to a transaction already bound to the task.
    pub fn propagation(mut self, propagation: Propagation) -> Self {
        self.propagation = propagation;
        self
    }

    /// Runs `f` as the propagation says. When this run begins the transaction, `f` runs with
    /// its XID bound; `Ok` commits, `Err` rolls back, a panic rolls back and then resumes.
    /// `f` starts as soon as the begin is sent (see [`GlobalTx::overlap_begin`]); if the begin
    /// fails, the result is its error, whatever `f` returned.
    ///
    /// A commit that fails is not followed by a rollback (as in Seata): an outcome-unknown
    /// commit may have committed, and one that never reached the TC leaves the transaction to
    /// the TC's timeout rollback.
    pub async fn run<F, Fut, T, E>(self, f: F) -> Result<T, TxError<E>>
    where
        F: FnOnce(TxContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        use Propagation as P;
        match (self.propagation, current_bound_xid()) {
            (P::Required | P::Supports | P::Mandatory, Some(xid)) => join(xid, f).await,
            (P::Required | P::RequiresNew, _) => self.launch(f).await,
            (P::Supports | P::Never, None) | (P::NotSupported, _) => {
                let ctx = TxContext {
                    xid: None,
                    role: None,
                };
                without_xid(f(ctx)).await.map_err(TxError::Business)
            }
            (P::Never, Some(xid)) => Err(TmError::ExistingTransaction {
                xid: xid.to_string(),
            }
            .into()),
            (P::Mandatory, None) => Err(TmError::NoTransaction.into()),
        }
    }

    async fn launch<F, Fut, T, E>(self, f: F) -> Result<T, TxError<E>>
    where
        F: FnOnce(TxContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.may_overlap() {
            let xid = self.client.begin_xid(&self.name, self.timeout).await?;
            let bound = BoundXid::Known(xid.clone());
            let outcome = run_caught(bound, f).await;
            return finish(GlobalTransaction::launcher(self.client, xid), outcome).await;
        }
        // The begin goes out now and the closure starts at once: its first statement's SQL
        // overlaps the TC's round trip, and what needs the XID waits for the answer.
        let failure = Arc::new(Mutex::new(None));
        let pending = {
            let (client, failure) = (self.client.clone(), failure.clone());
            PendingXid::start(async move {
                client
                    .begin_xid(&self.name, self.timeout)
                    .await
                    .map_err(|e| {
                        let reason = e.to_string();
                        *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                        NotBegun { reason }
                    })
            })
            .await
        };
        let outcome = run_caught(BoundXid::Pending(pending.clone()), f).await;
        match pending.wait().await {
            Ok(xid) => finish(GlobalTransaction::launcher(self.client, xid), outcome).await,
            Err(not_begun) => {
                // Nothing ran under the transaction: an AT statement cannot commit without
                // its branch, and a synchronous XID reader was unwound before using it.
                if let Err(panic) = outcome {
                    if !panic.is::<BeginFailedUnwind>() {
                        std::panic::resume_unwind(panic);
                    }
                }
                let error = failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                Err(TxError::Tm(error.unwrap_or(TmError::BeginFailed {
                    code: TransactionExceptionCode::BeginFailed,
                    msg: not_begun.reason,
                })))
            }
        }
    }

    /// Overlapping needs `block_in_place` for synchronous XID readers (a multi-thread
    /// runtime) and unwinding to stop them when the begin fails.
    fn may_overlap(&self) -> bool {
        self.overlap_begin
            && cfg!(panic = "unwind")
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
    }
}

/// What the closure did: its result, or the panic it raised.
type Caught<T, E> = Result<Result<T, E>, Box<dyn std::any::Any + Send>>;

/// Runs the launcher's closure with `bound` as the task's XID, catching a panic.
async fn run_caught<F, Fut, T, E>(bound: BoundXid, f: F) -> Caught<T, E>
where
    F: FnOnce(TxContext) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let ctx = TxContext {
        xid: Some(bound.clone()),
        role: Some(Role::Launcher),
    };
    // `f` is called inside the future so a panic in its synchronous part is caught too.
    // Unwind safety: after a panic only the transaction is touched (rolled back), and the
    // panic is resumed, so no broken state is observed.
    let body = with_bound_xid(bound, async move { f(ctx).await });
    AssertUnwindSafe(body).catch_unwind().await
}

/// Commits on `Ok`, rolls back on `Err` or panic (then resumes the panic).
async fn finish<T, E>(mut tx: GlobalTransaction, outcome: Caught<T, E>) -> Result<T, TxError<E>> {
    let xid = tx.xid().to_owned();
    match outcome {
        Ok(Ok(value)) => {
            tx.commit().await?;
            Ok(value)
        }
        Ok(Err(error)) => match tx.rollback().await {
            Ok(status) => {
                info!(%xid, ?status, "operation failed; global transaction rolled back");
                Err(TxError::Business(error))
            }
            Err(rollback) => Err(TxError::RollbackFailed { error, rollback }),
        },
        Err(panic) => {
            if let Err(e) = tx.rollback().await {
                error!(%xid, error = %e, "operation panicked and the rollback failed");
            } else {
                info!(%xid, "operation panicked; global transaction rolled back");
            }
            std::panic::resume_unwind(panic)
        }
    }
}

/// Runs `f` as a participant of `xid`: no begin, no commit, no rollback.
async fn join<F, Fut, T, E>(xid: BoundXid, f: F) -> Result<T, TxError<E>>
where
    F: FnOnce(TxContext) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let ctx = TxContext {
        xid: Some(xid.clone()),
        role: Some(Role::Participant),
    };
    with_bound_xid(xid, f(ctx)).await.map_err(TxError::Business)
}

impl TmClient {
    /// Runs `f` in a `Required` global transaction named `name`: joins the one bound to the
    /// task, or begins one with `timeout` and commits on `Ok`, rolls back on `Err` or panic.
    /// Use [`GlobalTx`] for other propagation modes.
    pub async fn run<F, Fut, T, E>(
        &self,
        name: &str,
        timeout: Duration,
        f: F,
    ) -> Result<T, TxError<E>>
    where
        F: FnOnce(TxContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        GlobalTx::new(self, name).timeout(timeout).run(f).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use seata_protocol::GlobalStatus;

    use super::*;
    use crate::context::{current_xid, with_xid};
    use crate::fake_tc::{Answer, FakeTc};

    const T: Duration = Duration::from_secs(60);

    #[derive(Debug, PartialEq)]
    struct Oops;

    // Multi-thread: the closure starts while the begin is on its way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_on_ok_with_the_xid_bound() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let (xid, seen) = tm
            .run("t", T, |ctx| async move {
                assert!(ctx.is_launcher());
                Ok::<_, Oops>((ctx.xid().map(str::to_owned), current_xid()))
            })
            .await
            .unwrap();
        assert!(xid.is_some());
        assert_eq!(xid, seen);
        assert_eq!(current_xid(), None);
        let xid = xid.unwrap();
        assert_eq!(tc.state.session(&xid), Some(GlobalStatus::Committed));
        assert_eq!(tc.state.rollbacks.load(Ordering::SeqCst), 0);
    }

    // Multi-thread: the closure starts while the begin is on its way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rolls_back_on_err() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let err = tm
            .run("t", T, |_| async { Err::<(), _>(Oops) })
            .await
            .unwrap_err();
        assert!(matches!(err, TxError::Business(Oops)), "{err:?}");
        assert_eq!(tc.state.rollbacks.load(Ordering::SeqCst), 1);
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 0);
    }

    // Multi-thread: the closure starts while the begin is on its way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rolls_back_on_panic_then_resumes_it() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let task = tokio::spawn(async move {
            tm.run("t", T, |_| async {
                if true {
                    panic!("business code panicked");
                }
                Ok::<(), Oops>(())
            })
            .await
        });
        let panic = task.await.unwrap_err().into_panic();
        assert_eq!(
            panic.downcast_ref::<&str>(),
            Some(&"business code panicked")
        );
        assert_eq!(tc.state.rollbacks.load(Ordering::SeqCst), 1);
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_rollback_keeps_both_errors() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        tc.state.script_rollback([Answer::DropConnection]);
        let err = tm
            .run("t", T, |_| async { Err::<(), _>(Oops) })
            .await
            .unwrap_err();
        assert!(err.is_undetermined(), "{err:?}");
        assert_eq!(err.business(), Some(&Oops));
    }

    #[tokio::test]
    async fn commit_rolled_back_by_timeout_is_not_success() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        tc.state
            .script_commit([Answer::status(GlobalStatus::TimeoutRollbacked)]);
        let err = tm
            .run("t", T, |_| async { Ok::<_, Oops>(1) })
            .await
            .unwrap_err();
        assert!(err.tm().is_some_and(TmError::is_rolled_back), "{err:?}");
    }

    // Multi-thread: the closure starts while the begin is on its way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn required_joins_the_bound_transaction_and_only_the_launcher_ends_it() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let inner_tm = tm.clone();
        let state = tc.state.clone();
        let err = tm
            .run("outer", T, |outer| async move {
                let inner = inner_tm
                    .run("inner", T, |ctx| async move {
                        assert_eq!(ctx.role(), Some(Role::Participant));
                        Err::<(), _>(ctx.xid().map(str::to_owned))
                    })
                    .await;
                // The participant neither committed nor rolled back.
                assert_eq!(state.rollbacks.load(Ordering::SeqCst), 0);
                match inner {
                    Err(TxError::Business(xid)) => Err::<(), _>(xid),
                    other => panic!("unexpected {other:?}; outer {outer:?}"),
                }
            })
            .await
            .unwrap_err();
        let TxError::Business(Some(joined)) = err else {
            panic!("unexpected {err:?}")
        };
        assert_eq!(tc.state.begins.load(Ordering::SeqCst), 1);
        assert_eq!(tc.state.rollbacks.load(Ordering::SeqCst), 1);
        assert_eq!(tc.state.session(&joined), Some(GlobalStatus::Rollbacked));
    }

    // Multi-thread: the closure starts while the begin is on its way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requires_new_begins_its_own_and_restores_the_outer_xid() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let t2 = tm.clone();
        let (outer, inner, after) = tm
            .run("outer", T, |ctx| async move {
                let inner = GlobalTx::new(&t2, "inner")
                    .propagation(Propagation::RequiresNew)
                    .run(|c| async move { Ok::<_, Oops>(c.xid().map(str::to_owned)) })
                    .await
                    .unwrap();
                Ok::<_, Oops>((ctx.xid().map(str::to_owned), inner, current_xid()))
            })
            .await
            .unwrap();
        assert_ne!(outer, inner);
        assert_eq!(outer, after);
        assert_eq!(tc.state.begins.load(Ordering::SeqCst), 2);
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn never_mandatory_supports_and_not_supported() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let with = |p| GlobalTx::new(&tm, "p").propagation(p);

        // Outside a transaction.
        let err = with(Propagation::Mandatory)
            .run(|_| async { Ok::<_, Oops>(()) })
            .await
            .unwrap_err();
        assert!(
            matches!(err, TxError::Tm(TmError::NoTransaction)),
            "{err:?}"
        );
        for p in [
            Propagation::Supports,
            Propagation::NotSupported,
            Propagation::Never,
        ] {
            let ctx = with(p).run(|c| async { Ok::<_, Oops>(c) }).await.unwrap();
            assert_eq!(ctx.xid(), None);
        }
        assert_eq!(tc.state.begins.load(Ordering::SeqCst), 0);

        // Inside one.
        with_xid("10.0.0.1:8091:1", async {
            let err = with(Propagation::Never)
                .run(|_| async { Ok::<_, Oops>(()) })
                .await
                .unwrap_err();
            assert!(
                matches!(err, TxError::Tm(TmError::ExistingTransaction { .. })),
                "{err:?}"
            );
            let seen = with(Propagation::NotSupported)
                .run(|_| async { Ok::<_, Oops>(current_xid()) })
                .await
                .unwrap();
            assert_eq!(seen, None);
            for p in [Propagation::Supports, Propagation::Mandatory] {
                let ctx = with(p).run(|c| async { Ok::<_, Oops>(c) }).await.unwrap();
                assert_eq!(ctx.xid(), Some("10.0.0.1:8091:1"));
                assert_eq!(ctx.role(), Some(Role::Participant));
            }
        })
        .await;
        assert_eq!(tc.state.begins.load(Ordering::SeqCst), 0);
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_closure_starts_while_the_begin_is_on_its_way() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let gate = tc.state.hold_begins();
        // Without the overlap the begin waits for the gate the closure opens: time out.
        let run = tm.run("t", T, |ctx| async move {
            let pending = matches!(
                current_bound_xid(),
                Some(BoundXid::Pending(p)) if p.now().is_none()
            );
            gate.add_permits(1);
            // Waits in place for the answer the gate now lets through.
            let sync_xid = current_xid();
            Ok::<_, Oops>((pending, sync_xid, ctx.wait_xid().await.unwrap()))
        });
        let (pending_at_start, sync_xid, async_xid) = tokio::time::timeout(T, run)
            .await
            .expect("the closure did not start before the begin was answered")
            .unwrap();
        assert!(pending_at_start);
        let xid = sync_xid.unwrap();
        assert_eq!(async_xid.as_deref(), Some(xid.as_str()));
        assert_eq!(tc.state.session(&xid), Some(GlobalStatus::Committed));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_overlap_the_closure_starts_after_the_answer() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let bound = GlobalTx::new(&tm, "t")
            .overlap_begin(false)
            .run(|_| async { Ok::<_, Oops>(current_bound_xid()) })
            .await
            .unwrap();
        assert!(matches!(bound, Some(BoundXid::Known(_))), "{bound:?}");
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_begin_stops_a_sync_xid_reader_and_is_what_run_returns() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        tc.state.script_begin([Answer::failed()]);
        let reached = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = reached.clone();
        let err = tm
            .run("t", T, |_| async move {
                let xid = current_xid();
                // Not reached: the XID does not exist, so nothing may be sent under it.
                flag.store(true, Ordering::SeqCst);
                Ok::<_, Oops>(xid)
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, TxError::Tm(TmError::BeginFailed { .. })),
            "{err:?}"
        );
        assert!(!reached.load(Ordering::SeqCst));
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 0);
        assert_eq!(tc.state.rollbacks.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_begin_outranks_the_error_of_a_closure_that_waited_for_the_xid() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        tc.state.script_begin([Answer::failed()]);
        let err = tm
            .run("t", T, |ctx| async move {
                let not_begun = ctx.wait_xid().await.unwrap_err();
                assert!(not_begun.reason.contains("refused to begin"), "{not_begun}");
                Err::<(), _>(Oops)
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, TxError::Tm(TmError::BeginFailed { .. })),
            "{err:?}"
        );
        assert_eq!(tc.state.rollbacks.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn propagation_deserializes_from_spring_names() {
        let p: Propagation = serde_json::from_str("\"REQUIRES_NEW\"").unwrap();
        assert_eq!(p, Propagation::RequiresNew);
    }
}
