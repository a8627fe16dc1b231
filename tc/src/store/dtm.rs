//! The [`DtmStore`] trait: how DTM-mode transactions (saga, msg, tcc, xa over HTTP) are
//! persisted, beside the Seata sessions of [`SessionStore`](super::SessionStore) and in the
//! same backends (memory, file WAL, MySQL).
//!
//! Contract shared by every implementation:
//! - Every write resolves only once it is durable (for the durable stores), and is atomic:
//!   a transaction is created with all its branch ops or not at all; a [`save`](DtmStore::save)
//!   writes the global row and its branch changes together or not at all.
//! - Writes that change a transaction are conditional on its stored status, so two writers
//!   (two requests, or two TCs sharing a database) cannot both move it: the loser is told and
//!   writes nothing.
//! - Reads return the stored state: [`get`](DtmStore::get) is what `query` shows and what a
//!   processing round starts from.
//! - A store shared by several TCs leases transactions to the TC that drives them
//!   ([`due`](DtmStore::due) and [`save`](DtmStore::save) take the lease for this TC), under the
//!   same node leases as Seata sessions; a store private to this process has no owners.
//!
//! The engine serialises its own writes per gid (one request or processing round at a time
//! in this process), so a private store needs no lock wider than one transaction.

use crate::dtm::model::{Branch, BranchChange, Trans, TransRecord, TransStatus, TransType};

use super::StoreFuture;

/// What [`DtmStore::create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Stored, with the `id` the store assigned.
    New {
        /// The transaction's sequence number.
        id: i64,
    },
    /// The gid was already stored; nothing written. The stored record.
    Exists(Box<TransRecord>),
}

/// What [`DtmStore::add_branches`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchesAdded {
    /// Every op stored.
    Added,
    /// Every op was already stored with the same url and body: nothing written (a client
    /// retrying its registration).
    Identical,
    /// An op with the same (branch id, op) is stored with another url or body: nothing
    /// written.
    Conflict {
        /// `branch_id` of the first differing op.
        branch_id: String,
    },
    /// The transaction is not `prepared` (`None`: no such gid): nothing written.
    NotPrepared(Option<TransStatus>),
}

/// Filter and page of `GET all` (§3.7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<TransStatus>,
    /// Only this type.
    pub trans_type: Option<TransType>,
    /// Created at or after, ms.
    pub create_time_start: Option<i64>,
    /// Created at or before, ms.
    pub create_time_end: Option<i64>,
    /// Most rows to return (the API caps it).
    pub limit: usize,
    /// Only transactions with an `id` below this (the previous page's last id); newest first.
    pub before_id: Option<i64>,
}

/// One page of `GET all`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Newest first.
    pub transactions: Vec<Trans>,
    /// `id` of the last row when more may follow.
    pub next_before_id: Option<i64>,
}

/// Durable storage of DTM transactions. Object safe; obtained from
/// [`SessionStore::dtm`](super::SessionStore::dtm).
pub trait DtmStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new transaction and its branch ops atomically; `record.trans.id` is ignored
    /// and assigned by the store. If the gid exists nothing is written and the stored record
    /// is returned.
    fn create<'a>(&'a self, record: &'a TransRecord) -> StoreFuture<'a, Created>;

    /// The stored transaction with its branch ops, in creation order.
    fn get<'a>(&'a self, gid: &'a str) -> StoreFuture<'a, Option<TransRecord>>;

    /// Writes the global row `trans` (every field but `id`, `gid`, `trans_type`,
    /// `create_time`) and the branch changes, atomically, if the stored status is still
    /// `expect`. `false`: the status differed or the gid is gone; nothing written. A shared
    /// store also makes this TC the transaction's owner.
    fn save<'a>(
        &'a self,
        trans: &'a Trans,
        expect: TransStatus,
        changes: &'a [BranchChange],
    ) -> StoreFuture<'a, bool>;

    /// Adds branch ops to a transaction, only while it is `prepared` (checked atomically with
    /// the insert), with the duplicate rules of [`BranchesAdded`].
    fn add_branches<'a>(
        &'a self,
        gid: &'a str,
        branches: &'a [Branch],
    ) -> StoreFuture<'a, BranchesAdded>;

    /// Gids of unfinished transactions whose `next_cron_time` is at or before `now_ms`, at
    /// most `limit`. A shared store returns only those no live TC but this one owns, and
    /// takes them for this TC before returning.
    fn due(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<String>>;

    /// Gids of unfinished transactions whose `next_cron_time` is after `after_ms`, at most
    /// `limit`, soonest first (`resetCronTime`: retries that backed off far).
    fn scheduled_after(&self, after_ms: i64, limit: usize) -> StoreFuture<'_, Vec<String>>;

    /// A page of transactions for `GET all`, newest (highest id) first.
    fn list<'a>(&'a self, query: &'a ListQuery) -> StoreFuture<'a, ListPage>;

    /// Forgets finished transactions whose `finish_time` is before `finished_before_ms`, and
    /// then the oldest finished ones beyond the newest `keep_max`. Returns how many.
    fn purge(&self, finished_before_ms: i64, keep_max: usize) -> StoreFuture<'_, usize>;

    /// Forgets one finished transaction (an operator's delete); `false` when it is not
    /// stored or not finished. The default (test doubles) refuses.
    fn remove_finished<'a>(&'a self, gid: &'a str) -> StoreFuture<'a, bool> {
        let _ = gid;
        super::ready(Err(super::StoreError::Backend(
            "this store cannot delete single DTM transactions".into(),
        )))
    }
}
