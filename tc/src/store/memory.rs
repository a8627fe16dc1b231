//! [`MemoryStore`]: keeps nothing. Every write succeeds at once without allocating, and
//! recovery finds nothing, so a restart forgets every transaction (`store = "memory"`).

use seata_protocol::{BranchStatus, GlobalStatus};

use super::{ready, BranchRow, GlobalRow, SessionStore, StoreFuture, StoredSession};

/// A store that records nothing; for tests, benchmarks and deployments that accept losing
/// in-flight transactions on restart.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl MemoryStore {
    /// A new store.
    pub fn new() -> Self {
        MemoryStore
    }
}

impl SessionStore for MemoryStore {
    fn add_global<'a>(&'a self, _global: GlobalRow<'a>) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }

    fn update_global_status<'a>(
        &'a self,
        _transaction_id: i64,
        _xid: &'a str,
        _status: GlobalStatus,
    ) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }

    fn remove_global<'a>(&'a self, _transaction_id: i64, _xid: &'a str) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }

    fn add_branch<'a>(&'a self, _branch: BranchRow<'a>) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }

    fn update_branch_status<'a>(
        &'a self,
        _transaction_id: i64,
        _xid: &'a str,
        _branch_id: i64,
        _status: BranchStatus,
    ) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }

    fn remove_branch<'a>(
        &'a self,
        _transaction_id: i64,
        _xid: &'a str,
        _branch_id: i64,
    ) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }

    fn recover(&self) -> StoreFuture<'_, Vec<StoredSession>> {
        ready(Ok(Vec::new()))
    }

    fn find<'a>(
        &'a self,
        _transaction_id: i64,
        _xid: &'a str,
    ) -> StoreFuture<'a, Option<StoredSession>> {
        ready(Ok(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_accepts_writes_and_recovers_nothing() {
        let s = MemoryStore::new();
        s.update_global_status(1, "x:1:1", GlobalStatus::Begin)
            .await
            .unwrap();
        assert!(s.recover().await.unwrap().is_empty());
        assert!(s.find(1, "x:1:1").await.unwrap().is_none());
        assert!(s.lock_manager().is_none());
    }
}
