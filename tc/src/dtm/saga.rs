//! Saga rules (spec §6.3): actions forward in step order (or as `custom_data.orders`
//! allow), and on abort the compensation of every step whose action may have run, in reverse.
//!
//! A step "may have run" when its action succeeded, failed (the failed step's own
//! compensation runs: it may have done part of its work), or was runnable when the saga
//! turned to aborting (its predecessors had all succeeded: it may be in flight or have run
//! before an error answer). Steps blocked behind predecessors never ran and are never
//! compensated.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::machine::{timed_out, timeout_reason, Defaults, Next};
use super::model::{BranchStatus, Op, TransRecord, TransStatus};

/// One saga step: indexes of its action and compensate ops in `branches`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    action: usize,
    compensate: Option<usize>,
}

/// `custom_data` of a saga: `{"concurrent": true, "orders": {"2": [0, 1]}}` (0-based steps).
#[derive(Debug, Default, Deserialize)]
struct Custom {
    #[serde(default)]
    concurrent: bool,
    #[serde(default)]
    orders: BTreeMap<String, Vec<usize>>,
}

/// How steps depend on each other.
#[derive(Debug)]
struct Plan {
    steps: Vec<Step>,
    concurrent: bool,
    /// `preds[i]`: steps that must succeed before step i starts (concurrent mode).
    preds: Vec<Vec<usize>>,
}

impl Plan {
    fn of(record: &TransRecord) -> Plan {
        let mut steps: Vec<Step> = Vec::new();
        let mut ids: Vec<&str> = Vec::new();
        let mut compensations: Vec<(String, usize)> = Vec::new();
        for (i, b) in record.branches.iter().enumerate() {
            match b.op {
                Op::Action => {
                    ids.push(&b.branch_id);
                    steps.push(Step {
                        action: i,
                        compensate: None,
                    });
                }
                Op::Compensate => compensations.push((b.branch_id.clone(), i)),
                _ => {}
            }
        }
        for (id, i) in compensations {
            if let Some(pos) = ids.iter().position(|s| *s == id) {
                if let Some(step) = steps.get_mut(pos) {
                    step.compensate = Some(i);
                }
            }
        }
        // Validated when the saga was accepted; a record that no longer parses runs
        // sequentially, the safe reading.
        let custom: Custom = serde_json::from_str(&record.trans.custom_data).unwrap_or_default();
        let mut preds = vec![Vec::new(); steps.len()];
        for (k, v) in custom.orders {
            if let (Ok(i), true) = (k.parse::<usize>(), true) {
                if let Some(p) = preds.get_mut(i) {
                    p.extend(v.into_iter().filter(|&j| j < steps.len() && j != i));
                }
            }
        }
        Plan {
            steps,
            concurrent: custom.concurrent,
            preds,
        }
    }

    fn action_status(&self, record: &TransRecord, step: usize) -> BranchStatus {
        self.steps
            .get(step)
            .and_then(|s| record.branches.get(s.action))
            .map_or(BranchStatus::Prepared, |b| b.status)
    }

    /// Whether every step that must precede `step` succeeded.
    fn unblocked(&self, record: &TransRecord, step: usize) -> bool {
        if self.concurrent {
            self.preds.get(step).is_none_or(|p| {
                p.iter()
                    .all(|&j| self.action_status(record, j) == BranchStatus::Succeed)
            })
        } else {
            (0..step).all(|j| self.action_status(record, j) == BranchStatus::Succeed)
        }
    }

    /// Whether step `i`'s action may have run (module doc).
    fn may_have_run(&self, record: &TransRecord, i: usize) -> bool {
        match self.action_status(record, i) {
            BranchStatus::Succeed | BranchStatus::Failed => true,
            BranchStatus::Prepared => self.unblocked(record, i),
        }
    }

    fn compensated(&self, record: &TransRecord, i: usize) -> bool {
        self.steps
            .get(i)
            .and_then(|s| s.compensate)
            .and_then(|c| record.branches.get(c))
            .is_none_or(|b| b.status == BranchStatus::Succeed)
    }
}

/// The saga's next step.
pub(super) fn next(record: &TransRecord, now_ms: i64, defaults: &Defaults) -> Next {
    let plan = Plan::of(record);
    match record.trans.status {
        TransStatus::Submitted => forward(record, &plan, now_ms, defaults),
        TransStatus::Aborting => backward(record, &plan),
        // DTM accepts a saga `prepare` and then leaves it alone until a submit.
        TransStatus::Prepared => Next::Idle,
        TransStatus::Succeed | TransStatus::Failed => Next::Done,
    }
}

fn abort(reason: String) -> Next {
    Next::Transition {
        to: TransStatus::Aborting,
        reason: Some(reason),
    }
}

fn forward(record: &TransRecord, plan: &Plan, now_ms: i64, defaults: &Defaults) -> Next {
    let n = plan.steps.len();
    if (0..n).any(|i| plan.action_status(record, i) == BranchStatus::Failed) {
        // The failing answer's text is already the reason (machine::apply).
        return Next::Transition {
            to: TransStatus::Aborting,
            reason: None,
        };
    }
    if (0..n).all(|i| plan.action_status(record, i) == BranchStatus::Succeed) {
        return Next::Transition {
            to: TransStatus::Succeed,
            reason: None,
        };
    }
    if timed_out(record, now_ms, defaults) {
        return abort(timeout_reason(record, defaults));
    }
    let limit = record.trans.options.retry_limit;
    if limit > 0 && record.trans.retry_count > limit {
        return abort(format!(
            "RetryCount is greater than RetryLimit: {} > {limit}",
            record.trans.retry_count
        ));
    }
    let runnable: Vec<usize> = (0..n)
        .filter(|&i| {
            plan.action_status(record, i) == BranchStatus::Prepared && plan.unblocked(record, i)
        })
        .filter_map(|i| plan.steps.get(i).map(|s| s.action))
        .collect();
    if plan.concurrent {
        Next::Call(runnable)
    } else {
        Next::Call(runnable.into_iter().take(1).collect())
    }
}

fn backward(record: &TransRecord, plan: &Plan) -> Next {
    let n = plan.steps.len();
    let needed: Vec<bool> = (0..n).map(|i| plan.may_have_run(record, i)).collect();
    let open = |i: usize| needed.get(i).copied().unwrap_or(false) && !plan.compensated(record, i);
    let pending: Vec<usize> = (0..n).filter(|&i| open(i)).collect();
    if pending.is_empty() {
        return Next::Transition {
            to: TransStatus::Failed,
            reason: None,
        };
    }
    let ready: Vec<usize> = if plan.concurrent {
        // Step i is compensated once every step that waited for it is rolled back.
        pending
            .iter()
            .copied()
            .filter(|&i| {
                (0..n).all(|j| !plan.preds.get(j).is_some_and(|p| p.contains(&i)) || !open(j))
            })
            .collect()
    } else {
        pending.last().copied().into_iter().collect()
    };
    Next::Call(
        ready
            .into_iter()
            .filter_map(|i| plan.steps.get(i).and_then(|s| s.compensate))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtm::machine::test_support::{add, record};
    use crate::dtm::machine::{apply, next as decide, Outcome};
    use crate::dtm::model::TransType;

    fn saga(steps: usize) -> TransRecord {
        let mut r = record(TransType::Saga, TransStatus::Submitted);
        for i in 1..=steps {
            let id = format!("{i:02}");
            add(&mut r, &id, Op::Compensate);
            add(&mut r, &id, Op::Action);
        }
        r
    }

    fn run(r: &mut TransRecord, answers: &mut dyn FnMut(&str, Op) -> Outcome) -> Vec<String> {
        let d = Defaults::default();
        let mut calls = Vec::new();
        for _ in 0..50 {
            match decide(r, 1, &d) {
                Next::Call(ops) => {
                    for i in ops {
                        let (id, op) = (r.branches[i].branch_id.clone(), r.branches[i].op);
                        calls.push(format!("{op}{id}"));
                        let o = answers(&id, op);
                        apply(r, i, &o, 1);
                    }
                }
                Next::Transition { to, reason } => {
                    r.trans.status = to;
                    if let Some(reason) = reason {
                        r.trans.rollback_reason = reason;
                    }
                }
                Next::Done => return calls,
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("no end: {calls:?}")
    }

    #[test]
    fn all_actions_in_order_then_succeed() {
        let mut r = saga(3);
        let calls = run(&mut r, &mut |_, _| Outcome::Success);
        assert_eq!(calls, ["action01", "action02", "action03"]);
        assert_eq!(r.trans.status, TransStatus::Succeed);
    }

    #[test]
    fn a_failed_step_is_compensated_with_the_ones_before_it_in_reverse() {
        // Spec §6.3's example: A1 ok, A2 FAILURE ⇒ C2, C1; A3/C3 never.
        let mut r = saga(3);
        let calls = run(&mut r, &mut |id, op| match (id, op) {
            ("02", Op::Action) => Outcome::Failure("{\"dtm_result\":\"FAILURE\"}".into()),
            _ => Outcome::Success,
        });
        assert_eq!(
            calls,
            ["action01", "action02", "compensate02", "compensate01"]
        );
        assert_eq!(r.trans.status, TransStatus::Failed);
        let st: Vec<_> = r.branches.iter().map(|b| b.status).collect();
        use BranchStatus::*;
        assert_eq!(st, [Succeed, Succeed, Succeed, Failed, Prepared, Prepared]);
        assert!(r.trans.rollback_reason.contains("FAILURE"));
    }

    #[test]
    fn an_erroring_action_stops_the_round_and_is_retried() {
        let mut r = saga(2);
        let d = Defaults::default();
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![1]));
        apply(&mut r, 1, &Outcome::Success, 1);
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![3]));
        assert!(!apply(&mut r, 3, &Outcome::Error("500".into()), 1));
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![3]), "same action again");
    }

    #[test]
    fn timeout_aborts_and_compensates_the_action_in_flight() {
        let mut r = saga(3);
        r.trans.options.timeout_to_fail = 5;
        let d = Defaults::default();
        apply(&mut r, 1, &Outcome::Success, 1);
        match decide(&r, 5_000, &d) {
            Next::Transition { to, reason } => {
                assert_eq!(to, TransStatus::Aborting);
                assert_eq!(reason.as_deref(), Some("Timeout after 5 seconds"));
            }
            other => panic!("{other:?}"),
        }
        r.trans.status = TransStatus::Aborting;
        // Step 2 was runnable (step 1 succeeded): it may have run, so C2 first, then C1.
        assert_eq!(decide(&r, 5_000, &d), Next::Call(vec![2]));
        apply(&mut r, 2, &Outcome::Success, 1);
        assert_eq!(decide(&r, 5_000, &d), Next::Call(vec![0]));
    }

    #[test]
    fn retry_limit_aborts_once_exceeded() {
        let mut r = saga(1);
        r.trans.options.retry_limit = 2;
        r.trans.retry_count = 3;
        assert!(matches!(
            decide(&r, 1, &Defaults::default()),
            Next::Transition { to: TransStatus::Aborting, reason: Some(m) } if m.contains("RetryLimit")
        ));
    }

    #[test]
    fn concurrent_orders_gate_starts_and_compensations() {
        // Step 2 waits for steps 0 and 1.
        let mut r = saga(3);
        r.trans.custom_data = r#"{"concurrent":true,"orders":{"2":[0,1]}}"#.into();
        let d = Defaults::default();
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![1, 3]));
        apply(&mut r, 1, &Outcome::Success, 1);
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![3]));
        apply(&mut r, 3, &Outcome::Success, 1);
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![5]));
        apply(&mut r, 5, &Outcome::Failure("no".into()), 1);
        r.trans.status = TransStatus::Aborting;
        // Step 2 first (it depends on 0 and 1); then 0 and 1 together.
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![4]));
        apply(&mut r, 4, &Outcome::Success, 1);
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![0, 2]));
    }

    #[test]
    fn concurrent_without_orders_starts_everything_and_skips_blocked_compensations() {
        let mut r = saga(2);
        r.trans.custom_data = r#"{"concurrent":true,"orders":{"1":[0]}}"#.into();
        let d = Defaults::default();
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![1]));
        apply(&mut r, 1, &Outcome::Failure("x".into()), 1);
        r.trans.status = TransStatus::Aborting;
        // Step 1 was blocked behind the failed step 0: never ran, never compensated.
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![0]));
    }
}
