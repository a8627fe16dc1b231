//! The invariants checked after the load has stopped and the TC has settled:
//!
//! - the money in both banks is exactly the opening total, and every account's balance is its
//!   opening plus the deltas of its ledger rows;
//! - a transfer known committed has its ledger row in both banks, one known rolled back in
//!   neither, and one the TC could no longer tell about (`finished`, or still unknown) in both
//!   or neither (then judged committed or rolled back by that); one wanted rolled back is
//!   never applied; no ledger row belongs to a transfer the journal does not know;
//! - no session and no row lock is left in the TC, and no `undo_log` row (status Normal) is
//!   left: an RM acknowledges a branch commit only once its undo log is deleted, so a worker
//!   killed at any moment leaves none behind for a commit the TC considers done.
//!
//! Every breach names the transfer, its XID, or the account.

use std::collections::HashMap;

use crate::bank::Snapshot;
use crate::journal::{Journal, Outcome, Want};
use crate::tc_state::Held;

/// The checker's findings.
#[derive(Debug, Default)]
pub struct Report {
    /// Transfers journaled.
    pub transfers: usize,
    /// Ended committed (known, or judged from the data).
    pub committed: usize,
    /// Ended rolled back (known, or judged from the data).
    pub rolled_back: usize,
    /// Whose first result was unknown and which were settled (by the TC or by the data).
    pub unknown_settled: usize,
    /// Every breach, in words.
    pub breaches: Vec<String>,
    /// `undo_log` rows (status Normal) left in both banks; each is a breach.
    pub undo_left: i64,
}

/// Checks the journal against both banks and what the TC still holds.
pub fn check(
    journal: &Journal,
    a: &Snapshot,
    b: &Snapshot,
    opening_total: i64,
    opening: i64,
    held: Held,
) -> Report {
    let mut r = Report {
        transfers: journal.transfers.len(),
        ..Report::default()
    };
    let total = a.total + b.total;
    if total != opening_total {
        r.breaches.push(format!(
            "total is {total}, opening total was {opening_total} (bank A {}, bank B {})",
            a.total, b.total
        ));
    }
    for (bank, s) in [("A", a), ("B", b)] {
        let mut moved: HashMap<i64, i64> = HashMap::new();
        for (account, delta) in s.ledger.values() {
            *moved.entry(*account).or_default() += delta;
        }
        for (account, balance) in &s.balances {
            let expect = opening + moved.get(account).copied().unwrap_or(0);
            if *balance != expect {
                r.breaches.push(format!(
                    "bank {bank} account {account}: balance {balance}, but opening plus its \
                     ledger is {expect}"
                ));
            }
        }
        for id in s.ledger.keys() {
            if !journal.transfers.contains_key(id) {
                r.breaches.push(format!(
                    "bank {bank} has a ledger row of transfer {id}, which no worker journaled"
                ));
            }
        }
    }
    for t in journal.transfers.values() {
        let leg_a = a.ledger.get(&t.id);
        let leg_b = b.ledger.get(&t.id);
        let right_a = leg_a.is_none_or(|&(acc, d)| acc == t.account_a && d == -t.amount);
        let right_b = leg_b.is_none_or(|&(acc, d)| acc == t.account_b && d == t.amount);
        if !right_a || !right_b {
            r.breaches.push(format!(
                "transfer {} ({}): a ledger row does not match the intent",
                t.id, t.xid
            ));
        }
        let applied = match (leg_a.is_some(), leg_b.is_some()) {
            (true, true) => Some(true),
            (false, false) => Some(false),
            _ => None,
        };
        let outcome = t.outcome();
        let name = format!("transfer {} ({}, wanted {})", t.id, t.xid, t.want);
        let Some(applied) = applied else {
            r.breaches.push(format!(
                "{name} is applied in bank {} only (outcome {outcome})",
                if leg_a.is_some() { "A" } else { "B" }
            ));
            continue;
        };
        if applied && t.want == Want::Rollback {
            r.breaches.push(format!(
                "{name} was never committed but is applied on both sides"
            ));
        }
        match outcome {
            Outcome::Committed if !applied => r.breaches.push(format!(
                "{name} is known committed but applied on neither side"
            )),
            Outcome::RolledBack if applied => r.breaches.push(format!(
                "{name} is known rolled back but applied on both sides"
            )),
            Outcome::Failed => r
                .breaches
                .push(format!("{name}: the TC reported a failed phase two")),
            _ => {}
        }
        if applied {
            r.committed += 1;
        } else {
            r.rolled_back += 1;
        }
        if t.was_unknown() {
            r.unknown_settled += 1;
        }
    }
    for (bank, s) in [("A", a), ("B", b)] {
        for (xid, n) in &s.undo_by_xid {
            r.undo_left += n;
            r.breaches
                .push(format!("bank {bank}: {n} undo_log rows of {xid} left"));
        }
    }
    if held.sessions > 0 || held.locks > 0 {
        r.breaches.push(format!(
            "the TC still holds {} sessions and {} row locks",
            held.sessions, held.locks
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Event;

    fn bank(balances: &[(i64, i64)], ledger: &[(i64, i64, i64)]) -> Snapshot {
        Snapshot {
            total: balances.iter().map(|b| b.1).sum(),
            balances: balances.iter().copied().collect(),
            ledger: ledger.iter().map(|&(t, a, d)| (t, (a, d))).collect(),
            undo: 0,
            undo_by_xid: HashMap::new(),
            markers: 0,
        }
    }

    fn journal(lines: &[&str]) -> Journal {
        let mut j = Journal::default();
        for l in lines {
            j.apply(Event::parse(l).unwrap());
        }
        j
    }

    #[test]
    fn consistent_run_passes() {
        let j = journal(&[
            "T 1 x:1:1 commit 0 0 5",
            "R 1 committed",
            "T 2 x:1:2 rollback 0 0 7",
            "R 2 rolled_back",
            "T 3 x:1:3 commit 0 0 1",
            "R 3 unknown",
            "S 3 finished",
        ]);
        let a = bank(&[(0, 94)], &[(1, 0, -5), (3, 0, -1)]);
        let b = bank(&[(0, 106)], &[(1, 0, 5), (3, 0, 1)]);
        let r = check(&j, &a, &b, 200, 100, Held::default());
        assert!(r.breaches.is_empty(), "{:?}", r.breaches);
        assert_eq!((r.committed, r.rolled_back, r.unknown_settled), (2, 1, 1));
    }

    #[test]
    fn half_applied_transfer_is_named() {
        let j = journal(&["T 1 x:1:1 commit 0 0 5", "R 1 unknown"]);
        let a = bank(&[(0, 95)], &[(1, 0, -5)]);
        let b = bank(&[(0, 100)], &[]);
        let r = check(&j, &a, &b, 200, 100, Held::default());
        assert!(
            r.breaches.iter().any(|m| m.contains("transfer 1 (x:1:1")),
            "{:?}",
            r.breaches
        );
        assert!(r.breaches.iter().any(|m| m.contains("total is 195")));
    }

    #[test]
    fn undo_row_of_a_committed_transfer_is_a_breach() {
        let j = journal(&["T 1 x:1:1 commit 0 0 5", "R 1 committed"]);
        let mut a = bank(&[(0, 95)], &[(1, 0, -5)]);
        a.undo_by_xid.insert("x:1:1".into(), 2);
        let b = bank(&[(0, 105)], &[(1, 0, 5)]);
        let r = check(&j, &a, &b, 200, 100, Held::default());
        assert_eq!(r.undo_left, 2);
        assert_eq!(r.breaches, vec!["bank A: 2 undo_log rows of x:1:1 left"]);
    }

    #[test]
    fn committed_but_missing_is_a_breach() {
        let j = journal(&["T 1 x:1:1 commit 0 0 5", "R 1 committed"]);
        let a = bank(&[(0, 100)], &[]);
        let b = bank(&[(0, 100)], &[]);
        let r = check(
            &j,
            &a,
            &b,
            200,
            100,
            Held {
                sessions: 1,
                locks: 0,
            },
        );
        assert_eq!(r.breaches.len(), 2, "{:?}", r.breaches);
    }
}
