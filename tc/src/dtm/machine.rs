//! What to do next with a DTM transaction, decided from its stored state alone, and how a
//! branch call's outcome changes that state (spec §6). Pure: time comes in as `now_ms`, no
//! I/O, so every rule is unit-tested without a server.
//!
//! ```text
//!  (none) --prepare--> prepared --submit--------------------------> submitted --forward work done--> succeed
//!  (none) --submit (saga, msg)------------------------------------> submitted
//!                      prepared --msg: timeout + queryPrepared OK--> submitted
//!                      prepared --msg: abort, or timeout + queryPrepared FAILURE--> failed
//!                      prepared --tcc/xa: abort, or timeout--> aborting
//!                                 submitted --saga: action FAILURE / timeout / retry_limit--> aborting
//!                                                     aborting --compensation work done--> failed
//! ```
//!
//! Each type's forward and backward rules live in its own file (`saga.rs`, `msg.rs`,
//! `phase2.rs` for tcc and xa); this file holds what they share.

use super::model::{BranchStatus, Op, TransRecord, TransStatus, TransType};
use super::{msg, phase2, saga};

/// Server defaults that a transaction's own options override (spec §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// `TimeoutToFail`, s: prepared tcc/xa/msg older than this time out.
    pub timeout_to_fail_s: i64,
    /// `RetryInterval`, s.
    pub retry_interval_s: i64,
    /// Cap of the doubling back-off, s (DTM has none).
    pub max_retry_interval_s: i64,
    /// `RequestTimeout`, s.
    pub request_timeout_s: i64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout_to_fail_s: 35,
            retry_interval_s: 10,
            max_retry_interval_s: 300,
            request_timeout_s: 3,
        }
    }
}

/// The next thing a processing round does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Call these branch ops (indexes into `branches`), concurrently; decide again after.
    Call(Vec<usize>),
    /// Ask a prepared msg's `query_prepared` URL whether its local transaction committed.
    QueryPrepared,
    /// Move to `to`; `reason` replaces the rollback reason when given. Decide again after.
    Transition {
        /// New status.
        to: TransStatus,
        /// New rollback reason, if any.
        reason: Option<String>,
    },
    /// Nothing to do before `at_ms` (a timeout or a msg delay to come).
    WaitUntil(i64),
    /// Nothing to do until a client acts (a prepared saga, which DTM also leaves alone).
    Idle,
    /// Finished.
    Done,
}

/// How a branch call (or queryPrepared) answered, classified per spec §4.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200.
    Success,
    /// 409, or `dtm_result` FAILURE: the text to keep as the reason.
    Failure(String),
    /// 425, or `dtm_result` ONGOING.
    Ongoing(String),
    /// Transport error, timeout, any other status.
    Error(String),
}

impl Outcome {
    /// Whether the op is done.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// The text of a non-success, for logs and `wait_result` answers.
    pub fn message(&self) -> &str {
        match self {
            Outcome::Success => "",
            Outcome::Failure(m) | Outcome::Ongoing(m) | Outcome::Error(m) => m,
        }
    }
}

/// The effective `timeout_to_fail`, ms; `None` = never (a saga with 0, spec §5.3).
pub fn timeout_ms(record: &TransRecord, defaults: &Defaults) -> Option<i64> {
    let own = record.trans.options.timeout_to_fail;
    if own > 0 {
        Some(own.saturating_mul(1000))
    } else if record.trans.trans_type == TransType::Saga {
        None
    } else {
        Some(defaults.timeout_to_fail_s.saturating_mul(1000))
    }
}

/// Whether the transaction has timed out (counted from creation, spec §5.3).
pub fn timed_out(record: &TransRecord, now_ms: i64, defaults: &Defaults) -> bool {
    timeout_ms(record, defaults).is_some_and(|t| now_ms - record.trans.create_time >= t)
}

/// The reason DTM writes for a timeout.
pub fn timeout_reason(record: &TransRecord, defaults: &Defaults) -> String {
    let secs = timeout_ms(record, defaults).unwrap_or(0) / 1000;
    format!("Timeout after {secs} seconds")
}

/// Decides the next step.
pub fn next(record: &TransRecord, now_ms: i64, defaults: &Defaults) -> Next {
    if record.trans.status.is_finished() {
        return Next::Done;
    }
    match record.trans.trans_type {
        TransType::Saga => saga::next(record, now_ms, defaults),
        TransType::Msg => msg::next(record, now_ms, defaults),
        TransType::Tcc | TransType::Xa => phase2::next(record, now_ms, defaults),
        // Not served: the API refuses to create one, so this only meets a record written by
        // a newer build. Leave it alone rather than guess.
        TransType::Workflow => Next::Idle,
    }
}

/// Applies a branch call's outcome to `record.branches[index]` at `now_ms`. Returns whether
/// the op changed (and so must be stored). A saga action that answered FAILURE becomes
/// `failed` and its text the rollback reason; every other op only ever becomes `succeed`:
/// a second phase cannot fail, it is retried (spec §4.2).
pub fn apply(record: &mut TransRecord, index: usize, outcome: &Outcome, now_ms: i64) -> bool {
    let Some(branch) = record.branches.get_mut(index) else {
        return false;
    };
    match outcome {
        Outcome::Success => {
            branch.finish(BranchStatus::Succeed, now_ms);
            true
        }
        Outcome::Failure(text)
            if record.trans.trans_type == TransType::Saga && branch.op == Op::Action =>
        {
            branch.finish(BranchStatus::Failed, now_ms);
            record.trans.rollback_reason =
                format!("url:{} return failed: {} FAILURE", branch.url, text.trim());
            true
        }
        _ => false,
    }
}

/// Indexes of the ops with `op`, in creation order, that are not done.
pub(super) fn pending(record: &TransRecord, op: Op) -> impl DoubleEndedIterator<Item = usize> + '_ {
    record
        .branches
        .iter()
        .enumerate()
        .filter(move |(_, b)| b.op == op && b.status == BranchStatus::Prepared)
        .map(|(i, _)| i)
}

#[cfg(test)]
pub(super) mod test_support {
    //! Records for the state-machine tests.
    use crate::dtm::model::{Branch, Op, Trans, TransOptions, TransRecord, TransStatus, TransType};

    /// A record of `trans_type` in `status`, created at t = 0.
    pub fn record(trans_type: TransType, status: TransStatus) -> TransRecord {
        TransRecord {
            trans: Trans {
                id: 1,
                gid: "g".into(),
                trans_type,
                status,
                protocol: String::new(),
                query_prepared: "http://q".into(),
                custom_data: String::new(),
                options: TransOptions::default(),
                rollback_reason: String::new(),
                result: String::new(),
                create_time: 0,
                update_time: 0,
                finish_time: 0,
                rollback_time: 0,
                next_cron_interval: 10,
                next_cron_time: 10_000,
                retry_count: 0,
                owner: String::new(),
                ext_data: String::new(),
            },
            branches: vec![],
        }
    }

    /// Adds an op.
    pub fn add(r: &mut TransRecord, branch_id: &str, op: Op) {
        r.branches.push(Branch::new(
            branch_id.into(),
            op,
            format!("http://b/{branch_id}/{op}"),
            b"{}".to_vec(),
            0,
        ));
    }
}
