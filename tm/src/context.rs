//! The XID of the global transaction the current task works in.
//!
//! The XID is bound to a task with [`with_xid`] (task-local, so it follows `.await`s but not
//! `tokio::spawn`: carry it across with [`current_xid`] + [`with_xid`]). The rm crate reads it to
//! decide whether a statement is part of a global transaction; HTTP helpers carry it between
//! services in the `TX_XID` header, as Java Seata does.

use std::future::Future;

use tokio::task::futures::TaskLocalFuture;

/// The HTTP header (and RPC attachment key) Seata uses to carry the XID between services.
pub const XID_HEADER: &str = "TX_XID";

tokio::task_local! {
    static XID: String;
}

/// The XID bound to the current task, if any.
pub fn current_xid() -> Option<String> {
    XID.try_with(|x| x.clone()).ok().filter(|x| !x.is_empty())
}

/// True when the current task runs inside a global transaction.
pub fn in_global_transaction() -> bool {
    XID.try_with(|x| !x.is_empty()).unwrap_or(false)
}

/// Runs `fut` with `xid` bound as the current XID (an inner binding shadows an outer one).
pub async fn with_xid<F: Future>(xid: impl Into<String>, fut: F) -> F::Output {
    XID.scope(xid.into(), fut).await
}

/// Runs `fut` with no XID bound, even inside a global transaction (Seata's "suspend", used by
/// the `NotSupported` propagation). The outer XID is bound again when `fut` completes.
pub async fn without_xid<F: Future>(fut: F) -> F::Output {
    // An empty XID reads as "none" in `current_xid` and `in_global_transaction`.
    XID.scope(String::new(), fut).await
}

/// [`with_xid`] as a nameable future type, for tower services whose `Future` must be spelled out.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn scope_xid<F: Future>(xid: String, fut: F) -> TaskLocalFuture<String, F> {
    XID.scope(xid, fut)
}

/// Runs the synchronous `f` with `xid` bound (a tower service's `call` does work before its
/// future is first polled).
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn sync_scope_xid<R>(xid: String, f: impl FnOnce() -> R) -> R {
    XID.sync_scope(xid, f)
}

#[cfg(test)]
mod tests {
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
}
