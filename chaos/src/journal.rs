//! The transfer journal: the lines a worker prints on stdout for each transfer (its intent, then
//! what it knows of the outcome) and the orchestrator's record built from them.
//!
//! A worker writes a transfer's intent line *before* its first leg touches a bank, so every
//! transfer that may have changed data is in the journal even if the worker is killed right
//! after. Grammar, one event per line, fields separated by single spaces:
//!
//! ```text
//! T <id> <xid> <want> <account_a> <account_b> <amount>   intent (after begin, before the legs)
//! R <id> <outcome> [reason...]                            what the TM's commit/rollback said
//! S <id> <outcome>                                        an unknown outcome, settled later
//! D                                                       the worker stopped its load
//! want    = commit | rollback
//! outcome = committed | rolled_back | unknown | finished | failed
//! ```
//!
//! `finished` is a settlement the TC could not confirm: it answers `Finished` for an XID it no
//! longer holds, whatever the outcome was. Such a transfer is judged from the data (both legs
//! or neither) by the checker.

use std::collections::BTreeMap;
use std::fmt;

/// What the worker wanted for a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Both legs, then commit.
    Commit,
    /// Both legs, then roll back on purpose.
    Rollback,
}

impl Want {
    fn parse(s: &str) -> Option<Want> {
        match s {
            "commit" => Some(Want::Commit),
            "rollback" => Some(Want::Rollback),
            _ => None,
        }
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Want::Commit => "commit",
            Want::Rollback => "rollback",
        })
    }
}

/// What is known of a transfer's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The TC decided commit.
    Committed,
    /// The TC decided (or will decide) rollback, or nothing was applied.
    RolledBack,
    /// The request's answer was lost; to be settled.
    Unknown,
    /// Settled as far as the TC can say: it no longer holds the XID. Judged from the data.
    Finished,
    /// The TC reported a failed phase two (needs manual repair): a breach.
    Failed,
}

impl Outcome {
    /// Parses the journal word.
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "committed" => Some(Outcome::Committed),
            "rolled_back" => Some(Outcome::RolledBack),
            "unknown" => Some(Outcome::Unknown),
            "finished" => Some(Outcome::Finished),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Committed => "committed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Unknown => "unknown",
            Outcome::Finished => "finished",
            Outcome::Failed => "failed",
        })
    }
}

/// One transfer as the journal knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Unique over the run (the worker's generation times 10^9 plus a sequence number).
    pub id: i64,
    /// Its global transaction.
    pub xid: String,
    /// What the worker wanted.
    pub want: Want,
    /// Account in bank A (debited `amount`).
    pub account_a: i64,
    /// Account in bank B (credited `amount`).
    pub account_b: i64,
    /// Amount moved from A to B.
    pub amount: i64,
    /// First known result (`None`: the worker died before it learnt anything).
    pub result: Option<Outcome>,
    /// A later settlement of an unknown result.
    pub settled: Option<Outcome>,
}

impl Transfer {
    /// The best knowledge: the settlement if any, else the result, else unknown.
    pub fn outcome(&self) -> Outcome {
        self.settled.or(self.result).unwrap_or(Outcome::Unknown)
    }

    /// Whether its first result was not known (the worker died, or an answer was lost).
    pub fn was_unknown(&self) -> bool {
        matches!(self.result, None | Some(Outcome::Unknown))
    }
}

/// A parsed journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `T`: intent.
    Intent(Transfer),
    /// `R`: result.
    Result(i64, Outcome),
    /// `S`: settlement.
    Settled(i64, Outcome),
    /// `D`: the worker stopped its load.
    Done,
}

impl Event {
    /// Parses one line; `None` for anything else (workers print nothing else on stdout).
    pub fn parse(line: &str) -> Option<Event> {
        let mut f = line.split(' ');
        match f.next()? {
            "T" => {
                let id = f.next()?.parse().ok()?;
                let xid = f.next()?.to_owned();
                let want = Want::parse(f.next()?)?;
                let account_a = f.next()?.parse().ok()?;
                let account_b = f.next()?.parse().ok()?;
                let amount = f.next()?.parse().ok()?;
                Some(Event::Intent(Transfer {
                    id,
                    xid,
                    want,
                    account_a,
                    account_b,
                    amount,
                    result: None,
                    settled: None,
                }))
            }
            "R" => Some(Event::Result(
                f.next()?.parse().ok()?,
                Outcome::parse(f.next()?)?,
            )),
            "S" => Some(Event::Settled(
                f.next()?.parse().ok()?,
                Outcome::parse(f.next()?)?,
            )),
            "D" => Some(Event::Done),
            _ => None,
        }
    }
}

/// Formats an intent line.
pub fn intent_line(t: &Transfer) -> String {
    format!(
        "T {} {} {} {} {} {}",
        t.id, t.xid, t.want, t.account_a, t.account_b, t.amount
    )
}

/// Every transfer of the run, by id.
#[derive(Debug, Default)]
pub struct Journal {
    /// Transfers by id (ordered, so reports list them in a stable order).
    pub transfers: BTreeMap<i64, Transfer>,
    /// Workers that printed `D`.
    pub done: usize,
}

impl Journal {
    /// Applies one event; events about unknown ids are ignored (they cannot happen: the
    /// intent is printed first on the same pipe).
    pub fn apply(&mut self, e: Event) {
        match e {
            Event::Intent(t) => {
                self.transfers.insert(t.id, t);
            }
            Event::Result(id, o) => {
                if let Some(t) = self.transfers.get_mut(&id) {
                    t.result = Some(o);
                }
            }
            Event::Settled(id, o) => {
                if let Some(t) = self.transfers.get_mut(&id) {
                    t.settled = Some(o);
                }
            }
            Event::Done => self.done += 1,
        }
    }

    /// Counts by best-known outcome: (committed, rolled back, other).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for t in self.transfers.values() {
            match t.outcome() {
                Outcome::Committed => c.0 += 1,
                Outcome::RolledBack => c.1 += 1,
                _ => c.2 += 1,
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_round_trips() {
        let t = Transfer {
            id: 1_000_000_007,
            xid: "127.0.0.1:8091:42".into(),
            want: Want::Rollback,
            account_a: 3,
            account_b: 9,
            amount: 17,
            result: None,
            settled: None,
        };
        assert_eq!(Event::parse(&intent_line(&t)), Some(Event::Intent(t)));
    }

    #[test]
    fn settlement_wins_over_result() {
        let mut j = Journal::default();
        j.apply(Event::parse("T 1 x:1:1 commit 1 2 3").unwrap());
        j.apply(Event::parse("R 1 unknown lost").unwrap());
        assert_eq!(j.transfers[&1].outcome(), Outcome::Unknown);
        j.apply(Event::parse("S 1 committed").unwrap());
        assert_eq!(j.transfers[&1].outcome(), Outcome::Committed);
        assert!(j.transfers[&1].was_unknown());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Event::parse("T 1 x commit"), None);
        assert_eq!(Event::parse("hello"), None);
        assert_eq!(Event::parse("R 1 maybe"), None);
    }
}
