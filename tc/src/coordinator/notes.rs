//! What an operator needs to know about a transaction that the session itself does not keep:
//! per-branch failed attempts and last error, when retrying started, and a short history of
//! the unusual events (failures, timeouts, operator actions). Kept in memory only, and only
//! for transactions where something went wrong, so the happy path costs one `is_empty` check
//! when a session ends. Lost on restart; audit records (the store) are what survives.

use std::collections::{HashMap, VecDeque};

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;
use dashmap::DashMap;
use serde::Serialize;

/// History entries kept per transaction (the oldest are dropped).
const HISTORY_MAX: usize = 20;

/// Longest error text kept per branch; an RM's dirty-rollback report fits easily.
const ERROR_MAX: usize = 8 * 1024;

/// One remembered event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// The branch it concerns, if any.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::store::id_json::option::serialize"
    )]
    pub branch_id: Option<i64>,
    /// What happened, one line.
    pub what: String,
}

/// Failure bookkeeping of one branch.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BranchNote {
    /// Phase-two attempts that did not finish the branch.
    pub failed_attempts: u32,
    /// The last failure: the RM's answer or why it could not be reached.
    pub last_error: Option<String>,
    /// The RM said this branch can never complete (e.g. an AT dirty rollback): it is not
    /// retried until an operator acts.
    pub unretryable: bool,
}

#[derive(Debug, Default)]
struct TxNote {
    retrying_since_ms: Option<i64>,
    branches: HashMap<i64, BranchNote>,
    history: VecDeque<HistoryEntry>,
    gave_up: bool,
}

impl TxNote {
    fn push(&mut self, at_ms: i64, branch_id: Option<i64>, what: String) {
        if self.history.len() == HISTORY_MAX {
            self.history.pop_front();
        }
        self.history.push_back(HistoryEntry {
            at_ms,
            branch_id,
            what,
        });
    }
}

/// Notes of every transaction that had a failure, by transaction id.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    map: DashMap<i64, TxNote>,
    /// Entries in `map`, kept beside it because `DashMap::is_empty` locks every shard and the
    /// end of every transaction asks.
    len: AtomicUsize,
}

/// A copy of one transaction's notes.
#[derive(Debug, Clone, Default)]
pub struct TxNotes {
    /// When its first retryable failure happened, ms.
    pub retrying_since_ms: Option<i64>,
    /// Per branch id.
    pub branches: HashMap<i64, BranchNote>,
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
}

fn clip(mut s: String) -> String {
    if s.len() > ERROR_MAX {
        let mut end = ERROR_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl Notes {
    fn note(&self, tid: i64) -> RefMut<'_, i64, TxNote> {
        match self.map.entry(tid) {
            Entry::Occupied(e) => e.into_ref(),
            Entry::Vacant(e) => {
                self.len.fetch_add(1, Ordering::Relaxed);
                e.insert(TxNote::default())
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    /// A branch's phase two failed in a way worth retrying.
    pub(crate) fn branch_failed(&self, tid: i64, branch_id: i64, now: i64, error: String) {
        let mut n = self.note(tid);
        n.retrying_since_ms.get_or_insert(now);
        let b = n.branches.entry(branch_id).or_default();
        b.failed_attempts = b.failed_attempts.saturating_add(1);
        // Only a change of error goes into the history: a branch failing the same way every
        // second would push everything else out.
        let changed = b.last_error.as_deref() != Some(error.as_str());
        b.last_error = Some(clip(error.clone()));
        if changed {
            n.push(now, Some(branch_id), clip(error));
        }
    }

    /// The RM said the branch can never complete; `report` is its message.
    pub(crate) fn branch_unretryable(&self, tid: i64, branch_id: i64, now: i64, report: String) {
        let mut n = self.note(tid);
        let b = n.branches.entry(branch_id).or_default();
        b.failed_attempts = b.failed_attempts.saturating_add(1);
        b.unretryable = true;
        b.last_error = Some(clip(report));
        n.push(
            now,
            Some(branch_id),
            "RM answered unretryable; waiting for an operator (retry after fixing the data, or give-up)"
                .into(),
        );
    }

    /// Something worth showing happened to the transaction.
    pub(crate) fn event(&self, tid: i64, branch_id: Option<i64>, now: i64, what: String) {
        self.note(tid).push(now, branch_id, what);
    }

    /// An operator gave up `branch_id`: the transaction ends as failed.
    pub(crate) fn gave_up(&self, tid: i64, branch_id: i64) {
        let mut n = self.note(tid);
        n.gave_up = true;
        n.branches.remove(&branch_id);
    }

    /// Whether an operator gave up a branch of the transaction.
    pub(crate) fn has_given_up(&self, tid: i64) -> bool {
        !self.is_empty() && self.map.get(&tid).is_some_and(|n| n.gave_up)
    }

    /// Clears the "unretryable" marks (an operator retries after fixing the data).
    pub(crate) fn clear_unretryable(&self, tid: i64) {
        if let Some(mut n) = self.map.get_mut(&tid) {
            for b in n.branches.values_mut() {
                b.unretryable = false;
            }
        }
    }

    /// A copy of the transaction's notes (empty when nothing went wrong).
    pub(crate) fn of(&self, tid: i64) -> TxNotes {
        if self.is_empty() {
            return TxNotes::default();
        }
        self.map
            .get(&tid)
            .map(|n| TxNotes {
                retrying_since_ms: n.retrying_since_ms,
                branches: n.branches.clone(),
                history: n.history.iter().cloned().collect(),
            })
            .unwrap_or_default()
    }

    /// The transaction ended: forget its notes.
    pub(crate) fn forget(&self, tid: i64) {
        if !self.is_empty() && self.map.remove(&tid).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_error_counts_but_is_one_history_line() {
        let n = Notes::default();
        for t in 0..5 {
            n.branch_failed(1, 10, t, "no RM connected".into());
        }
        let got = n.of(1);
        assert_eq!(got.branches[&10].failed_attempts, 5);
        assert_eq!(got.history.len(), 1);
        assert_eq!(got.retrying_since_ms, Some(0));
        n.forget(1);
        assert!(n.of(1).branches.is_empty());
    }

    #[test]
    fn unretryable_mark_is_found_and_cleared() {
        let n = Notes::default();
        n.branch_unretryable(1, 10, 5, "{\"table\":\"t\"}".into());
        assert!(n.of(1).branches[&10].unretryable);
        n.clear_unretryable(1);
        assert!(!n.of(1).branches[&10].unretryable);
        assert_eq!(
            n.of(1).branches[&10].last_error.as_deref(),
            Some("{\"table\":\"t\"}")
        );
    }
}
