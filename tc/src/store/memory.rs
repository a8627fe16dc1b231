//! [`MemoryStore`]: keeps nothing of Seata sessions. Every session write succeeds at once
//! without allocating, and recovery finds nothing, so a restart forgets every transaction
//! (`store = "memory"`). DTM transactions live in a [`DtmTable`], which is both their working
//! copy and their only copy.

use seata_protocol::{BranchStatus, GlobalStatus};

use super::dtm::{BranchesAdded, Created, DtmStore, ListPage, ListQuery};
use super::{ready, BranchRow, DtmTable, GlobalRow, SessionStore, StoreFuture, StoredSession};
use crate::dtm::model::{Branch, BranchChange, Trans, TransRecord, TransStatus};

/// A store that records nothing durably; for tests, benchmarks and deployments that accept
/// losing in-flight transactions on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    dtm: DtmTable,
    /// Audit records, oldest first (operator actions are rare; nothing bounds them but the
    /// process lifetime, like everything else here).
    audits: std::sync::Mutex<Vec<super::AuditRecord>>,
}

impl MemoryStore {
    /// A new store.
    pub fn new() -> Self {
        MemoryStore::default()
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

    fn add_audit<'a>(&'a self, record: &'a super::AuditRecord) -> StoreFuture<'a, ()> {
        self.audits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record.clone());
        ready(Ok(()))
    }

    fn audits<'a>(
        &'a self,
        xid: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<super::AuditRecord>> {
        let all = self
            .audits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ready(Ok(super::audit::select(&all, xid, limit)))
    }

    fn dtm(&self) -> Option<&dyn DtmStore> {
        Some(self)
    }
}

impl DtmStore for MemoryStore {
    fn create<'a>(&'a self, record: &'a TransRecord) -> StoreFuture<'a, Created> {
        ready(Ok(self.dtm.create(record, |_| ()).0))
    }

    fn get<'a>(&'a self, gid: &'a str) -> StoreFuture<'a, Option<TransRecord>> {
        ready(Ok(self.dtm.get(gid)))
    }

    fn save<'a>(
        &'a self,
        trans: &'a Trans,
        expect: TransStatus,
        changes: &'a [BranchChange],
    ) -> StoreFuture<'a, bool> {
        ready(Ok(self.dtm.save(trans, expect, changes, || ()).is_some()))
    }

    fn add_branches<'a>(
        &'a self,
        gid: &'a str,
        branches: &'a [Branch],
    ) -> StoreFuture<'a, BranchesAdded> {
        ready(
            self.dtm
                .add_branches(gid, branches, |_| Ok(()))
                .map(|(added, _)| added),
        )
    }

    fn due(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<String>> {
        ready(Ok(self.dtm.due(now_ms, limit)))
    }

    fn scheduled_after(&self, after_ms: i64, limit: usize) -> StoreFuture<'_, Vec<String>> {
        ready(Ok(self.dtm.scheduled_after(after_ms, limit)))
    }

    fn list<'a>(&'a self, query: &'a ListQuery) -> StoreFuture<'a, ListPage> {
        ready(Ok(self.dtm.list(query)))
    }

    fn purge(&self, finished_before_ms: i64, keep_max: usize) -> StoreFuture<'_, usize> {
        ready(Ok(self
            .dtm
            .purge(finished_before_ms, keep_max, |_| ())
            .len()))
    }

    fn remove_finished<'a>(&'a self, gid: &'a str) -> StoreFuture<'a, bool> {
        ready(Ok(self.dtm.remove_finished(gid, |_| ())))
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
        assert!(s.dtm().is_some());
    }
}
