//! Replay: the data directory's files (newest snapshot, then the segments after it, in order)
//! folded into a [`State`] of live sessions and held DTM transactions. Used at open, where the
//! last segment's torn tail is cut off, and by compaction, which reads only finished segments
//! and accepts no damage.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use seata_protocol::{BranchStatus, BranchType, GlobalStatus};

use super::dtm_record::{word, DtmBranch, DtmChange};
use super::record::{Reader, Record, SEGMENT_MAGIC, SNAPSHOT_MAGIC};
use crate::dtm::model::{TransRecord, TransStatus};
use crate::store::dtm::BranchesAdded;
use crate::store::{DtmTable, StoreError, StoredBranch, StoredGlobal, StoredSession};

/// File name of segment `n`; zero-padded so names sort like numbers.
pub(super) fn segment_name(n: u64) -> String {
    format!("{n:020}.wal")
}

/// File name of the snapshot that replaces every segment numbered below `n`.
pub(super) fn snapshot_name(n: u64) -> String {
    format!("{n:020}.snapshot")
}

/// Where a snapshot is written before it is renamed into place.
pub(super) fn snapshot_temp_name(n: u64) -> String {
    format!("{n:020}.snapshot.tmp")
}

fn numbered(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The store's files in a directory, each list in ascending order.
#[derive(Debug, Default)]
pub(super) struct Layout {
    pub(super) snapshots: Vec<u64>,
    pub(super) segments: Vec<u64>,
    /// Unfinished snapshots left by a crash.
    pub(super) temps: Vec<PathBuf>,
}

/// Lists the store's files; anything else in the directory (the `LOCK` file, an operator's
/// notes) is left alone.
pub(super) fn scan(dir: &Path) -> std::io::Result<Layout> {
    let mut layout = Layout::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = numbered(name, ".wal") {
            layout.segments.push(n);
        } else if let Some(n) = numbered(name, ".snapshot") {
            layout.snapshots.push(n);
        } else if numbered(name, ".snapshot.tmp").is_some() {
            layout.temps.push(entry.path());
        }
    }
    layout.segments.sort_unstable();
    layout.snapshots.sort_unstable();
    Ok(layout)
}

/// Live sessions and held DTM transactions, built from records in log order.
#[derive(Debug, Default)]
pub(super) struct State {
    sessions: HashMap<i64, StoredSession>,
    /// Rebuilt with the table's own operations, so replay applies each change exactly as the
    /// live table did when it logged it.
    dtm: DtmTable,
    /// Audit records, oldest first.
    pub(super) audits: Vec<crate::store::AuditRecord>,
}

fn global_status(code: u8) -> Result<GlobalStatus, String> {
    GlobalStatus::try_from(code).map_err(|e| e.to_string())
}

fn branch_status(code: u8) -> Result<BranchStatus, String> {
    BranchStatus::try_from(code).map_err(|e| e.to_string())
}

impl State {
    /// Applies one record. Changes to a session or branch the state does not hold are
    /// skipped: a branch registered while its session was ending is recorded after the
    /// session's removal, and the coordinator removes such a branch itself.
    pub(super) fn apply(&mut self, record: Record<'_>) -> Result<(), String> {
        match record {
            Record::GlobalAdd {
                transaction_id,
                xid,
                status,
                application_id,
                transaction_service_group,
                transaction_name,
                timeout_ms,
                begin_time_ms,
            } => {
                let global = StoredGlobal {
                    transaction_id,
                    xid: xid.to_owned(),
                    status: global_status(status)?,
                    application_id: application_id.to_owned(),
                    transaction_service_group: transaction_service_group.to_owned(),
                    transaction_name: transaction_name.to_owned(),
                    timeout_ms,
                    begin_time_ms,
                };
                self.sessions
                    .entry(transaction_id)
                    .and_modify(|s| s.global = global.clone())
                    .or_insert_with(|| StoredSession {
                        global,
                        branches: Vec::new(),
                    });
            }
            Record::GlobalStatus {
                transaction_id,
                status,
            } => {
                let status = global_status(status)?;
                if let Some(s) = self.sessions.get_mut(&transaction_id) {
                    s.global.status = status;
                }
            }
            Record::GlobalRemove { transaction_id } => {
                self.sessions.remove(&transaction_id);
            }
            Record::BranchAdd {
                transaction_id,
                branch_id,
                branch_type,
                status,
                resource_id,
                lock_key,
                client_id,
                application_data,
            } => {
                let branch = StoredBranch {
                    branch_id,
                    branch_type: BranchType::try_from(branch_type).map_err(|e| e.to_string())?,
                    status: branch_status(status)?,
                    resource_id: resource_id.to_owned(),
                    lock_key: lock_key.to_owned(),
                    client_id: client_id.to_owned(),
                    application_data: application_data.to_owned(),
                };
                if let Some(s) = self.sessions.get_mut(&transaction_id) {
                    s.branches.push(branch);
                }
            }
            Record::BranchStatus {
                transaction_id,
                branch_id,
                status,
            } => {
                let status = branch_status(status)?;
                if let Some(b) = self
                    .sessions
                    .get_mut(&transaction_id)
                    .and_then(|s| s.branches.iter_mut().find(|b| b.branch_id == branch_id))
                {
                    b.status = status;
                }
            }
            Record::BranchRemove {
                transaction_id,
                branch_id,
            } => {
                if let Some(s) = self.sessions.get_mut(&transaction_id) {
                    // `retain` keeps the registration order of the others.
                    s.branches.retain(|b| b.branch_id != branch_id);
                }
            }
            Record::SnapshotEnd { .. } | Record::SnapshotEndDtm { .. } => {
                return Err("snapshot end record inside a log segment".into());
            }
            // The DTM records are written by `FileStore` inside the table's per-gid lock,
            // exactly when the change applies (refused writes log nothing), so one gid's
            // records are in the order its changes were made, and replay meets each one in
            // the state the live table was in: it applies in the same way. The exception is
            // `DtmTable::purge`, which logs a removal after letting go of the row, so a new
            // transaction with the purged gid can be logged before that removal; dtm-remove
            // therefore names the id it removes (see below).
            Record::DtmCreate { trans, branches } => {
                // The gid is held here only in that purge window (the purged row's removal
                // follows): the new transaction replaces it, as in the live table.
                self.dtm.restore(TransRecord {
                    trans: trans.to_model()?,
                    branches: DtmBranch::all_to_model(&branches)?,
                });
            }
            Record::DtmSave {
                trans,
                expect,
                changes,
            } => {
                let trans = trans.to_model()?;
                let expect: TransStatus = word(expect)?;
                let changes = changes
                    .iter()
                    .map(DtmChange::to_model)
                    .collect::<Result<Vec<_>, _>>()?;
                if self.dtm.save(&trans, expect, &changes, || ()).is_none() {
                    // Unknown gid: possible only after a removal whose id was not known (see
                    // dtm-remove); the save belongs to a transaction that removal wrongly
                    // took, and skipping it is all replay can do. A held row in another
                    // status cannot happen (same state, same check as when it was logged),
                    // so that is damage.
                    if let Some(held) = self.dtm.get(&trans.gid) {
                        return Err(format!(
                            "DTM save of {:?} expects status {expect} but the log left it {}",
                            trans.gid, held.trans.status
                        ));
                    }
                }
            }
            Record::DtmBranches { gid, branches } => {
                let branches = DtmBranch::all_to_model(&branches)?;
                let added = self
                    .dtm
                    .add_branches(gid, &branches, |_| Ok::<_, String>(()))?
                    .0;
                match added {
                    BranchesAdded::Added => {}
                    // Unknown gid: as for a save above.
                    BranchesAdded::NotPrepared(None) => {}
                    // Logged only when added; the same check on the same state adds again.
                    refused => {
                        return Err(format!(
                            "DTM branches of {gid:?} were logged as added but replay finds \
                             {refused:?}"
                        ))
                    }
                }
            }
            Record::Audit {
                at_ms,
                actor,
                action,
                xid,
                branch_id,
                reason,
                status,
            } => self.audits.push(crate::store::AuditRecord {
                at_ms,
                actor: actor.to_owned(),
                action: action.to_owned(),
                xid: xid.to_owned(),
                branch_id,
                reason: reason.to_owned(),
                status: status.to_owned(),
            }),
            Record::DtmLastId { id } => self.dtm.observe_id(id),
            Record::DtmRemove { gid, id } => {
                // Purge removes only finished rows, so an unfinished row, or one with another
                // id, is a newer transaction that reused the gid in the purge window: keep it.
                // `id` 0 means the purge did not learn the id (the row finished while the
                // purge ran); then the finished row held is taken as the purged one.
                let purged = self
                    .dtm
                    .get(gid)
                    .is_some_and(|r| r.trans.status.is_finished() && (id == 0 || r.trans.id == id));
                if purged {
                    self.dtm.remove(gid);
                }
            }
        }
        Ok(())
    }

    /// Number of sessions.
    pub(super) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Number of branches over all sessions.
    pub(super) fn branch_count(&self) -> usize {
        self.sessions.values().map(|s| s.branches.len()).sum()
    }

    /// Sessions by transaction id (oldest first, as ids grow).
    pub(super) fn sorted(&self) -> Vec<&StoredSession> {
        let mut v: Vec<&StoredSession> = self.sessions.values().collect();
        v.sort_unstable_by_key(|s| s.global.transaction_id);
        v
    }

    /// The DTM transactions held.
    pub(super) fn dtm(&self) -> &DtmTable {
        &self.dtm
    }

    /// Number of branch ops over all DTM transactions.
    pub(super) fn dtm_branch_count(&self) -> usize {
        let mut n = 0;
        self.dtm.for_each(|r| n += r.branches.len());
        n
    }

    /// The sessions, by transaction id, and the DTM table.
    pub(super) fn into_parts(self) -> (Vec<StoredSession>, DtmTable) {
        let mut v: Vec<StoredSession> = self.sessions.into_values().collect();
        v.sort_unstable_by_key(|s| s.global.transaction_id);
        (v, self.dtm)
    }
}

/// What to do about damage at the end of the newest segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tail {
    /// Opening: a torn tail is an append cut short by a crash (never acknowledged); cut it off.
    Truncate,
    /// Compacting finished segments: any damage is corruption.
    Strict,
}

/// The result of a replay.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub(super) state: State,
    /// The snapshot replay started from.
    pub(super) snapshot: Option<u64>,
    /// Segments replayed, ascending.
    pub(super) segments: Vec<u64>,
    /// Whether the newest replayed segment holds any record (after truncation).
    pub(super) last_has_records: bool,
    /// Records read from segments (not the snapshot).
    pub(super) records: u64,
    /// Files the snapshot made obsolete; deleting them is safe.
    pub(super) stale: Vec<PathBuf>,
}

fn corrupt(path: &Path, offset: u64, reason: &str) -> StoreError {
    StoreError::Corrupt(format!("{} at byte {offset}: {reason}", path.display()))
}

/// Replays `dir`: the newest snapshot (numbered at most `below`, if given), then every segment
/// from the snapshot's number on (below `below`, if given).
pub(super) fn load(dir: &Path, below: Option<u64>, tail: Tail) -> Result<Loaded, StoreError> {
    let layout = scan(dir)?;
    let limit = below.unwrap_or(u64::MAX);
    let snapshot = layout
        .snapshots
        .iter()
        .copied()
        .filter(|&n| n <= limit)
        .max();
    let first = snapshot.unwrap_or(1);
    let mut loaded = Loaded {
        snapshot,
        ..Loaded::default()
    };
    for &n in layout.snapshots.iter().filter(|&&n| n < first) {
        loaded.stale.push(dir.join(snapshot_name(n)));
    }
    for &n in layout.segments.iter().filter(|&&n| n < first) {
        loaded.stale.push(dir.join(segment_name(n)));
    }
    if let Some(n) = snapshot {
        read_snapshot(&dir.join(snapshot_name(n)), &mut loaded.state)?;
    }
    let segments: Vec<u64> = layout
        .segments
        .iter()
        .copied()
        .filter(|&n| n >= first && n < limit)
        .collect();
    let mut expected = first;
    for (i, &n) in segments.iter().enumerate() {
        if n != expected {
            return Err(StoreError::Corrupt(format!(
                "{} is missing (found {} next); the log has a gap",
                dir.join(segment_name(expected)).display(),
                segment_name(n)
            )));
        }
        expected = n.saturating_add(1);
        let last = i + 1 == segments.len();
        let cut_tail = last && tail == Tail::Truncate;
        let path = dir.join(segment_name(n));
        let (records, has_records) = replay_segment(&path, cut_tail, &mut loaded.state)?;
        loaded.records += records;
        loaded.last_has_records = has_records;
    }
    loaded.segments = segments;
    Ok(loaded)
}

/// Replays one segment; with `cut_tail`, damage that a crash during an append leaves at the
/// end is cut off the file. Returns the records read and whether there were any.
fn replay_segment(
    path: &Path,
    cut_tail: bool,
    state: &mut State,
) -> Result<(u64, bool), StoreError> {
    let bytes = std::fs::read(path)?;
    let magic_len = SEGMENT_MAGIC.len();
    let torn_header = bytes.len() < magic_len && SEGMENT_MAGIC.starts_with(&bytes);
    let zeroed = |from: usize| bytes.get(from..).is_some_and(|r| r.iter().all(|&b| b == 0));
    if torn_header || bytes.get(..magic_len) != Some(SEGMENT_MAGIC.as_slice()) {
        if cut_tail && (torn_header || zeroed(0)) {
            truncate(path, 0)?;
            return Ok((0, false));
        }
        return Err(corrupt(path, 0, "not a seata-rs log segment (bad magic)"));
    }
    let mut reader = Reader::new(&bytes, magic_len);
    let mut n = 0u64;
    loop {
        match reader.next_record() {
            Ok(None) => break,
            Ok(Some((offset, record))) => {
                state
                    .apply(record)
                    .map_err(|reason| corrupt(path, offset, &reason))?;
                n += 1;
            }
            Err(bad) => {
                // Zeros are the writer's preallocated space, or what a machine crash leaves
                // of an unsynced append (size updated, data not): never acknowledged either way.
                let from = usize::try_from(bad.offset).unwrap_or(usize::MAX);
                let unused = zeroed(from);
                if cut_tail && (bad.torn || unused) {
                    if unused {
                        tracing::debug!(file = %path.display(), offset = bad.offset,
                            "cutting off preallocated space at the end of the log");
                    } else {
                        tracing::warn!(file = %path.display(), offset = bad.offset, reason = %bad.reason,
                            "cutting off a torn record at the end of the log (an append interrupted by a crash, never acknowledged)");
                    }
                    truncate(path, bad.offset)?;
                    return Ok((n, n > 0));
                }
                return Err(corrupt(path, bad.offset, &bad.reason));
            }
        }
    }
    if cut_tail {
        // With `sync = none` the previous process may have left this segment in the page
        // cache only. It is about to stop being the newest, where no tail damage is
        // tolerated, so make it durable first.
        std::fs::File::open(path)?.sync_all()?;
    }
    Ok((n, n > 0))
}

fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()?;
    Ok(())
}

/// Reads a snapshot into an empty state. A snapshot appears only by rename once complete and
/// synced, so any damage, even at its end, is corruption.
fn read_snapshot(path: &Path, state: &mut State) -> Result<(), StoreError> {
    let bytes = std::fs::read(path)?;
    if bytes.get(..SNAPSHOT_MAGIC.len()) != Some(SNAPSHOT_MAGIC.as_slice()) {
        return Err(corrupt(path, 0, "not a seata-rs snapshot (bad magic)"));
    }
    let mut reader = Reader::new(&bytes, SNAPSHOT_MAGIC.len());
    loop {
        let (offset, record) = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(corrupt(
                    path,
                    reader.position(),
                    "snapshot ends without its end record",
                ))
            }
            Err(bad) => return Err(corrupt(path, bad.offset, &bad.reason)),
        };
        // A snapshot written before DTM transactions were stored ends with snapshot-end:
        // it holds none.
        let end = match record {
            Record::SnapshotEnd { sessions, branches } => Some([sessions, branches, 0, 0]),
            Record::SnapshotEndDtm {
                sessions,
                branches,
                dtm_transactions,
                dtm_branches,
            } => Some([sessions, branches, dtm_transactions, dtm_branches]),
            _ => None,
        };
        if let Some(listed) = end {
            let found = [
                state.len() as u64,
                state.branch_count() as u64,
                state.dtm().len() as u64,
                state.dtm_branch_count() as u64,
            ];
            if found != listed || reader.position() != bytes.len() as u64 {
                let ([ls, lb, lt, lo], [fs, fb, ft, fo]) = (listed, found);
                return Err(corrupt(
                    path,
                    offset,
                    &format!(
                        "snapshot lists {ls} sessions, {lb} branches, {lt} DTM transactions and \
                         {lo} DTM branch ops but holds {fs}, {fb}, {ft} and {fo}, or has bytes \
                         after its end"
                    ),
                ));
            }
            return Ok(());
        }
        match record {
            r @ (Record::GlobalAdd { .. }
            | Record::BranchAdd { .. }
            | Record::DtmCreate { .. }
            | Record::DtmLastId { .. }
            | Record::Audit { .. }) => {
                state
                    .apply(r)
                    .map_err(|reason| corrupt(path, offset, &reason))?;
            }
            _ => {
                return Err(corrupt(
                    path,
                    offset,
                    "snapshot holds a change record; only adds belong there",
                ))
            }
        }
    }
}
