//! TCC and XA rules (spec §6.5, §6.6): the client runs phase one and registers branches
//! while the transaction is prepared; the server runs phase two. TCC confirms or cancels in
//! reverse registration order, XA commits or rolls back in registration order, one op at a
//! time; the first op that does not succeed ends the round and is retried. A prepared
//! transaction that times out (its initiator died) is aborted.

use super::machine::{pending, timed_out, timeout_ms, timeout_reason, Defaults, Next};
use super::model::{Op, TransRecord, TransStatus, TransType};

/// The tcc/xa transaction's next step.
pub(super) fn next(record: &TransRecord, now_ms: i64, defaults: &Defaults) -> Next {
    let xa = record.trans.trans_type == TransType::Xa;
    let (op, done) = match record.trans.status {
        TransStatus::Prepared => {
            return if timed_out(record, now_ms, defaults) {
                Next::Transition {
                    to: TransStatus::Aborting,
                    reason: Some(timeout_reason(record, defaults)),
                }
            } else {
                let timeout = timeout_ms(record, defaults).unwrap_or(0);
                Next::WaitUntil(record.trans.create_time.saturating_add(timeout))
            };
        }
        TransStatus::Submitted if xa => (Op::Commit, TransStatus::Succeed),
        TransStatus::Submitted => (Op::Confirm, TransStatus::Succeed),
        TransStatus::Aborting if xa => (Op::Rollback, TransStatus::Failed),
        TransStatus::Aborting => (Op::Cancel, TransStatus::Failed),
        TransStatus::Succeed | TransStatus::Failed => return Next::Done,
    };
    let mut todo = pending(record, op);
    let first = if xa { todo.next() } else { todo.next_back() };
    match first {
        Some(i) => Next::Call(vec![i]),
        None => Next::Transition {
            to: done,
            reason: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtm::machine::test_support::{add, record};
    use crate::dtm::machine::{apply, next as decide, Outcome};

    fn registered(ty: TransType, status: TransStatus, ops: [Op; 2]) -> TransRecord {
        let mut r = record(ty, status);
        for id in ["01", "02"] {
            add(&mut r, id, ops[0]);
            add(&mut r, id, ops[1]);
        }
        r
    }

    #[test]
    fn tcc_confirms_in_reverse_registration_order() {
        let mut r = registered(
            TransType::Tcc,
            TransStatus::Submitted,
            [Op::Cancel, Op::Confirm],
        );
        let d = Defaults::default();
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![3]));
        assert!(
            !apply(&mut r, 3, &Outcome::Failure("x".into()), 1),
            "confirm cannot fail"
        );
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![3]));
        apply(&mut r, 3, &Outcome::Success, 1);
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
    fn tcc_cancels_in_reverse_and_times_out_when_prepared() {
        let mut r = registered(
            TransType::Tcc,
            TransStatus::Prepared,
            [Op::Cancel, Op::Confirm],
        );
        let d = Defaults::default();
        assert_eq!(decide(&r, 34_999, &d), Next::WaitUntil(35_000));
        assert_eq!(
            decide(&r, 35_000, &d),
            Next::Transition {
                to: TransStatus::Aborting,
                reason: Some("Timeout after 35 seconds".into())
            }
        );
        r.trans.status = TransStatus::Aborting;
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![2]));
        apply(&mut r, 2, &Outcome::Success, 1);
        assert_eq!(decide(&r, 1, &d), Next::Call(vec![0]));
    }

    #[test]
    fn xa_commits_and_rolls_back_in_registration_order() {
        let r = registered(
            TransType::Xa,
            TransStatus::Submitted,
            [Op::Rollback, Op::Commit],
        );
        assert_eq!(decide(&r, 1, &Defaults::default()), Next::Call(vec![1]));
        let mut r = registered(
            TransType::Xa,
            TransStatus::Aborting,
            [Op::Rollback, Op::Commit],
        );
        r.trans.options.timeout_to_fail = 1;
        assert_eq!(decide(&r, 1, &Defaults::default()), Next::Call(vec![0]));
    }
}
