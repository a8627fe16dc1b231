//! The list rows of `GET /admin/v1/transactions`: Seata sessions and DTM transactions in one
//! shape, and the filters over them.

use serde::{Deserialize, Serialize};

use crate::coordinator::SessionView;
use crate::dtm::model::{Trans, TransStatus};

/// One row of the transaction list.
#[derive(Debug, Clone, Serialize)]
pub struct TxSummary {
    /// `seata` (XID) or `dtm` (gid).
    pub kind: &'static str,
    /// XID or gid.
    pub id: String,
    /// Seata's global status name, or DTM's status word.
    pub status: String,
    /// `at`, `tcc`, `xa`, `saga`, `mixed`, `none`, or `dtm-saga`, `dtm-msg`, `dtm-tcc`, `dtm-xa`.
    pub mode: String,
    /// Application of the TM (Seata); empty for DTM.
    pub application: String,
    /// Transaction name (Seata).
    pub name: String,
    /// Begin (create) time, ms.
    pub begin_time_ms: i64,
    /// Age now, ms.
    pub age_ms: i64,
    /// Branches (Seata) or branch ops (DTM).
    pub branches: usize,
    /// Failed phase-two attempts over all branches (Seata), or DTM's retry count.
    pub failed_attempts: u64,
    /// Since when phase two keeps failing, ms.
    pub retrying_since_ms: Option<i64>,
    /// A branch waits for an operator.
    pub needs_operator: bool,
    /// The latest failure of any branch (or DTM's rollback reason).
    pub last_error: Option<String>,
}

impl TxSummary {
    /// A Seata session's row.
    pub fn seata(v: &SessionView, now: i64) -> Self {
        let failed: u64 = v
            .branches
            .iter()
            .map(|b| u64::from(b.note.failed_attempts))
            .sum();
        let last_error = v
            .branches
            .iter()
            .find(|b| b.note.unretryable)
            .or_else(|| v.branches.iter().find(|b| b.note.last_error.is_some()))
            .and_then(|b| b.note.last_error.clone());
        TxSummary {
            kind: "seata",
            id: v.xid.clone(),
            status: v.status.clone(),
            mode: v.mode.clone(),
            application: v.application_id.clone(),
            name: v.transaction_name.clone(),
            begin_time_ms: v.begin_time_ms,
            age_ms: now.saturating_sub(v.begin_time_ms),
            branches: v.branches.len(),
            failed_attempts: failed,
            retrying_since_ms: v.retrying_since_ms,
            needs_operator: v.needs_operator,
            last_error,
        }
    }

    /// A DTM transaction's row.
    pub fn dtm(t: &Trans, branches: usize, now: i64) -> Self {
        let unfinished = !t.status.is_finished();
        let retrying = unfinished && t.retry_count > 0;
        TxSummary {
            kind: "dtm",
            id: t.gid.clone(),
            status: t.status.as_str().to_owned(),
            mode: format!("dtm-{}", t.trans_type.as_str()),
            application: String::new(),
            name: String::new(),
            begin_time_ms: t.create_time,
            age_ms: now.saturating_sub(t.create_time),
            branches,
            failed_attempts: u64::try_from(t.retry_count).unwrap_or(0),
            retrying_since_ms: retrying.then_some(t.create_time),
            needs_operator: false,
            last_error: (!t.rollback_reason.is_empty()).then(|| t.rollback_reason.clone()),
        }
    }

    fn retrying(&self) -> bool {
        self.retrying_since_ms.is_some() || self.status.ends_with("Retrying") || self.needs_operator
    }
}

/// Filters and page of the transaction list (query string).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListParams {
    /// `seata` or `dtm`.
    pub kind: Option<String>,
    /// Status name or word, case-insensitive; several separated by commas.
    pub status: Option<String>,
    /// Mode (see [`TxSummary::mode`]).
    pub mode: Option<String>,
    /// Application id of the TM.
    pub application: Option<String>,
    /// Only transactions at least this old, seconds.
    pub min_age_s: Option<u64>,
    /// "Stuck": phase two failing (or waiting for an operator) for at least this long, seconds.
    pub stuck_s: Option<u64>,
    /// Rows to skip.
    pub offset: Option<usize>,
    /// Rows to return, default 50, at most 1000.
    pub limit: Option<usize>,
}

impl ListParams {
    /// Whether `t` passes every filter.
    pub fn matches(&self, t: &TxSummary, now: i64) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_deref()
                .is_none_or(|w| w.split(',').any(|w| w.trim().eq_ignore_ascii_case(have)))
        };
        let secs = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        eq(&self.kind, t.kind)
            && eq(&self.status, &t.status)
            && eq(&self.mode, &t.mode)
            && eq(&self.application, &t.application)
            && self.min_age_s.is_none_or(|s| t.age_ms >= secs(s))
            && self.stuck_s.is_none_or(|s| {
                t.retrying() && {
                    let since = t.retrying_since_ms.unwrap_or(t.begin_time_ms);
                    now.saturating_sub(since) >= secs(s)
                }
            })
    }

    /// The page size asked for, bounded.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(50).clamp(1, 1000)
    }
}

/// Whether a DTM status word names an unfinished transaction (for the overview).
pub fn dtm_open(s: TransStatus) -> bool {
    !s.is_finished()
}
