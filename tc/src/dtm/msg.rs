//! Two-phase message rules (spec §6.4): a prepared msg waits for its submit, and once it has
//! timed out the server asks `query_prepared` whether the local transaction committed; a
//! submitted msg calls its actions (in order, or all at once with `concurrent`), retrying any
//! non-success, optionally after `custom_data.delay` seconds. There is no compensation.

use serde::Deserialize;

use super::machine::{pending, timed_out, timeout_ms, Defaults, Next};
use super::model::{Op, TransRecord, TransStatus};

/// `custom_data` of a msg: `{"delay": N}` seconds before the actions may run.
#[derive(Debug, Default, Deserialize)]
struct Custom {
    #[serde(default)]
    delay: i64,
}

/// The msg's next step.
pub(super) fn next(record: &TransRecord, now_ms: i64, defaults: &Defaults) -> Next {
    let t = &record.trans;
    match t.status {
        TransStatus::Prepared => {
            if timed_out(record, now_ms, defaults) {
                Next::QueryPrepared
            } else {
                let timeout = timeout_ms(record, defaults).unwrap_or(0);
                Next::WaitUntil(t.create_time.saturating_add(timeout))
            }
        }
        TransStatus::Submitted => {
            let delay = serde_json::from_str::<Custom>(&t.custom_data)
                .map(|c| c.delay)
                .unwrap_or(0);
            let start = t.create_time.saturating_add(delay.saturating_mul(1000));
            if delay > 0 && now_ms < start {
                return Next::WaitUntil(start);
            }
            let mut todo = pending(record, Op::Action);
            match (t.options.concurrent, todo.next()) {
                (_, None) => Next::Transition {
                    to: TransStatus::Succeed,
                    reason: None,
                },
                (false, Some(first)) => Next::Call(vec![first]),
                (true, Some(first)) => Next::Call(std::iter::once(first).chain(todo).collect()),
            }
        }
        // Not reachable for a msg (abort goes straight to failed); finish it.
        TransStatus::Aborting => Next::Transition {
            to: TransStatus::Failed,
            reason: None,
        },
        TransStatus::Succeed | TransStatus::Failed => Next::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtm::machine::test_support::{add, record};
    use crate::dtm::machine::{apply, next as decide, Outcome};
    use crate::dtm::model::TransType;

    #[test]
    fn prepared_waits_for_its_timeout_then_asks_query_prepared() {
        let r = record(TransType::Msg, TransStatus::Prepared);
        let d = Defaults::default();
        assert_eq!(decide(&r, 1_000, &d), Next::WaitUntil(35_000));
        assert_eq!(decide(&r, 35_000, &d), Next::QueryPrepared);
    }

    #[test]
    fn submitted_calls_actions_in_order_and_retries_failures() {
        let mut r = record(TransType::Msg, TransStatus::Submitted);
        add(&mut r, "01", Op::Action);
        add(&mut r, "02", Op::Action);
        let d = Defaults::default();
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![0]));
        assert!(
            !apply(&mut r, 0, &Outcome::Failure("no".into()), 1),
            "not final for a msg"
        );
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![0]));
        apply(&mut r, 0, &Outcome::Success, 1);
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![1]));
        apply(&mut r, 1, &Outcome::Success, 1);
        assert!(matches!(
            decide(&r, 1, &d),
            Next::Transition {
                to: TransStatus::Succeed,
                ..
            }
        ));
    }

    #[test]
    fn concurrent_calls_all_and_delay_holds_them_back() {
        let mut r = record(TransType::Msg, TransStatus::Submitted);
        add(&mut r, "01", Op::Action);
        add(&mut r, "02", Op::Action);
        r.trans.options.concurrent = true;
        r.trans.custom_data = r#"{"delay":5}"#.into();
        let d = Defaults::default();
        assert_eq!(decide(&r, 1_000, &d), Next::WaitUntil(5_000));
        assert_eq!(decide(&r, 5_000, &d), Next::Call(vec![0, 1]));
    }
}
