//! DTM transactions as the engine keeps them and the stores persist them: the global row
//! ([`Trans`]) and its branch operations ([`Branch`]), with DTM's names (spec §1, §2.3, §10).
//!
//! Times are ms since the Unix epoch (0 = not set); intervals are seconds, as on DTM's wire.
//! How these rows are shown by `query` lives in `api/view.rs`, not here.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest gid accepted (DTM's column is 128 characters; XA clients embed it in a 64-byte
/// gtrid together with the branch id, which is their concern).
pub const MAX_GID_LEN: usize = 128;
/// Longest branch id accepted (DTM's column size).
pub const MAX_BRANCH_ID_LEN: usize = 128;

/// `trans_type`: fixed when the transaction is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransType {
    /// Server-driven steps with compensations (§6.3).
    Saga,
    /// Two-phase message (§6.4).
    Msg,
    /// Try/confirm/cancel (§6.5).
    Tcc,
    /// XA phase two driven by the server (§6.6).
    Xa,
    /// Client-driven workflow (§6.7); recognised, not served yet.
    Workflow,
}

/// Global `status` (§6.1). `Succeed` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransStatus {
    /// Created by `prepare`; tcc/xa branches may register.
    Prepared,
    /// Forward work (actions, confirms, commits) under way.
    Submitted,
    /// Compensation work (compensates, cancels, rollbacks) under way.
    Aborting,
    /// Final: all forward work done.
    Succeed,
    /// Final: rolled back (or msg abandoned).
    Failed,
}

/// Branch op `status` (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BranchStatus {
    /// Not done yet.
    Prepared,
    /// The call answered success.
    Succeed,
    /// A saga action answered FAILURE.
    Failed,
}

/// What a branch call is (`op`, §1). Stored and sent as DTM's lowercase words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Saga/msg forward step, XA local part.
    Action,
    /// Saga compensation.
    Compensate,
    /// TCC first phase (called by the client, never stored).
    Try,
    /// TCC second phase, forward.
    Confirm,
    /// TCC second phase, backward.
    Cancel,
    /// XA second phase, forward.
    Commit,
    /// XA second phase, backward.
    Rollback,
    /// msg queryPrepared and the producer's barrier.
    Msg,
}

macro_rules! words {
    ($ty:ident { $($variant:ident = $word:literal),* $(,)? }) => {
        impl $ty {
            /// DTM's word for it.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $word),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok($ty::$variant),)*
                    _ => Err(UnknownWord { kind: stringify!($ty), word: s.to_owned() }),
                }
            }
        }
    };
}

words!(TransType { Saga = "saga", Msg = "msg", Tcc = "tcc", Xa = "xa", Workflow = "workflow" });
words!(TransStatus {
    Prepared = "prepared",
    Submitted = "submitted",
    Aborting = "aborting",
    Succeed = "succeed",
    Failed = "failed",
});
words!(BranchStatus { Prepared = "prepared", Succeed = "succeed", Failed = "failed" });
words!(Op {
    Action = "action",
    Compensate = "compensate",
    Try = "try",
    Confirm = "confirm",
    Cancel = "cancel",
    Commit = "commit",
    Rollback = "rollback",
    Msg = "msg",
});

/// A word that is not one of DTM's for that kind (status, type, op).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {word:?}")]
pub struct UnknownWord {
    /// Which kind of word was expected.
    pub kind: &'static str,
    /// What was given.
    pub word: String,
}

impl TransStatus {
    /// `succeed` or `failed`: nothing changes any more.
    pub fn is_finished(self) -> bool {
        matches!(self, TransStatus::Succeed | TransStatus::Failed)
    }
}

/// Per-transaction options (§2.3, §7), as given by the client. 0 / empty = server default.
/// Missing fields read as defaults, so options stored by an older build stay readable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransOptions {
    /// `wait_result`: submit/abort answer after one processing round.
    pub wait_result: bool,
    /// `timeout_to_fail`, s.
    pub timeout_to_fail: i64,
    /// `request_timeout`, s: HTTP timeout of each branch call.
    pub request_timeout: i64,
    /// `retry_interval`, s: base of the retry schedule.
    pub retry_interval: i64,
    /// `retry_limit`: saga actions that may come back not-done before the saga aborts.
    pub retry_limit: i64,
    /// `branch_headers`: extra headers on every branch call.
    pub branch_headers: BTreeMap<String, String>,
    /// `concurrent`: msg actions in parallel (saga reads `custom_data` instead).
    pub concurrent: bool,
}

/// The global row of one DTM transaction (DTM's `trans_global`, plus `retry_count`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trans {
    /// Store-assigned sequence number (`id` in `query`, the cursor of `all`); 0 before the
    /// store assigned it.
    pub id: i64,
    /// Client-chosen global id.
    pub gid: String,
    /// Fixed at creation.
    pub trans_type: TransType,
    /// Current status.
    pub status: TransStatus,
    /// `""`/`http`, `grpc`, `json-rpc`: how branches are called.
    pub protocol: String,
    /// msg: URL asked whether the local transaction committed.
    pub query_prepared: String,
    /// Verbatim `custom_data` (saga orders, msg delay).
    pub custom_data: String,
    /// The client's options.
    pub options: TransOptions,
    /// Why it is rolling back / rolled back.
    pub rollback_reason: String,
    /// `result` (workflow); kept verbatim.
    pub result: String,
    /// ms since the epoch.
    pub create_time: i64,
    /// ms since the epoch.
    pub update_time: i64,
    /// When it reached `succeed`/`failed`, ms; 0 = not yet.
    pub finish_time: i64,
    /// When it turned to `aborting`/`failed`, ms; 0 = not.
    pub rollback_time: i64,
    /// Current retry interval, s (§5.1).
    pub next_cron_interval: i64,
    /// When the server looks at it next, ms.
    pub next_cron_time: i64,
    /// Branch calls that came back not-done (error or ongoing) so far; shown in `query`.
    pub retry_count: i64,
    /// Which TC drives it (shared store only; empty otherwise).
    pub owner: String,
    /// Per-transaction extras; empty for HTTP clients today.
    pub ext_data: String,
}

/// One branch operation (DTM's `trans_branch_op`): the unit the server calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    /// `"01"`, `"02"`, … (saga/msg) or the client's id (tcc/xa).
    pub branch_id: String,
    /// What the call is.
    pub op: Op,
    /// Where to call; empty = success without a call.
    pub url: String,
    /// The body sent, byte for byte.
    pub bin_data: Vec<u8>,
    /// Current status.
    pub status: BranchStatus,
    /// ms since the epoch.
    pub create_time: i64,
    /// ms since the epoch.
    pub update_time: i64,
    /// When it succeeded or failed, ms; 0 = not yet.
    pub finish_time: i64,
    /// When a compensating op (compensate/cancel/rollback) finished, ms; 0 = not.
    pub rollback_time: i64,
}

/// A transaction with its branch ops in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransRecord {
    /// The global row.
    pub trans: Trans,
    /// Branch ops, oldest first.
    pub branches: Vec<Branch>,
}

impl TransRecord {
    /// Index of the op (`branch_id`, `op`), if stored.
    pub fn find(&self, branch_id: &str, op: Op) -> Option<usize> {
        self.branches
            .iter()
            .position(|b| b.op == op && b.branch_id == branch_id)
    }
}

impl Branch {
    /// A new op in `prepared`, created at `now_ms`.
    pub fn new(branch_id: String, op: Op, url: String, bin_data: Vec<u8>, now_ms: i64) -> Self {
        Branch {
            branch_id,
            op,
            url,
            bin_data,
            status: BranchStatus::Prepared,
            create_time: now_ms,
            update_time: now_ms,
            finish_time: 0,
            rollback_time: 0,
        }
    }

    /// Records the op's outcome at `now_ms` (the times `query` shows follow DTM's columns).
    pub fn finish(&mut self, status: BranchStatus, now_ms: i64) {
        self.status = status;
        self.update_time = now_ms;
        self.finish_time = now_ms;
        if matches!(self.op, Op::Compensate | Op::Cancel | Op::Rollback) {
            self.rollback_time = now_ms;
        }
    }
}

/// A branch op's new status, as the engine hands it to a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchChange {
    /// Which op: branch id …
    pub branch_id: String,
    /// … and op.
    pub op: Op,
    /// Its new status.
    pub status: BranchStatus,
    /// When, ms (update and finish time).
    pub time_ms: i64,
}

impl BranchChange {
    /// Applies the change to `record`; `false` if the op is not there.
    pub fn apply(&self, record: &mut TransRecord) -> bool {
        match record.find(&self.branch_id, self.op) {
            Some(i) => match record.branches.get_mut(i) {
                Some(b) => {
                    b.finish(self.status, self.time_ms);
                    true
                }
                None => false,
            },
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_is_an_error() {
        for t in [
            TransType::Saga,
            TransType::Msg,
            TransType::Tcc,
            TransType::Xa,
            TransType::Workflow,
        ] {
            assert_eq!(t.as_str().parse::<TransType>(), Ok(t));
        }
        let e = "sagas".parse::<TransType>().unwrap_err();
        assert_eq!(e.to_string(), "unknown TransType \"sagas\"");
        assert_eq!(
            serde_json::to_string(&TransStatus::Succeed).unwrap(),
            "\"succeed\""
        );
        assert_eq!(Op::Compensate.to_string(), "compensate");
    }

    #[test]
    fn finishing_a_compensating_op_sets_its_rollback_time() {
        let mut b = Branch::new("01".into(), Op::Compensate, "http://x".into(), vec![], 5);
        b.finish(BranchStatus::Succeed, 9);
        assert_eq!((b.finish_time, b.rollback_time, b.update_time), (9, 9, 9));
        let mut a = Branch::new("01".into(), Op::Action, "http://x".into(), vec![], 5);
        a.finish(BranchStatus::Failed, 9);
        assert_eq!((a.finish_time, a.rollback_time), (9, 0));
    }
}
