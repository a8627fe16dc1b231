//! DTM-mode transactions (saga, msg, tcc, xa over DTM's HTTP API) in the db store:
//! [`DtmStore`] for [`MysqlStore`] over DTM's `trans_global` and `trans_branch_op` tables
//! (spec §10; DDL in `scripts/sql/mysql.sql`, rows in `dtm_rows.rs`), shared by every TC on
//! the database. Seata sessions and their group-commit writers are not involved: each write
//! here is one DB transaction on a pooled connection.
//!
//! - [`create`](DtmStore::create): the global row, then its branch rows, one commit. A gid
//!   already stored fails the first `INSERT` on `uk_gid`: nothing is written and the stored
//!   record is returned. (Not `INSERT IGNORE`: `IGNORE` also turns a value too long for its
//!   column into a warning and stores it truncated.) The creating TC takes the lease: it is
//!   the one that processes the transaction first (spec §5.6).
//! - [`save`](DtmStore::save): a compare-and-set on the status (`UPDATE … WHERE gid = ? AND
//!   status = ?`; the pool reports matched rows, so a save that changes nothing else still
//!   counts) that also writes `owner` (taking the lease), and the branch changes after it in
//!   the same DB transaction; without changes, that one statement.
//! - [`add_branches`](DtmStore::add_branches): the global row `FOR UPDATE`, so registrations
//!   of one gid and its status changes are serialised, then the prepared check, the duplicate
//!   rules of the memory store ([`decide`]) and the insert.
//! - [`due`](DtmStore::due): the leases of Seata sessions (`lease.rs`) applied to `owner`: a
//!   transaction is this TC's to drive while `owner` names it, or when its owner holds no live
//!   node row (0 = nobody, so also free). Candidates are read without locks, then claimed by
//!   one conditional `UPDATE … WHERE gid IN (…)`; when it matched fewer rows than candidates,
//!   a read tells which are ours. Of two TCs claiming one gid, the second `UPDATE` waits for
//!   the first's row lock and then finds a live owner that is not itself: it does not match.
//!   `next_cron_time` is compared with the caller's `now`, node expiry with the clock.
//! - [`list`](DtmStore::list) pages by `id` (newest first); [`purge`](DtmStore::purge) deletes
//!   finished transactions in batches, each batch one DB transaction.
//!
//! Every write locks a global row through `uk_gid` (or, in purge, its primary key) before its
//! branch rows. A deadlock victim, or a statement that waited too long for a row lock, is
//! rolled back and tried again ([`CONTENTION_RETRIES`]).

use std::collections::HashSet;
use std::future::Future;

use mysql_async::prelude::Queryable;
use mysql_async::{Row, Transaction, TxOpts, Value};
use tracing::warn;

use super::dtm_rows::{
    branch_from_row, insert_params, push_branch_params, rollback_time_of, trans_from_row,
    trans_params, BRANCH_COLUMNS, BRANCH_PARAMS, BRANCH_VALUES, FINISHED, INSERT_BRANCHES,
    INSERT_TRANS, TRANS_COLUMNS, UNFINISHED, UPDATE_BRANCH, UPDATE_TRANS,
};
use super::lease::OWNER_GONE;
use super::locks::DUPLICATE_KEY;
use super::rows::{placeholders, repeat_row};
use super::{boxed, db, is_lock_contention, server_code, MysqlStore, StepError};
use crate::dtm::model::{Branch, BranchChange, Trans, TransRecord, TransStatus};
use crate::store::dtm::{BranchesAdded, Created, DtmStore, ListPage, ListQuery};
use crate::store::{StoreError, StoreFuture};

/// Times a write is tried again after InnoDB rolled it back as a deadlock victim or a lock
/// wait timed out. Contention here is brief (every DB transaction is a few statements), so a
/// second failure in a row points at something stuck; the error then goes to the caller.
const CONTENTION_RETRIES: usize = 2;
/// Branch rows per `INSERT` (10 parameters each, far below the 65,535 of one statement).
const BRANCH_ROWS_PER_INSERT: usize = 1000;
/// Transactions deleted per DB transaction of a purge, so a large purge never holds many
/// row locks or a long undo log at once.
const PURGE_BATCH: usize = 500;
/// Tries of a create whose gid exists but is gone again when read (purged in between).
const CREATE_TRIES: usize = 3;

impl MysqlStore {
    /// One attempt at inserting a new transaction: its id, or `None` if the gid is stored.
    async fn insert_record(&self, record: &TransRecord) -> Result<Option<i64>, StepError> {
        let params = insert_params(&record.trans, self.leases.owner())?;
        if record.branches.is_empty() {
            let mut conn = self.pool.get_conn().await?;
            return match conn.exec_drop(INSERT_TRANS, params).await {
                Ok(()) => inserted_id(conn.last_insert_id()).map(Some),
                Err(e) if server_code(&e) == Some(DUPLICATE_KEY) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        let mut tx = self.pool.start_transaction(TxOpts::default()).await?;
        let done = async {
            match tx.exec_drop(INSERT_TRANS, params).await {
                Ok(()) => {}
                Err(e) if server_code(&e) == Some(DUPLICATE_KEY) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            let id = inserted_id(tx.last_insert_id())?;
            insert_branches(&mut tx, &record.trans.gid, &record.branches).await?;
            Ok(Some(id))
        }
        .await;
        finish(tx, done, Option::is_some).await
    }

    async fn create_record(&self, record: &TransRecord) -> Result<Created, StoreError> {
        for _ in 0..CREATE_TRIES {
            if let Some(id) = retrying(|| self.insert_record(record)).await? {
                return Ok(Created::New { id });
            }
            if let Some(stored) = retrying(|| self.load_record(&record.trans.gid)).await? {
                return Ok(Created::Exists(Box::new(stored)));
            }
        }
        Err(StoreError::Backend(format!(
            "gid {} kept being created and purged while this TC created it; try again",
            record.trans.gid
        )))
    }

    /// The global row, then its branch ops in creation (id) order.
    async fn load_record(&self, gid: &str) -> Result<Option<TransRecord>, StepError> {
        let mut conn = self.pool.get_conn().await?;
        let sql = format!("SELECT {TRANS_COLUMNS} FROM trans_global WHERE gid = ?");
        let row: Option<Row> = conn.exec_first(sql, (gid,)).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let trans = trans_from_row(row)?;
        let sql = format!("SELECT {BRANCH_COLUMNS} FROM trans_branch_op WHERE gid = ? ORDER BY id");
        let rows: Vec<Row> = conn.exec(sql, (gid,)).await?;
        let branches = rows
            .into_iter()
            .map(|r| branch_from_row(gid, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(TransRecord { trans, branches }))
    }

    async fn save_record(
        &self,
        trans: &Trans,
        expect: TransStatus,
        changes: &[BranchChange],
    ) -> Result<bool, StepError> {
        let mut params = trans_params(trans, self.leases.owner())?;
        params.extend([
            Value::from(trans.gid.as_str()),
            Value::from(expect.as_str()),
        ]);
        if changes.is_empty() {
            let mut conn = self.pool.get_conn().await?;
            conn.exec_drop(UPDATE_TRANS, params).await?;
            return Ok(conn.affected_rows() == 1);
        }
        let mut tx = self.pool.start_transaction(TxOpts::default()).await?;
        let done = async {
            tx.exec_drop(UPDATE_TRANS, params).await?;
            if tx.affected_rows() != 1 {
                return Ok(false);
            }
            // An op that is not stored is skipped, as the memory store does.
            for c in changes {
                tx.exec_drop(
                    UPDATE_BRANCH,
                    (
                        c.status.as_str(),
                        c.time_ms,
                        c.time_ms,
                        rollback_time_of(c.op, c.time_ms),
                        trans.gid.as_str(),
                        c.branch_id.as_str(),
                        c.op.as_str(),
                    ),
                )
                .await?;
            }
            Ok(true)
        }
        .await;
        finish(tx, done, |saved| *saved).await
    }

    async fn add_branch_rows(
        &self,
        gid: &str,
        branches: &[Branch],
    ) -> Result<BranchesAdded, StepError> {
        let mut tx = self.pool.start_transaction(TxOpts::default()).await?;
        let done = async {
            // Raw bytes: a typed read would panic on a value that is not UTF-8.
            let status: Option<Vec<u8>> = tx
                .exec_first(
                    "SELECT status FROM trans_global WHERE gid = ? FOR UPDATE",
                    (gid,),
                )
                .await?;
            let Some(status) = status else {
                return Ok(BranchesAdded::NotPrepared(None));
            };
            let status: TransStatus = String::from_utf8_lossy(&status)
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("trans_global row {gid}: {e}")))?;
            if status != TransStatus::Prepared {
                return Ok(BranchesAdded::NotPrepared(Some(status)));
            }
            if branches.is_empty() {
                return Ok(BranchesAdded::Added);
            }
            // Every insert of this gid's ops holds the global row's lock we now hold, so a
            // plain read sees all of them.
            let ids: Vec<&str> = {
                let mut seen = HashSet::new();
                branches
                    .iter()
                    .map(|b| b.branch_id.as_str())
                    .filter(|id| seen.insert(*id))
                    .collect()
            };
            let sql = format!(
                "SELECT {BRANCH_COLUMNS} FROM trans_branch_op \
                 WHERE gid = ? AND branch_id IN ({})",
                placeholders(ids.len())
            );
            let mut params = vec![Value::from(gid)];
            params.extend(ids.iter().map(|id| Value::from(*id)));
            let rows: Vec<Row> = tx.exec(sql, params).await?;
            let stored = rows
                .into_iter()
                .map(|r| branch_from_row(gid, r))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(refused) = decide(&stored, branches) {
                return Ok(refused);
            }
            insert_branches(&mut tx, gid, branches).await?;
            Ok(BranchesAdded::Added)
        }
        .await;
        finish(tx, done, |added| *added == BranchesAdded::Added).await
    }

    async fn claim_due(&self, now_ms: i64, limit: usize) -> Result<Vec<String>, StepError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let owner = self.leases.owner();
        // Node rows expire by the clock; `now_ms` only decides which cron times have come.
        let live_at = crate::id::now_ms();
        let mut conn = self.pool.get_conn().await?;
        // `l` is the alias OWNER_GONE expects for the row holding `owner`. Gids are read as
        // bytes: a typed read would panic on one that is not UTF-8 (edited by hand).
        let candidates: Vec<Vec<u8>> = conn
            .exec(
                format!(
                    "SELECT l.gid FROM trans_global l FORCE INDEX (idx_status_next_cron_time) \
                     WHERE l.status IN {UNFINISHED} AND l.next_cron_time <= ? \
                       AND (l.owner = ? OR {OWNER_GONE}) \
                     ORDER BY l.next_cron_time LIMIT ?"
                ),
                (now_ms, owner, live_at, limit),
            )
            .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let gids = || candidates.iter().map(|g| Value::from(g.as_slice()));
        let mut params = vec![Value::from(owner)];
        params.extend(gids());
        params.extend([
            Value::from(now_ms),
            Value::from(owner),
            Value::from(live_at),
        ]);
        conn.exec_drop(
            format!(
                "UPDATE trans_global l FORCE INDEX (uk_gid) SET l.owner = ? \
                 WHERE l.gid IN ({}) AND l.status IN {UNFINISHED} AND l.next_cron_time <= ? \
                   AND (l.owner = ? OR {OWNER_GONE})",
                placeholders(candidates.len())
            ),
            params,
        )
        .await?;
        if usize::try_from(conn.affected_rows()).ok() == Some(candidates.len()) {
            return Ok(gid_strings(candidates));
        }
        // Another TC took some first (or they finished or were rescheduled meanwhile).
        let mut params: Vec<Value> = gids().collect();
        params.extend([Value::from(owner), Value::from(now_ms)]);
        let ours: Vec<Vec<u8>> = conn
            .exec(
                format!(
                    "SELECT gid FROM trans_global FORCE INDEX (uk_gid) \
                     WHERE gid IN ({}) AND owner = ? AND status IN {UNFINISHED} \
                       AND next_cron_time <= ?",
                    placeholders(candidates.len())
                ),
                params,
            )
            .await?;
        let ours: HashSet<Vec<u8>> = ours.into_iter().collect();
        Ok(gid_strings(
            candidates
                .into_iter()
                .filter(|g| ours.contains(g))
                .collect(),
        ))
    }

    async fn list_page(&self, q: &ListQuery) -> Result<ListPage, StepError> {
        let mut sql = format!("SELECT {TRANS_COLUMNS} FROM trans_global");
        let mut params: Vec<Value> = Vec::new();
        let mut and = |cond: &str, value: Value| {
            sql.push_str(if params.is_empty() {
                " WHERE "
            } else {
                " AND "
            });
            sql.push_str(cond);
            params.push(value);
        };
        if let Some(s) = q.status {
            and("status = ?", Value::from(s.as_str()));
        }
        if let Some(t) = q.trans_type {
            and("trans_type = ?", Value::from(t.as_str()));
        }
        if let Some(start) = q.create_time_start {
            and("create_time >= ?", Value::from(start));
        }
        if let Some(end) = q.create_time_end {
            and("create_time <= ?", Value::from(end));
        }
        if let Some(before) = q.before_id {
            and("id < ?", Value::from(before));
        }
        // One row more than asked tells whether another page follows.
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        params.push(Value::from(q.limit.saturating_add(1)));
        let mut conn = self.pool.get_conn().await?;
        let rows: Vec<Row> = conn.exec(sql, params).await?;
        let mut transactions = rows
            .into_iter()
            .map(trans_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let more = transactions.len() > q.limit;
        transactions.truncate(q.limit);
        Ok(ListPage {
            next_before_id: if more {
                transactions.last().map(|t| t.id)
            } else {
                None
            },
            transactions,
        })
    }

    /// Unfinished gids whose next look is after `after_ms`, soonest first.
    async fn far_scheduled(&self, after_ms: i64, limit: usize) -> Result<Vec<String>, StepError> {
        let sql = format!(
            "SELECT gid FROM trans_global WHERE status IN {UNFINISHED} AND next_cron_time > ? \
             ORDER BY next_cron_time LIMIT ?"
        );
        let mut conn = self.pool.get_conn().await?;
        let gids: Vec<Vec<u8>> = conn.exec(sql, (after_ms, limit)).await?;
        Ok(gids
            .into_iter()
            .map(|g| String::from_utf8_lossy(&g).into_owned())
            .collect())
    }

    /// Deletes finished transactions finished before `finished_before_ms`, then the oldest
    /// finished ones beyond the newest `keep_max` (by finish time, then id).
    async fn purge_finished(
        &self,
        finished_before_ms: i64,
        keep_max: usize,
    ) -> Result<usize, StoreError> {
        let mut purged = self
            .purge_matching("finish_time < ?", vec![Value::from(finished_before_ms)])
            .await?;
        // The newest finished transaction not kept: it and every older one go. Found from
        // the newest ones rather than from a count, so purges running on several TCs at once
        // cannot together delete more than the oldest.
        let first_gone: Option<(i64, i64)> = {
            let mut conn = self.pool.get_conn().await.map_err(db)?;
            conn.exec_first(
                format!(
                    "SELECT finish_time, id FROM trans_global \
                     FORCE INDEX (idx_status_finish_time) WHERE status IN {FINISHED} \
                     ORDER BY finish_time DESC, id DESC LIMIT 1 OFFSET ?"
                ),
                (keep_max,),
            )
            .await
            .map_err(db)?
        };
        if let Some((finish_time, id)) = first_gone {
            purged += self
                .purge_matching(
                    "(finish_time < ? OR (finish_time = ? AND id <= ?))",
                    vec![
                        Value::from(finish_time),
                        Value::from(finish_time),
                        Value::from(id),
                    ],
                )
                .await?;
        }
        Ok(purged)
    }

    /// Deletes finished transactions that meet `condition` (SQL over `trans_global` with
    /// `params`), a batch at a time: how many.
    async fn purge_matching(
        &self,
        condition: &str,
        mut params: Vec<Value>,
    ) -> Result<usize, StoreError> {
        let sql = format!(
            "SELECT id FROM trans_global FORCE INDEX (idx_status_finish_time) \
             WHERE status IN {FINISHED} AND {condition} LIMIT ?"
        );
        params.push(Value::from(PURGE_BATCH));
        let mut purged = 0;
        loop {
            let ids: Vec<i64> = {
                let mut conn = self.pool.get_conn().await.map_err(db)?;
                conn.exec(sql.as_str(), params.clone()).await.map_err(db)?
            };
            let deleted = retrying(|| self.delete_finished(&ids)).await?;
            purged += deleted;
            if ids.len() < PURGE_BATCH || deleted == 0 {
                return Ok(purged);
            }
        }
    }

    /// Deletes the transactions `ids` that are finished, with their branch ops: how many.
    async fn delete_finished(&self, ids: &[i64]) -> Result<usize, StepError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let id_params = || ids.iter().map(|id| Value::from(*id)).collect::<Vec<_>>();
        let mut tx = self.pool.start_transaction(TxOpts::default()).await?;
        let done = async {
            // Lock the global rows first, as every other write does; the gids found are
            // exactly those deleted below.
            let gids: Vec<Vec<u8>> = tx
                .exec(
                    format!(
                        "SELECT gid FROM trans_global FORCE INDEX (PRIMARY) \
                         WHERE id IN ({}) AND status IN {FINISHED} FOR UPDATE",
                        placeholders(ids.len())
                    ),
                    id_params(),
                )
                .await?;
            if gids.is_empty() {
                return Ok(0);
            }
            tx.exec_drop(
                format!(
                    "DELETE b FROM trans_branch_op b FORCE INDEX (uk_gid_branch_op) \
                     WHERE b.gid IN ({})",
                    placeholders(gids.len())
                ),
                gids.into_iter().map(Value::from).collect::<Vec<_>>(),
            )
            .await?;
            tx.exec_drop(
                format!(
                    "DELETE FROM trans_global WHERE id IN ({}) AND status IN {FINISHED}",
                    placeholders(ids.len())
                ),
                id_params(),
            )
            .await?;
            Ok(usize::try_from(tx.affected_rows()).unwrap_or(usize::MAX))
        }
        .await;
        finish(tx, done, |n| *n > 0).await
    }
}

/// The memory store's duplicate rules (`DtmTable::add_branches`) over the ops already stored
/// under the new ops' branch ids: `None` when every op is new. Ops the same as stored (url and
/// body): a retried registration, [`BranchesAdded::Identical`]; a differing one, or only some
/// stored, [`BranchesAdded::Conflict`]. One (branch id, op) twice among the new ops is a
/// conflict too: the table's unique key could not hold both.
fn decide(stored: &[Branch], new: &[Branch]) -> Option<BranchesAdded> {
    let conflict = |b: &Branch| {
        Some(BranchesAdded::Conflict {
            branch_id: b.branch_id.clone(),
        })
    };
    let mut existing = 0;
    let mut seen = HashSet::new();
    for b in new {
        if !seen.insert((b.branch_id.as_str(), b.op)) {
            return conflict(b);
        }
        if let Some(s) = stored
            .iter()
            .find(|s| s.op == b.op && s.branch_id == b.branch_id)
        {
            if s.url != b.url || s.bin_data != b.bin_data {
                return conflict(b);
            }
            existing += 1;
        }
    }
    match (existing, new.first()) {
        (0, _) => None,
        (n, _) if n == new.len() => Some(BranchesAdded::Identical),
        (_, first) => first.and_then(conflict),
    }
}

/// Inserts `branches` of `gid` in order (so their ids follow it), in as few statements as
/// the parameter limit allows.
async fn insert_branches(
    tx: &mut Transaction<'static>,
    gid: &str,
    branches: &[Branch],
) -> Result<(), StepError> {
    for chunk in branches.chunks(BRANCH_ROWS_PER_INSERT) {
        let mut params = Vec::with_capacity(chunk.len() * BRANCH_PARAMS);
        for b in chunk {
            push_branch_params(&mut params, gid, b);
        }
        let sql = format!(
            "{INSERT_BRANCHES}{}",
            repeat_row(chunk.len(), BRANCH_VALUES)
        );
        tx.exec_drop(sql, params).await?;
    }
    Ok(())
}

/// Commits `tx` when `done` succeeded and `commit` says its answer wrote something; rolls it
/// back otherwise (so its row locks go at once, not when the pool recycles the connection).
async fn finish<T>(
    tx: Transaction<'static>,
    done: Result<T, StepError>,
    commit: impl FnOnce(&T) -> bool,
) -> Result<T, StepError> {
    match done {
        Ok(answer) if commit(&answer) => {
            tx.commit().await?;
            Ok(answer)
        }
        Ok(answer) => {
            tx.rollback().await?;
            Ok(answer)
        }
        Err(e) => {
            // The statement's error is the one to report; a connection that cannot roll back
            // is discarded by the pool.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Runs `attempt` again after a deadlock or lock wait timeout, at most
/// [`CONTENTION_RETRIES`] times; each attempt is a whole DB transaction.
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    let mut left = CONTENTION_RETRIES;
    loop {
        match attempt().await {
            Err(StepError::Db(e)) if left > 0 && is_lock_contention(&e) => left -= 1,
            done => return done.map_err(StepError::into_store),
        }
    }
}

/// Claimed gids as text. One that is not UTF-8 was written by hand and no read of it can
/// succeed, so it is left out (with a warning) rather than stopping every other one.
fn gid_strings(gids: Vec<Vec<u8>>) -> Vec<String> {
    gids.into_iter()
        .filter_map(|g| match String::from_utf8(g) {
            Ok(gid) => Some(gid),
            Err(e) => {
                warn!(gid = ?e.as_bytes(), "trans_global gid is not UTF-8; skipped");
                None
            }
        })
        .collect()
}

fn inserted_id(id: Option<u64>) -> Result<i64, StepError> {
    id.and_then(|id| i64::try_from(id).ok()).ok_or_else(|| {
        StepError::Corrupt(StoreError::Backend(
            "trans_global insert reported no id; check that its id column is AUTO_INCREMENT".into(),
        ))
    })
}

impl DtmStore for MysqlStore {
    fn create<'a>(&'a self, record: &'a TransRecord) -> StoreFuture<'a, Created> {
        boxed(self.create_record(record))
    }

    fn get<'a>(&'a self, gid: &'a str) -> StoreFuture<'a, Option<TransRecord>> {
        boxed(retrying(move || self.load_record(gid)))
    }

    fn save<'a>(
        &'a self,
        trans: &'a Trans,
        expect: TransStatus,
        changes: &'a [BranchChange],
    ) -> StoreFuture<'a, bool> {
        boxed(retrying(move || self.save_record(trans, expect, changes)))
    }

    fn add_branches<'a>(
        &'a self,
        gid: &'a str,
        branches: &'a [Branch],
    ) -> StoreFuture<'a, BranchesAdded> {
        boxed(retrying(move || self.add_branch_rows(gid, branches)))
    }

    fn due(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<String>> {
        boxed(retrying(move || self.claim_due(now_ms, limit)))
    }

    fn scheduled_after(&self, after_ms: i64, limit: usize) -> StoreFuture<'_, Vec<String>> {
        boxed(retrying(move || self.far_scheduled(after_ms, limit)))
    }

    fn list<'a>(&'a self, query: &'a ListQuery) -> StoreFuture<'a, ListPage> {
        boxed(retrying(move || self.list_page(query)))
    }

    fn purge(&self, finished_before_ms: i64, keep_max: usize) -> StoreFuture<'_, usize> {
        boxed(self.purge_finished(finished_before_ms, keep_max))
    }

    fn remove_finished<'a>(&'a self, gid: &'a str) -> StoreFuture<'a, bool> {
        boxed(async move {
            let id: Option<i64> = {
                let mut conn = self.pool.get_conn().await.map_err(db)?;
                conn.exec_first(
                    "SELECT id FROM trans_global WHERE gid = ?",
                    (gid.as_bytes(),),
                )
                .await
                .map_err(db)?
            };
            let Some(id) = id else {
                return Ok(false);
            };
            let ids = [id];
            Ok(retrying(|| self.delete_finished(&ids)).await? > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtm::model::Op;

    fn op(id: &str, op: Op, url: &str) -> Branch {
        Branch::new(id.into(), op, url.into(), b"{}".to_vec(), 2)
    }

    #[test]
    fn decide_follows_the_memory_store() {
        let stored = [
            op("01", Op::Cancel, "http://x/cancel"),
            op("01", Op::Confirm, "http://x/confirm"),
        ];
        assert_eq!(decide(&[], &stored), None);
        assert_eq!(decide(&stored, &stored), Some(BranchesAdded::Identical));
        let other_url = [
            op("01", Op::Cancel, "http://y/cancel"),
            op("01", Op::Confirm, "http://x/confirm"),
        ];
        assert_eq!(
            decide(&stored, &other_url),
            Some(BranchesAdded::Conflict {
                branch_id: "01".into()
            })
        );
        let mut other_body = stored.clone();
        other_body[1].bin_data = b"{\"a\":1}".to_vec();
        assert!(matches!(
            decide(&stored, &other_body),
            Some(BranchesAdded::Conflict { .. })
        ));
        // Some stored, some new: not one registration.
        let partly = [
            op("01", Op::Cancel, "http://x/cancel"),
            op("01", Op::Commit, "http://x/commit"),
        ];
        assert!(matches!(
            decide(&stored, &partly),
            Some(BranchesAdded::Conflict { .. })
        ));
        let twice = [
            op("02", Op::Cancel, "http://x/cancel"),
            op("02", Op::Cancel, "http://x/cancel"),
        ];
        assert_eq!(
            decide(&[], &twice),
            Some(BranchesAdded::Conflict {
                branch_id: "02".into()
            })
        );
    }
}
