//! [`FileStore`]: the embedded durable store (`store = "file"`, the default). An append-only
//! log of session, branch and status changes, and of DTM transactions, in `data-dir`, made
//! durable by group commit (`wal.rs`), replayed at open (`recover.rs`) and compacted into
//! snapshots in the background (`compact.rs`). The store is private to one TC: it finds
//! nothing for [`SessionStore::find`] and leaves row locks to the coordinator, which rebuilds
//! them from the recovered lock keys.
//!
//! # Files
//!
//! ```text
//! data-dir/
//!   LOCK                          held (flock) by the TC that owns the directory
//!   00000000000000000007.snapshot live sessions and held DTM transactions as of the start
//!                                 of segment 7
//!   00000000000000000007.wal      changes since, in the order they were acknowledged
//!   00000000000000000008.wal      the segment being appended to
//!   NNN.snapshot.tmp              a snapshot being written (deleted at open)
//! ```
//!
//! # Record grammar
//!
//! ```text
//! segment    := "SEATAWAL" record*
//! snapshot   := "SEATASNP" (global-add branch-add*)* dtm-create* audit* dtm-last-id
//!               snapshot-end-dtm
//!             | "SEATASNP" (global-add branch-add*)* dtm-create* audit* snapshot-end-dtm
//!                                                                   (older; still read)
//!             | "SEATASNP" (global-add branch-add*)* snapshot-end    (older; still read)
//! record     := length length-check version crc body
//! length     := u32 LE     byte count of body, at most 16 MiB
//! length-check := u32 LE   !length (bitwise not): a damaged length is corruption, not a torn tail
//! version    := u8         1
//! crc        := u32 LE     CRC-32 (IEEE) of length ‖ version ‖ body
//! body       := postcard encoding of one of
//!   0 global-add     { transaction_id: i64, xid, status: u8, application_id,
//!                      transaction_service_group, transaction_name, timeout_ms: i32,
//!                      begin_time_ms: i64 }
//!   1 global-status  { transaction_id: i64, status: u8 }
//!   2 global-remove  { transaction_id: i64 }            also forgets its branches
//!   3 branch-add     { transaction_id: i64, branch_id: i64, branch_type: u8, status: u8,
//!                      resource_id, lock_key, client_id, application_data }
//!   4 branch-status  { transaction_id: i64, branch_id: i64, status: u8 }
//!   5 branch-remove  { transaction_id: i64, branch_id: i64 }
//!   6 snapshot-end   { sessions: u64, branches: u64 }   last record of an older snapshot
//!   7 dtm-create     { trans: dtm-trans, branches: [dtm-branch] }
//!                      a new DTM transaction with its id assigned; in a snapshot, one held
//!                      transaction as it stands
//!   8 dtm-save       { trans: dtm-trans, expect: word, changes: [dtm-change] }
//!                      a save that applied: the global row (`id`, `trans_type`, `create_time`
//!                      stay as stored) and its branch op changes
//!   9 dtm-branches   { gid, branches: [dtm-branch] }    ops registered while prepared
//!  10 dtm-remove     { gid, id: i64 }                   a finished transaction purged
//!                      (`id` 0: not known; see recover.rs)
//!  11 snapshot-end-dtm { sessions: u64, branches: u64, dtm_transactions: u64,
//!                      dtm_branches: u64 }              last record of a snapshot only
//!  12 audit          { at_ms: i64, actor, action, xid, branch_id: option i64, reason,
//!                      status }                         an audited operator or RM event
//!  13 dtm-last-id    { id: i64 }                        in a snapshot: the highest DTM id
//!                      ever assigned, purged transactions' included
//!
//! dtm-trans  := { id: i64, gid, trans_type: word, status: word, protocol, query_prepared,
//!                 custom_data, options: dtm-options, rollback_reason, result,
//!                 create_time: i64, update_time: i64, finish_time: i64, rollback_time: i64,
//!                 next_cron_interval: i64, next_cron_time: i64, retry_count: i64, owner,
//!                 ext_data }
//! dtm-options := { wait_result: bool, timeout_to_fail: i64, request_timeout: i64,
//!                 retry_interval: i64, retry_limit: i64, branch_headers: [(name, value)],
//!                 concurrent: bool }
//! dtm-branch := { branch_id, op: word, url, bin_data: bytes, status: word, create_time: i64,
//!                 update_time: i64, finish_time: i64, rollback_time: i64 }
//! dtm-change := { branch_id, op: word, status: word, time_ms: i64 }
//! ```
//!
//! postcard writes the variant index as a varint, `u8` as one byte, `bool` as one byte, other
//! integers as varints (zigzag for signed ones), strings as a varint length plus UTF-8,
//! `bytes` as a varint length plus the bytes, `[x]` as a varint count plus each `x`, and
//! struct fields in order without names. Statuses and branch types are Seata's wire codes; a
//! DTM `word` is DTM's own lowercase word for a status, type or op (`submitted`, `saga`,
//! `compensate`), so neither depends on the order of Rust enum variants. A record is framed
//! whole into the group-commit buffer, so a crash can only cut the log between records or
//! inside the last one.
//!
//! # DTM transactions
//!
//! The store keeps them in a [`DtmTable`], its working copy, which open rebuilds from the log.
//! Every write applies to the table and queues its record inside the table's per-gid lock
//! (the table's `log` hook), so the log has each transaction's changes in the order they were
//! made; it then resolves once the record is durable, like every other write. A write the
//! table refuses (gid exists, not prepared, conflict, identical, status moved on) logs
//! nothing. Reads come from the table. Once the log has failed (or the store is closed) the
//! table may hold changes the log lacks, so DTM reads are refused too, not only writes, and a
//! restart recovers what is durable.
//!
//! A snapshot writes each DTM transaction as one record, so a transaction must stay within
//! the record size limit whole: registering ops that would take it past, though each call's
//! own record is small, is refused (a transaction no snapshot can hold would stop every
//! compaction and let the log grow without bound).
//!
//! # Durability
//!
//! A write resolves once its record is written and, with `sync = fsync`, `fdatasync`ed; the
//! coordinator answers a client only after that, so every acknowledged decision survives a
//! crash of the process or the machine. With `sync = none` records reach the OS page cache
//! before the write resolves: they survive a crash of the TC process but not of the machine.
//! Concurrent writes share one `write` and one `fdatasync` (group commit, `wal.rs`). If a
//! write or sync fails, the store refuses every later write (the end of the file is then
//! unknown, and after a failed fsync the kernel may have dropped the dirty pages); a restart
//! recovers from what is on disk.
//!
//! # Recovery
//!
//! Open replays the newest snapshot and then every later segment in order. The end of the
//! newest segment may hold a record cut short by a crash (an incomplete header or body, a bad
//! crc on the very last record, or zeros): it was never acknowledged, so it is cut off. Any
//! other damage stops start-up with [`StoreError::Corrupt`] naming the file and byte offset.
//! New DTM ids continue after the highest ever assigned: the creates replayed, and a
//! snapshot's dtm-last-id for the transactions purged before it.
//! Open always starts a new segment and, when older segments exist, compacts them in the
//! background, so start-up replays at most one snapshot plus the segments since the last
//! compaction.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use seata_protocol::{BranchStatus, GlobalStatus};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::dtm::{BranchesAdded, Created, DtmStore, ListPage, ListQuery};
use super::{
    boxed, ready, BranchRow, DtmTable, GlobalRow, SessionStore, StoreError, StoreFuture,
    StoredSession,
};
use crate::config::{SyncMode, TcConfig};
use crate::dtm::model::{Branch, BranchChange, Trans, TransRecord, TransStatus};

mod compact;
mod dtm_record;
mod record;
mod recover;
mod wal;

#[cfg(test)]
mod dtm_tests;
#[cfg(test)]
mod tests;

use dtm_record::{DtmBranch, DtmChange, DtmTrans};
use record::Record;

/// Segment size after which the writer rolls to a new one and compaction runs.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Name of the file whose lock marks the data directory as owned by a running TC.
const LOCK_FILE: &str = "LOCK";

/// How to open a [`FileStore`].
#[derive(Debug, Clone)]
pub struct FileStoreOptions {
    /// Data directory; created if missing.
    pub dir: PathBuf,
    /// Whether a write waits for `fdatasync`.
    pub sync: SyncMode,
    /// Roll to a new segment (and compact) past this many bytes. Default 64 MiB.
    pub segment_bytes: u64,
}

impl FileStoreOptions {
    /// Options for `dir` with the default segment size.
    pub fn new(dir: impl Into<PathBuf>, sync: SyncMode) -> Self {
        FileStoreOptions {
            dir: dir.into(),
            sync,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }

    /// `data-dir` and `sync` of the TC configuration.
    pub fn from_config(config: &TcConfig) -> Self {
        FileStoreOptions::new(config.data_dir.clone(), config.sync)
    }
}

/// Counters since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStoreStats {
    /// Records written.
    pub records: u64,
    /// `write` calls (one per group-commit batch).
    pub batches: u64,
    /// `fdatasync` calls for batches (0 with `sync = none`).
    pub syncs: u64,
    /// Bytes written to segments.
    pub bytes: u64,
    /// Segments finished and handed to compaction.
    pub segments_rolled: u64,
}

impl FileStoreStats {
    /// Average records per group-commit batch (and so per sync, with `sync = fsync`).
    pub fn records_per_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.records as f64 / self.batches as f64
        }
    }
}

/// The embedded durable store. See the module docs for the format and guarantees.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    shared: Arc<wal::Shared>,
    /// Writer, then compactor: joined in that order by `close`.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// What open replayed, handed out once by `recover`.
    recovered: Mutex<Option<Vec<StoredSession>>>,
    /// DTM transactions held (live, and finished until purged): the working copy of the log.
    dtm: DtmTable,
    /// Audit records, oldest first (replayed at open, appended once durable).
    audits: Arc<Mutex<Vec<super::AuditRecord>>>,
}

fn with_path(e: std::io::Error, what: &str, path: &Path) -> StoreError {
    StoreError::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

/// Takes the directory's `LOCK` so a second TC on the same directory fails at once instead of
/// interleaving its appends with ours. The OS releases it when the process dies, even by
/// `kill -9`.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| with_path(e, "cannot open", &path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StoreError::Backend(format!(
                "data directory {} is in use by another seata-tc ({} is locked); stop that \
                 process or pass a different --data-dir",
                dir.display(),
                path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(with_path(e, "cannot lock", &path)),
    }
    // For an operator wondering who holds it; the lock, not the content, is what counts.
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

impl FileStore {
    /// Opens (creating if needed) the store in `options.dir` on a blocking thread.
    pub async fn open(options: FileStoreOptions) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || FileStore::open_blocking(options))
            .await
            .map_err(|e| StoreError::Backend(format!("file store open task failed: {e}")))?
    }

    /// Opens the store on the calling thread: locks the directory, replays it, cuts a torn
    /// tail, starts a fresh segment, and starts the writer and compaction threads.
    pub fn open_blocking(options: FileStoreOptions) -> Result<Self, StoreError> {
        let started = Instant::now();
        let dir = options.dir;
        std::fs::create_dir_all(&dir).map_err(|e| with_path(e, "cannot create", &dir))?;
        let lock = Arc::new(lock_dir(&dir)?);
        for tmp in recover::scan(&dir)?.temps {
            std::fs::remove_file(&tmp).map_err(|e| with_path(e, "cannot delete", &tmp))?;
        }
        let loaded = recover::load(&dir, None, recover::Tail::Truncate)?;
        for stale in &loaded.stale {
            std::fs::remove_file(stale).map_err(|e| with_path(e, "cannot delete", stale))?;
        }
        // A newest segment without records (crash right after a roll or an open) is reused
        // rather than left behind as an empty file.
        let number = match loaded.segments.last() {
            Some(&n) if !loaded.last_has_records => {
                let path = dir.join(recover::segment_name(n));
                std::fs::remove_file(&path).map_err(|e| with_path(e, "cannot delete", &path))?;
                n
            }
            Some(&n) => n.saturating_add(1),
            None => loaded.snapshot.unwrap_or(1),
        };
        let segment = wal::create_segment(&dir, number)?;
        let (to_compactor, requests) = mpsc::channel();
        if loaded.segments.iter().any(|&n| n < number) {
            let _ = to_compactor.send(number);
        }
        let shared = Arc::new(wal::Shared::new());
        let compactor = {
            let (dir, lock) = (dir.clone(), lock.clone());
            std::thread::Builder::new()
                .name("seata-compact".into())
                .spawn(move || compact::run(dir, requests, lock))?
        };
        let writer = {
            let shared = shared.clone();
            let config = wal::WriterConfig {
                dir: dir.clone(),
                fsync: options.sync == SyncMode::Fsync,
                segment_bytes: options.segment_bytes.max(1),
            };
            std::thread::Builder::new()
                .name("seata-wal".into())
                .spawn(move || {
                    let _lock = lock;
                    wal::run(shared, config, segment, to_compactor);
                })?
        };
        let mut state = loaded.state;
        let audits = std::mem::take(&mut state.audits);
        let (sessions, dtm) = state.into_parts();
        info!(
            dir = %dir.display(),
            sessions = sessions.len(),
            dtm_transactions = dtm.len(),
            snapshot = loaded.snapshot.map(recover::snapshot_name),
            segments = loaded.segments.len(),
            records = loaded.records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "file store opened"
        );
        Ok(FileStore {
            dir,
            shared,
            threads: Mutex::new(vec![writer, compactor]),
            recovered: Mutex::new(Some(sessions)),
            dtm,
            audits: Arc::new(Mutex::new(audits)),
        })
    }

    /// Counters since open.
    pub fn stats(&self) -> FileStoreStats {
        let c = &self.shared.counters;
        FileStoreStats {
            records: c.records.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            segments_rolled: c.segments_rolled.load(Ordering::Relaxed),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write<'a>(&self, record: Record<'_>) -> StoreFuture<'a, ()> {
        // Queued now, not when the future is first polled, so records keep the order of the
        // calls and the future borrows nothing.
        answer_when_durable((), Some(self.shared.submit(&record)))
    }
}

/// `answer` once the queued record is durable; at once when nothing was queued (`None`: the
/// write was refused and logged nothing).
fn answer_when_durable<'a, T: Send + 'a>(
    answer: T,
    queued: Option<Result<oneshot::Receiver<wal::Outcome>, StoreError>>,
) -> StoreFuture<'a, T> {
    match queued {
        None => ready(Ok(answer)),
        Some(Err(e)) => ready(Err(e)),
        Some(Ok(done)) => boxed(async move { durable(done).await.map(|()| answer) }),
    }
}

async fn durable(done: oneshot::Receiver<wal::Outcome>) -> Result<(), StoreError> {
    done.await.unwrap_or_else(|_| {
        Err(StoreError::Backend(
            "the file store writer stopped before the record was durable".into(),
        ))
    })
}

/// Whether the transaction `row` still fits one record once `more` ops are added: a snapshot
/// writes each DTM transaction whole, and one it cannot write stops every compaction.
fn snapshot_fits(row: &TransRecord, more: &[Branch]) -> Result<(), record::EncodeError> {
    let mut branches = DtmBranch::all(&row.branches);
    branches.extend(more.iter().map(DtmBranch::of));
    record::check_size(&Record::DtmCreate {
        trans: DtmTrans::of(&row.trans),
        branches,
    })
}

fn unframable(e: record::EncodeError) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // Without `close`, the writer still drains the queue and exits on its own.
        self.shared.close();
    }
}

impl SessionStore for FileStore {
    fn add_global<'a>(&'a self, g: GlobalRow<'a>) -> StoreFuture<'a, ()> {
        self.write(Record::GlobalAdd {
            transaction_id: g.transaction_id,
            xid: g.xid,
            status: g.status.code(),
            application_id: g.application_id,
            transaction_service_group: g.transaction_service_group,
            transaction_name: g.transaction_name,
            timeout_ms: g.timeout_ms,
            begin_time_ms: g.begin_time_ms,
        })
    }

    fn update_global_status<'a>(
        &'a self,
        transaction_id: i64,
        _xid: &'a str,
        status: GlobalStatus,
    ) -> StoreFuture<'a, ()> {
        self.write(Record::GlobalStatus {
            transaction_id,
            status: status.code(),
        })
    }

    fn remove_global<'a>(&'a self, transaction_id: i64, _xid: &'a str) -> StoreFuture<'a, ()> {
        self.write(Record::GlobalRemove { transaction_id })
    }

    fn add_branch<'a>(&'a self, b: BranchRow<'a>) -> StoreFuture<'a, ()> {
        self.write(Record::BranchAdd {
            transaction_id: b.transaction_id,
            branch_id: b.branch_id,
            branch_type: b.branch_type.code(),
            status: b.status.code(),
            resource_id: b.resource_id,
            lock_key: b.lock_key,
            client_id: b.client_id,
            application_data: b.application_data,
        })
    }

    fn update_branch_status<'a>(
        &'a self,
        transaction_id: i64,
        _xid: &'a str,
        branch_id: i64,
        status: BranchStatus,
    ) -> StoreFuture<'a, ()> {
        self.write(Record::BranchStatus {
            transaction_id,
            branch_id,
            status: status.code(),
        })
    }

    fn remove_branch<'a>(
        &'a self,
        transaction_id: i64,
        _xid: &'a str,
        branch_id: i64,
    ) -> StoreFuture<'a, ()> {
        self.write(Record::BranchRemove {
            transaction_id,
            branch_id,
        })
    }

    fn recover(&self) -> StoreFuture<'_, Vec<StoredSession>> {
        let taken = self
            .recovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        ready(taken.ok_or_else(|| {
            StoreError::Backend(
                "the file store hands out its recovered sessions once, at start-up".into(),
            )
        }))
    }

    fn find<'a>(
        &'a self,
        _transaction_id: i64,
        _xid: &'a str,
    ) -> StoreFuture<'a, Option<StoredSession>> {
        // Private to this TC: the coordinator already holds every live session.
        ready(Ok(None))
    }

    fn dtm(&self) -> Option<&dyn DtmStore> {
        Some(self)
    }

    fn add_audit<'a>(&'a self, a: &'a super::AuditRecord) -> StoreFuture<'a, ()> {
        let durable = self.write(compact::audit_record(a));
        let (audits, a) = (self.audits.clone(), a.clone());
        boxed(async move {
            durable.await?;
            audits
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(a);
            Ok(())
        })
    }

    fn audits<'a>(
        &'a self,
        xid: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<super::AuditRecord>> {
        let all = self.audits.lock().unwrap_or_else(PoisonError::into_inner);
        ready(Ok(super::audit::select(&all, xid, limit)))
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        self.shared.close();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        boxed(async move {
            let joined =
                tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
                    .await;
            let stats = self.stats();
            info!(
                records = stats.records,
                batches = stats.batches,
                syncs = stats.syncs,
                records_per_sync = %format_args!("{:.1}", stats.records_per_batch()),
                bytes = stats.bytes,
                "file store closed"
            );
            if !matches!(joined, Ok(true)) {
                warn!("a file store thread did not stop cleanly; recovery will check the log");
            }
            Ok(())
        })
    }
}

/// Every write checks [`wal::Shared::accepting`] first: after a failed write the table may be
/// ahead of the log, and an answer such as "exists" or "identical" must not vouch for a change
/// that never became durable. Records are framed before the table's lock is taken wherever
/// they do not depend on it, so the hook only queues bytes; a record the log cannot take (over
/// its size limit) is refused before the table changes.
impl DtmStore for FileStore {
    fn create<'a>(&'a self, record: &'a TransRecord) -> StoreFuture<'a, Created> {
        if let Err(e) = self.shared.accepting() {
            return ready(Err(e));
        }
        // The id is assigned inside the table, so the size is checked with the widest id
        // (a 10-byte varint): framing the record as stored can then not fail.
        let mut widest = DtmTrans::of(&record.trans);
        widest.id = i64::MIN;
        let branches = DtmBranch::all(&record.branches);
        if let Err(e) = record::check_len(&Record::DtmCreate {
            trans: widest,
            branches,
        }) {
            return ready(Err(unframable(e)));
        }
        let (created, queued) = self.dtm.create(record, |stored| {
            let framed = record::frame(&compact::dtm_record(stored)).map_err(unframable)?;
            self.shared.submit_framed(&framed)
        });
        answer_when_durable(created, queued)
    }

    fn get<'a>(&'a self, gid: &'a str) -> StoreFuture<'a, Option<TransRecord>> {
        ready(self.shared.accepting().map(|()| self.dtm.get(gid)))
    }

    fn save<'a>(
        &'a self,
        trans: &'a Trans,
        expect: TransStatus,
        changes: &'a [BranchChange],
    ) -> StoreFuture<'a, bool> {
        if let Err(e) = self.shared.accepting() {
            return ready(Err(e));
        }
        let framed = match record::frame(&Record::DtmSave {
            trans: DtmTrans::of(trans),
            expect: expect.as_str(),
            changes: changes.iter().map(DtmChange::of).collect(),
        }) {
            Ok(f) => f,
            Err(e) => return ready(Err(unframable(e))),
        };
        let queued = self.dtm.save(trans, expect, changes, || {
            self.shared.submit_framed(&framed)
        });
        answer_when_durable(queued.is_some(), queued)
    }

    fn add_branches<'a>(
        &'a self,
        gid: &'a str,
        branches: &'a [Branch],
    ) -> StoreFuture<'a, BranchesAdded> {
        if let Err(e) = self.shared.accepting() {
            return ready(Err(e));
        }
        let framed = match record::frame(&Record::DtmBranches {
            gid,
            branches: DtmBranch::all(branches),
        }) {
            Ok(f) => f,
            Err(e) => return ready(Err(unframable(e))),
        };
        let added = self.dtm.add_branches(gid, branches, |row| {
            snapshot_fits(row, branches)?;
            Ok(self.shared.submit_framed(&framed))
        });
        match added {
            Ok((added, queued)) => answer_when_durable(added, queued),
            Err(e) => ready(Err(unframable(e))),
        }
    }

    fn due(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<String>> {
        ready(
            self.shared
                .accepting()
                .map(|()| self.dtm.due(now_ms, limit)),
        )
    }

    fn scheduled_after(&self, after_ms: i64, limit: usize) -> StoreFuture<'_, Vec<String>> {
        ready(
            self.shared
                .accepting()
                .map(|()| self.dtm.scheduled_after(after_ms, limit)),
        )
    }

    fn list<'a>(&'a self, query: &'a ListQuery) -> StoreFuture<'a, ListPage> {
        ready(self.shared.accepting().map(|()| self.dtm.list(query)))
    }

    fn purge(&self, finished_before_ms: i64, keep_max: usize) -> StoreFuture<'_, usize> {
        if let Err(e) = self.shared.accepting() {
            return ready(Err(e));
        }
        // The removal is logged inside the table's removal, with the row's id, so replay
        // cannot take a newer transaction that reused the gid (recover.rs).
        let mut queued = Vec::new();
        self.dtm.purge(finished_before_ms, keep_max, |r| {
            queued.push(self.shared.submit(&Record::DtmRemove {
                gid: &r.trans.gid,
                id: r.trans.id,
            }));
        });
        let purged = queued.len();
        if purged == 0 {
            return ready(Ok(0));
        }
        boxed(async move {
            for q in queued {
                durable(q?).await?;
            }
            Ok(purged)
        })
    }

    fn remove_finished<'a>(&'a self, gid: &'a str) -> StoreFuture<'a, bool> {
        if let Err(e) = self.shared.accepting() {
            return ready(Err(e));
        }
        // Logged inside the removal with the row's id, as purge does (recover.rs).
        let mut queued = None;
        self.dtm.remove_finished(gid, |r| {
            queued = Some(self.shared.submit(&Record::DtmRemove {
                gid: &r.trans.gid,
                id: r.trans.id,
            }));
        });
        match queued {
            None => ready(Ok(false)),
            Some(q) => boxed(async move {
                durable(q?).await?;
                Ok(true)
            }),
        }
    }
}
