//! The XID of the global transaction the current task works in.
//!
//! The XID is bound to a task with [`with_xid`] (task-local, so it follows `.await`s but not
//! `tokio::spawn`: carry it across with [`current_xid`] + [`with_xid`]). The rm crate reads it to
//! decide whether a statement is part of a global transaction; HTTP helpers carry it between
//! services in the `TX_XID` header, as Java Seata does.

use std::future::Future;

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
}
