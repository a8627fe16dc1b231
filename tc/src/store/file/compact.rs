//! Compaction: when the writer rolls to segment `N`, a background thread replays the newest
//! snapshot and the finished segments before `N`, writes the live sessions and every DTM
//! transaction still held (live, or finished and not yet purged) as snapshot `N` and deletes
//! what it replaces. The log therefore holds one snapshot (the size of the held state) plus
//! the segments written since, whatever the history.
//!
//! Crash-safe order: write `N.snapshot.tmp`, fsync it, rename it to `N.snapshot`, fsync the
//! directory, and only then delete the older snapshot and segments. A crash at any point
//! leaves either the old snapshot with all its segments, or the new snapshot (with some
//! obsolete files, which the next open deletes). The replay reads files the writer has
//! finished with (synced before the roll), so it runs beside the writer without a lock.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use tracing::{info, warn};

use super::dtm_record::{DtmBranch, DtmTrans};
use super::record::{self, Record, SNAPSHOT_MAGIC};
use super::recover::{load, segment_name, snapshot_name, snapshot_temp_name, State, Tail};
use super::wal::sync_dir;
use crate::dtm::model::TransRecord;
use crate::store::{StoreError, StoredBranch, StoredGlobal};

/// Snapshot bytes buffered before each write to the temp file.
const CHUNK: usize = 256 * 1024;

/// Body of the compaction thread: serves requests until the writer drops its sender. Several
/// queued requests collapse into the newest. `_lock` keeps the data directory locked while a
/// compaction may still be writing, even after the store handle is gone.
pub(super) fn run(dir: PathBuf, requests: mpsc::Receiver<u64>, _lock: Arc<File>) {
    while let Ok(mut upto) = requests.recv() {
        while let Ok(n) = requests.try_recv() {
            upto = upto.max(n);
        }
        match compact(&dir, upto) {
            Ok(done) => info!(
                snapshot = %snapshot_name(upto),
                sessions = done.sessions,
                branches = done.branches,
                dtm_transactions = done.dtm_transactions,
                files_removed = done.removed,
                "file store compacted"
            ),
            // Nothing is lost: the segments stay, and the next roll (or open) tries again.
            Err(e) => warn!(error = %e, "file store compaction failed; keeping the old segments"),
        }
    }
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Compacted {
    pub(super) sessions: usize,
    pub(super) branches: usize,
    pub(super) dtm_transactions: usize,
    pub(super) removed: usize,
}

/// Replaces every segment numbered below `upto` (and the older snapshot) with snapshot `upto`.
pub(super) fn compact(dir: &Path, upto: u64) -> Result<Compacted, StoreError> {
    let loaded = load(dir, Some(upto), Tail::Strict)?;
    if loaded.snapshot != Some(upto) {
        write_snapshot(dir, upto, &loaded.state)?;
    }
    let mut obsolete = loaded.stale;
    if let Some(old) = loaded.snapshot.filter(|&n| n < upto) {
        obsolete.push(dir.join(snapshot_name(old)));
    }
    obsolete.extend(loaded.segments.iter().map(|&n| dir.join(segment_name(n))));
    let mut removed = 0;
    for path in &obsolete {
        match std::fs::remove_file(path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(file = %path.display(), error = %e, "could not delete an obsolete file; the next open retries")
            }
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(Compacted {
        sessions: loaded.state.len(),
        branches: loaded.state.branch_count(),
        dtm_transactions: loaded.state.dtm().len(),
        removed,
    })
}

/// The GLOBAL_ADD record of a stored global.
pub(super) fn global_record(g: &StoredGlobal) -> Record<'_> {
    Record::GlobalAdd {
        transaction_id: g.transaction_id,
        xid: &g.xid,
        status: g.status.code(),
        application_id: &g.application_id,
        transaction_service_group: &g.transaction_service_group,
        transaction_name: &g.transaction_name,
        timeout_ms: g.timeout_ms,
        begin_time_ms: g.begin_time_ms,
    }
}

/// The BRANCH_ADD record of a stored branch.
pub(super) fn branch_record(transaction_id: i64, b: &StoredBranch) -> Record<'_> {
    Record::BranchAdd {
        transaction_id,
        branch_id: b.branch_id,
        branch_type: b.branch_type.code(),
        status: b.status.code(),
        resource_id: &b.resource_id,
        lock_key: &b.lock_key,
        client_id: &b.client_id,
        application_data: &b.application_data,
    }
}

/// The dtm-create record of a held DTM transaction, as it stands.
pub(super) fn dtm_record(r: &TransRecord) -> Record<'_> {
    Record::DtmCreate {
        trans: DtmTrans::of(&r.trans),
        branches: DtmBranch::all(&r.branches),
    }
}

pub(super) fn audit_record(a: &crate::store::AuditRecord) -> Record<'_> {
    Record::Audit {
        at_ms: a.at_ms,
        actor: &a.actor,
        action: &a.action,
        xid: &a.xid,
        branch_id: a.branch_id,
        reason: &a.reason,
        status: &a.status,
    }
}

fn encode(buf: &mut Vec<u8>, r: &Record<'_>) -> Result<(), StoreError> {
    record::append(buf, r).map_err(|e| StoreError::Backend(format!("snapshot: {e}")))
}

/// Writes snapshot `n` of `state` through a temp file and renames it into place durably.
pub(super) fn write_snapshot(dir: &Path, n: u64, state: &State) -> Result<(), StoreError> {
    let tmp = dir.join(snapshot_temp_name(n));
    let mut out = BufWriter::new(File::create(&tmp)?);
    out.write_all(SNAPSHOT_MAGIC)?;
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    let mut branches = 0u64;
    let sessions = state.sorted();
    for s in &sessions {
        encode(&mut buf, &global_record(&s.global))?;
        for b in &s.branches {
            encode(&mut buf, &branch_record(s.global.transaction_id, b))?;
            branches += 1;
        }
        if buf.len() >= CHUNK {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    // DTM transactions in the table's order: each record keeps its id, so order is moot.
    let (mut dtm_transactions, mut dtm_branches) = (0u64, 0u64);
    let mut failed = None;
    state.dtm().for_each(|r| {
        if failed.is_some() {
            return;
        }
        let written = encode(&mut buf, &dtm_record(r)).and_then(|()| {
            if buf.len() >= CHUNK {
                out.write_all(&buf)?;
                buf.clear();
            }
            Ok(())
        });
        match written {
            Ok(()) => {
                dtm_transactions += 1;
                dtm_branches += r.branches.len() as u64;
            }
            Err(e) => failed = Some(e),
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    // Audit records are history, not state: every one is kept (they are rare).
    for a in &state.audits {
        encode(&mut buf, &audit_record(a))?;
    }
    // The replay saw the creates of transactions purged since: their ids stay used.
    encode(
        &mut buf,
        &Record::DtmLastId {
            id: state.dtm().last_id(),
        },
    )?;
    encode(
        &mut buf,
        &Record::SnapshotEndDtm {
            sessions: sessions.len() as u64,
            branches,
            dtm_transactions,
            dtm_branches,
        },
    )?;
    out.write_all(&buf)?;
    crate::failpoints::hit("tc::file::snapshot");
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(snapshot_name(n)))?;
    sync_dir(dir)?;
    Ok(())
}
