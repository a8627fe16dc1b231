//! The closure template: [`GlobalTx::run`] (and [`TmClient::run`]) runs an async closure
//! inside a global transaction, with the XID bound for the rm crate and for outgoing calls, and
//! commits on `Ok`, rolls back on `Err` or panic. Propagation decides whether the closure
//! begins a transaction, joins the one bound to the task, or runs outside any.
//!
//! Only the launcher ends a transaction: a closure that joined returns its result as is and
//! leaves commit or rollback to whoever began the transaction.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde::Deserialize;
use thiserror::Error;
use tracing::{error, info};

use crate::client::TmClient;
use crate::context::{current_xid, with_xid, without_xid};
use crate::error::TmError;
use crate::transaction::Role;

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
    xid: Option<String>,
    role: Option<Role>,
}

impl TxContext {
    /// The XID the closure runs under (also bound as [`current_xid`]); `None` outside a
    /// transaction.
    pub fn xid(&self) -> Option<&str> {
        self.xid.as_deref()
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
}

impl GlobalTx {
    /// A `Required` transaction named `name` with the client's default timeout.
    pub fn new(client: &TmClient, name: impl Into<String>) -> Self {
        GlobalTx {
            timeout: client.config().default_timeout(),
            client: client.clone(),
            name: name.into(),
            propagation: Propagation::Required,
        }
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
        match (self.propagation, current_xid()) {
            (P::Required | P::Supports | P::Mandatory, Some(xid)) => join(xid, f).await,
            (P::Required | P::RequiresNew, _) => self.launch(f).await,
            (P::Supports | P::Never, None) | (P::NotSupported, _) => {
                let ctx = TxContext {
                    xid: None,
                    role: None,
                };
                without_xid(f(ctx)).await.map_err(TxError::Business)
            }
            (P::Never, Some(xid)) => Err(TmError::ExistingTransaction { xid }.into()),
            (P::Mandatory, None) => Err(TmError::NoTransaction.into()),
        }
    }

    async fn launch<F, Fut, T, E>(self, f: F) -> Result<T, TxError<E>>
    where
        F: FnOnce(TxContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut tx = self.client.begin(&self.name, self.timeout).await?;
        let xid = tx.xid().to_owned();
        let ctx = TxContext {
            xid: Some(xid.clone()),
            role: Some(Role::Launcher),
        };
        // `f` is called inside the future so a panic in its synchronous part is caught too.
        // Unwind safety: after a panic only the transaction is touched (rolled back), and the
        // panic is resumed, so no broken state is observed.
        let body = with_xid(xid.clone(), async move { f(ctx).await });
        match AssertUnwindSafe(body).catch_unwind().await {
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
}

/// Runs `f` as a participant of `xid`: no begin, no commit, no rollback.
async fn join<F, Fut, T, E>(xid: String, f: F) -> Result<T, TxError<E>>
where
    F: FnOnce(TxContext) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let ctx = TxContext {
        xid: Some(xid.clone()),
        role: Some(Role::Participant),
    };
    with_xid(xid, f(ctx)).await.map_err(TxError::Business)
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
    use crate::fake_tc::{Answer, FakeTc};

    const T: Duration = Duration::from_secs(60);

    #[derive(Debug, PartialEq)]
    struct Oops;

    #[tokio::test]
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

    #[tokio::test]
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

    #[tokio::test]
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

    #[tokio::test]
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

    #[tokio::test]
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

    #[test]
    fn propagation_deserializes_from_spring_names() {
        let p: Propagation = serde_json::from_str("\"REQUIRES_NEW\"").unwrap();
        assert_eq!(p, Propagation::RequiresNew);
    }
}
