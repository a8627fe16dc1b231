//! [`DtmTable`]: DTM transactions held in this process, the working copy of the stores that
//! are private to one TC (memory, and the file store, which logs every change it applies
//! here). Each operation checks and applies under the lock of one gid's map shard only, and
//! runs the caller's `log` hook inside that lock, so a log written by the hook has the same
//! order as the changes it describes.

use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::dtm::{BranchesAdded, Created, ListPage, ListQuery};
use crate::dtm::model::{Branch, BranchChange, Trans, TransRecord, TransStatus};

/// The transactions of one process.
#[derive(Debug, Default)]
pub struct DtmTable {
    rows: DashMap<String, TransRecord>,
    /// Unfinished gids and their `next_cron_time`: what [`due`](Self::due) scans, so the scan
    /// costs the number of live transactions, not of those kept for `query`.
    live: DashMap<String, i64>,
    last_id: AtomicI64,
}

impl DtmTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of transactions held (live and finished).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn track(&self, trans: &Trans) {
        if trans.status.is_finished() {
            self.live.remove(&trans.gid);
        } else {
            self.live.insert(trans.gid.clone(), trans.next_cron_time);
        }
    }

    /// Puts a record back as it was stored (recovery, snapshots): no checks, keeps its id.
    pub fn restore(&self, record: TransRecord) {
        self.last_id.fetch_max(record.trans.id, Ordering::Relaxed);
        self.track(&record.trans);
        self.rows.insert(record.trans.gid.clone(), record);
    }

    /// The highest id assigned or restored so far (0: none).
    pub fn last_id(&self) -> i64 {
        self.last_id.load(Ordering::Relaxed)
    }

    /// Raises the id high-water mark to `id` (recovery of a purged transaction's id).
    pub fn observe_id(&self, id: i64) {
        self.last_id.fetch_max(id, Ordering::Relaxed);
    }

    /// Forgets one gid (recovery of a removal).
    pub fn remove(&self, gid: &str) {
        self.rows.remove(gid);
        self.live.remove(gid);
    }

    /// Every record, in no particular order (snapshots).
    pub fn for_each(&self, mut f: impl FnMut(&TransRecord)) {
        for r in self.rows.iter() {
            f(r.value());
        }
    }

    /// See [`DtmStore::create`](super::dtm::DtmStore::create). `log` runs, with the record
    /// as stored (its id assigned), only when it is new.
    pub fn create<R>(
        &self,
        record: &TransRecord,
        log: impl FnOnce(&TransRecord) -> R,
    ) -> (Created, Option<R>) {
        match self.rows.entry(record.trans.gid.clone()) {
            Entry::Occupied(e) => (Created::Exists(Box::new(e.get().clone())), None),
            Entry::Vacant(e) => {
                let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
                let mut stored = record.clone();
                stored.trans.id = id;
                let logged = log(&stored);
                self.track(&stored.trans);
                e.insert(stored);
                (Created::New { id }, Some(logged))
            }
        }
    }

    /// A copy of the stored record.
    pub fn get(&self, gid: &str) -> Option<TransRecord> {
        self.rows.get(gid).map(|r| r.value().clone())
    }

    /// See [`DtmStore::save`](super::dtm::DtmStore::save); `log` runs only when it applies.
    pub fn save<R>(
        &self,
        trans: &Trans,
        expect: TransStatus,
        changes: &[BranchChange],
        log: impl FnOnce() -> R,
    ) -> Option<R> {
        let mut row = self.rows.get_mut(&trans.gid)?;
        if row.trans.status != expect {
            return None;
        }
        let logged = log();
        let stored = &mut row.trans;
        let (id, create_time, trans_type) = (stored.id, stored.create_time, stored.trans_type);
        *stored = trans.clone();
        stored.id = id;
        stored.create_time = create_time;
        stored.trans_type = trans_type;
        for c in changes {
            c.apply(&mut row);
        }
        self.track(&row.trans);
        Some(logged)
    }

    /// See [`DtmStore::add_branches`](super::dtm::DtmStore::add_branches); `log` runs only
    /// when the ops are to be added, with the row as it stands, and an error from it adds
    /// nothing (a file store refusing a transaction it could no longer snapshot).
    pub fn add_branches<R, E>(
        &self,
        gid: &str,
        branches: &[Branch],
        log: impl FnOnce(&TransRecord) -> Result<R, E>,
    ) -> Result<(BranchesAdded, Option<R>), E> {
        let Some(mut row) = self.rows.get_mut(gid) else {
            return Ok((BranchesAdded::NotPrepared(None), None));
        };
        if row.trans.status != TransStatus::Prepared {
            return Ok((BranchesAdded::NotPrepared(Some(row.trans.status)), None));
        }
        let mut existing = 0;
        for b in branches {
            if let Some(i) = row.find(&b.branch_id, b.op) {
                let same = row
                    .branches
                    .get(i)
                    .is_some_and(|s| s.url == b.url && s.bin_data == b.bin_data);
                if !same {
                    return Ok((
                        BranchesAdded::Conflict {
                            branch_id: b.branch_id.clone(),
                        },
                        None,
                    ));
                }
                existing += 1;
            }
        }
        if existing > 0 {
            // All of them identical (a retried registration) or some present, some not:
            // the latter cannot come from one registration, so treat it as a conflict.
            return Ok(if existing == branches.len() {
                (BranchesAdded::Identical, None)
            } else {
                (
                    BranchesAdded::Conflict {
                        branch_id: branches
                            .first()
                            .map(|b| b.branch_id.clone())
                            .unwrap_or_default(),
                    },
                    None,
                )
            });
        }
        let logged = log(&row)?;
        row.branches.extend(branches.iter().cloned());
        Ok((BranchesAdded::Added, Some(logged)))
    }

    /// See [`DtmStore::due`](super::dtm::DtmStore::due).
    pub fn due(&self, now_ms: i64, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.live.iter() {
            if out.len() >= limit {
                break;
            }
            if *e.value() <= now_ms {
                out.push(e.key().clone());
            }
        }
        out
    }

    /// See [`DtmStore::scheduled_after`](super::dtm::DtmStore::scheduled_after).
    pub fn scheduled_after(&self, after_ms: i64, limit: usize) -> Vec<String> {
        let mut far: Vec<(i64, String)> = self
            .live
            .iter()
            .filter(|e| *e.value() > after_ms)
            .map(|e| (*e.value(), e.key().clone()))
            .collect();
        far.sort_unstable();
        far.into_iter().take(limit).map(|(_, gid)| gid).collect()
    }

    /// See [`DtmStore::list`](super::dtm::DtmStore::list).
    pub fn list(&self, q: &ListQuery) -> ListPage {
        let mut hits: Vec<Trans> = self
            .rows
            .iter()
            .filter(|r| {
                let t = &r.value().trans;
                q.status.is_none_or(|s| t.status == s)
                    && q.trans_type.is_none_or(|ty| t.trans_type == ty)
                    && q.create_time_start.is_none_or(|s| t.create_time >= s)
                    && q.create_time_end.is_none_or(|e| t.create_time <= e)
                    && q.before_id.is_none_or(|b| t.id < b)
            })
            .map(|r| r.value().trans.clone())
            .collect();
        hits.sort_unstable_by_key(|t| std::cmp::Reverse(t.id));
        let more = hits.len() > q.limit;
        hits.truncate(q.limit);
        ListPage {
            next_before_id: if more {
                hits.last().map(|t| t.id)
            } else {
                None
            },
            transactions: hits,
        }
    }

    /// Forgets `gid` if it is finished; `log` runs inside the removal, as for
    /// [`purge`](Self::purge). Returns whether it was removed.
    pub fn remove_finished(&self, gid: &str, mut log: impl FnMut(&TransRecord)) -> bool {
        self.rows
            .remove_if(gid, |_, r| {
                let finished = r.trans.status.is_finished();
                if finished {
                    log(r);
                }
                finished
            })
            .is_some()
    }

    /// See [`DtmStore::purge`](super::dtm::DtmStore::purge); returns the gids forgotten.
    /// `log` runs once per removed record, inside the removal (under the gid's shard lock),
    /// so a log entry for it is ordered before any later create of the same gid.
    pub fn purge(
        &self,
        finished_before_ms: i64,
        keep_max: usize,
        mut log: impl FnMut(&TransRecord),
    ) -> Vec<String> {
        let mut finished: Vec<(i64, String)> = self
            .rows
            .iter()
            .filter(|r| r.trans.status.is_finished())
            .map(|r| (r.trans.finish_time, r.key().clone()))
            .collect();
        finished.sort_unstable();
        let over = finished.len().saturating_sub(keep_max);
        let mut gone = Vec::new();
        for (i, (finish_time, gid)) in finished.into_iter().enumerate() {
            if i >= over && finish_time >= finished_before_ms {
                break;
            }
            let removed = self
                .rows
                .remove_if(&gid, |_, r| {
                    let finished = r.trans.status.is_finished();
                    if finished {
                        log(r);
                    }
                    finished
                })
                .is_some();
            if removed {
                gone.push(gid);
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtm::model::{BranchStatus, Op, TransOptions, TransType};

    /// A `log` hook that lets every addition through.
    fn ok(_: &TransRecord) -> Result<(), ()> {
        Ok(())
    }

    fn record(gid: &str, status: TransStatus) -> TransRecord {
        TransRecord {
            trans: Trans {
                id: 0,
                gid: gid.into(),
                trans_type: TransType::Tcc,
                status,
                protocol: String::new(),
                query_prepared: String::new(),
                custom_data: String::new(),
                options: TransOptions::default(),
                rollback_reason: String::new(),
                result: String::new(),
                create_time: 1,
                update_time: 1,
                finish_time: 0,
                rollback_time: 0,
                next_cron_interval: 10,
                next_cron_time: 100,
                retry_count: 0,
                owner: String::new(),
                ext_data: String::new(),
            },
            branches: vec![],
        }
    }

    fn op(id: &str, op: Op, url: &str) -> Branch {
        Branch::new(id.into(), op, url.into(), b"{}".to_vec(), 2)
    }

    #[test]
    fn create_assigns_ids_and_keeps_the_first_copy() {
        let t = DtmTable::new();
        let (c, logged) = t.create(&record("a", TransStatus::Prepared), |r| r.trans.id);
        assert_eq!((c, logged), (Created::New { id: 1 }, Some(1)));
        let (c, logged) = t.create(&record("a", TransStatus::Submitted), |_| ());
        assert!(matches!(c, Created::Exists(r) if r.trans.status == TransStatus::Prepared));
        assert_eq!(logged, None);
        assert_eq!(
            t.create(&record("b", TransStatus::Prepared), |_| ()).0,
            Created::New { id: 2 }
        );
    }

    #[test]
    fn save_is_conditional_on_the_stored_status() {
        let t = DtmTable::new();
        let mut r = record("a", TransStatus::Prepared);
        r.branches.push(op("01", Op::Confirm, "http://c"));
        t.create(&r, |_| ());
        let mut next = r.trans.clone();
        next.status = TransStatus::Submitted;
        let change = BranchChange {
            branch_id: "01".into(),
            op: Op::Confirm,
            status: BranchStatus::Succeed,
            time_ms: 7,
        };
        assert_eq!(
            t.save(
                &next,
                TransStatus::Aborting,
                std::slice::from_ref(&change),
                || ()
            ),
            None
        );
        assert_eq!(t.get("a").unwrap().trans.status, TransStatus::Prepared);
        assert_eq!(
            t.save(&next, TransStatus::Prepared, &[change], || 5),
            Some(5)
        );
        let stored = t.get("a").unwrap();
        assert_eq!(stored.trans.status, TransStatus::Submitted);
        assert_eq!(stored.trans.id, 1, "the id is the store's");
        assert_eq!(stored.branches[0].status, BranchStatus::Succeed);
    }

    #[test]
    fn registering_twice_is_identical_or_a_conflict_and_only_while_prepared() {
        let t = DtmTable::new();
        t.create(&record("a", TransStatus::Prepared), |_| ());
        let ops = [
            op("01", Op::Cancel, "http://x/cancel"),
            op("01", Op::Confirm, "http://x/confirm"),
        ];
        assert_eq!(
            t.add_branches("a", &ops, ok).unwrap().0,
            BranchesAdded::Added
        );
        assert_eq!(
            t.add_branches("a", &ops, ok).unwrap().0,
            BranchesAdded::Identical
        );
        let other = [
            op("01", Op::Cancel, "http://y/cancel"),
            op("01", Op::Confirm, "http://x/confirm"),
        ];
        assert_eq!(
            t.add_branches("a", &other, ok).unwrap().0,
            BranchesAdded::Conflict {
                branch_id: "01".into()
            }
        );
        assert_eq!(t.get("a").unwrap().branches.len(), 2);
        assert_eq!(
            t.add_branches("zz", &ops, ok).unwrap().0,
            BranchesAdded::NotPrepared(None)
        );
        t.create(&record("s", TransStatus::Submitted), |_| ());
        assert_eq!(
            t.add_branches("s", &ops, ok).unwrap().0,
            BranchesAdded::NotPrepared(Some(TransStatus::Submitted))
        );
    }

    #[test]
    fn due_lists_unfinished_work_whose_time_has_come() {
        let t = DtmTable::new();
        t.create(&record("a", TransStatus::Prepared), |_| ());
        let mut done = record("b", TransStatus::Succeed);
        done.trans.next_cron_time = 0;
        t.create(&done, |_| ());
        assert!(t.due(99, 10).is_empty());
        assert_eq!(t.due(100, 10), vec!["a".to_string()]);
        assert_eq!(t.scheduled_after(99, 10), vec!["a".to_string()]);
        assert!(t.scheduled_after(100, 10).is_empty());
    }

    #[test]
    fn list_pages_newest_first_and_purge_forgets_old_finished_ones() {
        let t = DtmTable::new();
        for (gid, status, finish) in [
            ("a", TransStatus::Succeed, 10),
            ("b", TransStatus::Failed, 20),
            ("c", TransStatus::Prepared, 0),
        ] {
            let mut r = record(gid, status);
            r.trans.finish_time = finish;
            t.create(&r, |_| ());
        }
        let page = t.list(&ListQuery {
            limit: 2,
            ..ListQuery::default()
        });
        let gids: Vec<_> = page.transactions.iter().map(|t| t.gid.as_str()).collect();
        assert_eq!(gids, ["c", "b"]);
        assert_eq!(page.next_before_id, Some(2));
        let rest = t.list(&ListQuery {
            limit: 2,
            before_id: Some(2),
            ..ListQuery::default()
        });
        assert_eq!(rest.transactions.len(), 1);
        assert_eq!(rest.next_before_id, None);

        let mut logged = vec![];
        assert_eq!(
            t.purge(15, 100, |r| logged.push(r.trans.gid.clone())),
            vec!["a".to_string()]
        );
        assert_eq!(logged, ["a"]);
        assert_eq!(t.purge(0, 0, |_| ()), vec!["b".to_string()]);
        assert!(t.get("c").is_some(), "unfinished ones are never purged");
    }
}
