//! The XID of the global transaction the current task works in.
//!
//! The XID is bound to a task with [`with_xid`] (task-local, so it follows `.await`s but not
//! `tokio::spawn`: carry it across with [`current_xid`] + [`with_xid`]). The rm crate reads it to
//! decide whether a statement is part of a global transaction; HTTP helpers carry it between
//! services in the `TX_XID` header, as Java Seata does.
//!
//! A transaction begun by [`GlobalTx::run`](crate::GlobalTx::run) binds its XID before the TC
//! has answered the GlobalBegin (the closure's first statement overlaps that round trip): the
//! binding is then [`BoundXid::Pending`]. Asynchronous readers wait for the answer without
//! blocking ([`await_current_xid`], [`PendingXid::wait`]); the synchronous [`current_xid`] waits
//! in place (`block_in_place`), and if the begin failed it stops the closure there, so nothing
//! is sent under an XID that does not exist, and `run` returns the begin's error.

use std::fmt;
use std::future::Future;

use futures::future::{BoxFuture, FutureExt, Shared};
use thiserror::Error;
use tokio::task::futures::TaskLocalFuture;

/// The HTTP header (and RPC attachment key) Seata uses to carry the XID between services.
pub const XID_HEADER: &str = "TX_XID";

tokio::task_local! {
    static XID: BoundXid;
}

/// The GlobalBegin of the task's transaction failed, so it has no XID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the global transaction did not begin: {reason}")]
pub struct NotBegun {
    /// The begin's error, as text (the launcher returns the error itself).
    pub reason: String,
}

/// The XID bound to a task.
#[derive(Clone)]
pub enum BoundXid {
    /// Known (empty: suspended, no transaction).
    Known(String),
    /// The TC's answer to a GlobalBegin that has been sent.
    Pending(PendingXid),
}

/// The answer to a GlobalBegin on its way, shared by everyone who needs the XID: the first
/// to wait drives the request, the others are woken with its result.
#[derive(Clone)]
pub struct PendingXid {
    answer: Shared<BoxFuture<'static, Result<String, NotBegun>>>,
}

/// Unwinds a closure that asked synchronously for the XID of a transaction whose begin
/// failed; the launcher catches it and returns the begin's error. Raised with
/// `resume_unwind`, so no panic message is printed.
pub(crate) struct BeginFailedUnwind;

impl PendingXid {
    /// Starts the begin request: its first poll here sends it before the closure starts.
    /// If it is not answered by then, a task keeps polling it (a write the socket did not
    /// take at once must not hold the connection's write half, nor the answer go unread,
    /// until the closure first asks for the XID); whoever waits is woken by the answer
    /// itself, not through that task.
    pub(crate) async fn start(
        answer: impl Future<Output = Result<String, NotBegun>> + Send + 'static,
    ) -> Self {
        let answer = answer.boxed().shared();
        if futures::poll!(answer.clone()).is_pending() {
            tokio::spawn(answer.clone().map(drop));
        }
        PendingXid { answer }
    }

    /// The XID once the TC has answered, or why there is none.
    pub async fn wait(&self) -> Result<String, NotBegun> {
        self.answer.clone().await
    }

    /// The answer if it has arrived and been taken in, without waiting.
    pub fn now(&self) -> Option<&Result<String, NotBegun>> {
        self.answer.peek()
    }

    /// Waits in place (the launcher makes pending XIDs only on a multi-thread runtime, where
    /// `block_in_place` may be called); a failed begin unwinds to the launcher.
    fn wait_blocking(&self) -> &str {
        if self.answer.peek().is_none() {
            let answer = self.answer.clone();
            let _ = tokio::task::block_in_place(|| futures::executor::block_on(answer));
        }
        match self.answer.peek() {
            Some(Ok(xid)) => xid,
            _ => std::panic::resume_unwind(Box::new(BeginFailedUnwind)),
        }
    }
}

impl BoundXid {
    /// The XID, waiting for the TC's answer if it is pending. `None` when suspended.
    pub async fn wait(&self) -> Result<Option<String>, NotBegun> {
        match self {
            BoundXid::Known(x) if x.is_empty() => Ok(None),
            BoundXid::Known(x) => Ok(Some(x.clone())),
            BoundXid::Pending(p) => p.wait().await.map(Some),
        }
    }

    /// The XID, waiting in place if it is pending (see the module docs). `None` when suspended.
    pub(crate) fn get_blocking(&self) -> Option<&str> {
        match self {
            BoundXid::Known(x) => Some(x.as_str()).filter(|x| !x.is_empty()),
            BoundXid::Pending(p) => Some(p.wait_blocking()),
        }
    }

    /// True when a transaction is bound (known or beginning).
    fn is_bound(&self) -> bool {
        !matches!(self, BoundXid::Known(x) if x.is_empty())
    }
}

/// The XID as far as it is known: `(beginning)` while the TC's answer is on its way.
impl fmt::Display for BoundXid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundXid::Known(x) => f.write_str(x),
            BoundXid::Pending(p) => match p.now() {
                Some(Ok(x)) => f.write_str(x),
                Some(Err(_)) => f.write_str("(not begun)"),
                None => f.write_str("(beginning)"),
            },
        }
    }
}

impl fmt::Debug for BoundXid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoundXid({self})")
    }
}

impl fmt::Debug for PendingXid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingXid")
            .field("answer", &self.now())
            .finish()
    }
}

impl PartialEq for BoundXid {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BoundXid::Known(a), BoundXid::Known(b)) => a == b,
            (BoundXid::Pending(a), BoundXid::Pending(b)) => a.answer.ptr_eq(&b.answer),
            _ => false,
        }
    }
}

impl Eq for BoundXid {}

/// The XID bound to the current task, if any. If the transaction's begin is still on its way
/// this waits for the TC's answer in place (see the module docs); async code should prefer
/// [`await_current_xid`].
pub fn current_xid() -> Option<String> {
    XID.try_with(|x| x.get_blocking().map(str::to_owned))
        .ok()
        .flatten()
}

/// The XID bound to the current task, waiting without blocking for the TC's answer to a
/// begin that is on its way. `Ok(None)` outside a transaction.
pub async fn await_current_xid() -> Result<Option<String>, NotBegun> {
    match current_bound_xid() {
        Some(bound) => bound.wait().await,
        None => Ok(None),
    }
}

/// The binding of the current task as it is (pending or known), `None` outside a transaction.
pub fn current_bound_xid() -> Option<BoundXid> {
    XID.try_with(|x| x.is_bound().then(|| x.clone()))
        .ok()
        .flatten()
}

/// True when the current task runs inside a global transaction (also while its begin is on
/// its way).
pub fn in_global_transaction() -> bool {
    XID.try_with(BoundXid::is_bound).unwrap_or(false)
}

/// Runs `fut` with `xid` bound as the current XID (an inner binding shadows an outer one).
pub async fn with_xid<F: Future>(xid: impl Into<String>, fut: F) -> F::Output {
    XID.scope(BoundXid::Known(xid.into()), fut).await
}

/// Runs `fut` with `bound` as the current XID, pending or known.
pub(crate) async fn with_bound_xid<F: Future>(bound: BoundXid, fut: F) -> F::Output {
    XID.scope(bound, fut).await
}

/// Runs `fut` with no XID bound, even inside a global transaction (Seata's "suspend", used by
/// the `NotSupported` propagation). The outer XID is bound again when `fut` completes.
pub async fn without_xid<F: Future>(fut: F) -> F::Output {
    // An empty XID reads as "none" in `current_xid` and `in_global_transaction`.
    XID.scope(BoundXid::Known(String::new()), fut).await
}

/// [`with_xid`] as a nameable future type, for tower services whose `Future` must be spelled out.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn scope_xid<F: Future>(xid: BoundXid, fut: F) -> TaskLocalFuture<BoundXid, F> {
    XID.scope(xid, fut)
}

/// Runs the synchronous `f` with `xid` bound (a tower service's `call` does work before its
/// future is first polled).
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn sync_scope_xid<R>(xid: BoundXid, f: impl FnOnce() -> R) -> R {
    XID.sync_scope(xid, f)
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use super::*;

    #[tokio::test]
    async fn binds_for_the_scope_only() {
        assert_eq!(current_xid(), None);
        let seen = with_xid("1.2.3.4:8091:7", async {
            tokio::task::yield_now().await;
            current_xid()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("1.2.3.4:8091:7"));
        assert!(!in_global_transaction());
    }

    #[tokio::test]
    async fn without_xid_suspends_and_restores() {
        with_xid("outer", async {
            assert_eq!(without_xid(async { current_xid() }).await, None);
            assert!(!without_xid(async { in_global_transaction() }).await);
            assert_eq!(current_xid().as_deref(), Some("outer"));
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pending_xid_is_waited_for_by_sync_and_async_readers() {
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let pending = PendingXid::start(async move {
            rx.await.map_err(|_| NotBegun {
                reason: "gone".into(),
            })
        })
        .await;
        let bound = BoundXid::Pending(pending.clone());
        assert_eq!(bound.to_string(), "(beginning)");
        let answer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.send("1.2.3.4:8091:9".into())
        });
        let (sync_seen, async_seen, in_tx) = with_bound_xid(bound.clone(), async {
            (
                current_xid(),
                await_current_xid().await,
                in_global_transaction(),
            )
        })
        .await;
        answer.await.unwrap().unwrap();
        assert_eq!(sync_seen.as_deref(), Some("1.2.3.4:8091:9"));
        assert_eq!(async_seen, Ok(Some("1.2.3.4:8091:9".into())));
        assert!(in_tx);
        assert_eq!(bound.to_string(), "1.2.3.4:8091:9");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_begin_unwinds_a_sync_reader_and_errs_an_async_one() {
        let pending = PendingXid::start(async {
            Err(NotBegun {
                reason: "TC down".into(),
            })
        })
        .await;
        let bound = BoundXid::Pending(pending);
        let async_seen = with_bound_xid(bound.clone(), await_current_xid()).await;
        assert_eq!(async_seen.unwrap_err().reason, "TC down");
        let unwound = AssertUnwindSafe(with_bound_xid(bound, async { current_xid() }))
            .catch_unwind()
            .await
            .unwrap_err();
        assert!(unwound.is::<BeginFailedUnwind>());
    }
}
