//! Logging of what a fault multiplies. A phase-two failure is one event per branch per retry:
//! with an RM gone and thousands of branches waiting on it, a line each would bury the log
//! (one incident was 2,373 WARN lines in 5 s). Failures are instead counted per resource and
//! phase-two half, and each retry job's tick ends with one line per resource: how many
//! branch calls failed since the last line, and the oldest branch among them (the one waiting
//! longest; ids grow with time). The per-branch detail stays at `debug`.
//!
//! Mass timeouts get the same treatment in `recovery.rs` (one line per timeout tick).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use tracing::warn;

/// Which half of phase two failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Half {
    Commit,
    Rollback,
}

impl Half {
    fn name(self) -> &'static str {
        match self {
            Half::Commit => "commit",
            Half::Rollback => "rollback",
        }
    }
}

/// Failures of one resource and half since the last flush.
#[derive(Debug)]
struct Tally {
    failures: u64,
    oldest_branch: i64,
    oldest_xid: String,
    /// What the oldest branch's call ended with.
    outcome: String,
}

/// Counts phase-two failures until [`PhaseTwoFailures::flush`] logs them.
#[derive(Debug, Default)]
pub(crate) struct PhaseTwoFailures {
    tallies: Mutex<HashMap<(Half, Box<str>), Tally>>,
}

impl PhaseTwoFailures {
    /// Counts one failed (or unanswered) branch call.
    pub(crate) fn record(
        &self,
        half: Half,
        resource_id: &str,
        branch_id: i64,
        xid: &str,
        outcome: &dyn Debug,
    ) {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        match tallies.get_mut(&(half, resource_id.into())) {
            Some(t) => {
                t.failures += 1;
                if branch_id < t.oldest_branch {
                    t.oldest_branch = branch_id;
                    xid.clone_into(&mut t.oldest_xid);
                    t.outcome = format!("{outcome:?}");
                }
            }
            None => {
                tallies.insert(
                    (half, resource_id.into()),
                    Tally {
                        failures: 1,
                        oldest_branch: branch_id,
                        oldest_xid: xid.to_owned(),
                        outcome: format!("{outcome:?}"),
                    },
                );
            }
        }
    }

    /// Logs one line per resource and half counted since the last flush, and starts over.
    pub(crate) fn flush(&self) {
        let drained: Vec<((Half, Box<str>), Tally)> = {
            let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
            if tallies.is_empty() {
                return;
            }
            tallies.drain().collect()
        };
        for ((half, resource_id), t) in drained {
            warn!(
                resource_id = %resource_id,
                phase = half.name(),
                failures = t.failures,
                oldest_branch = t.oldest_branch,
                oldest_xid = %t.oldest_xid,
                outcome = %t.outcome,
                "phase two not done on a resource; will retry"
            );
        }
    }

    /// Failures counted and not yet logged, for tests.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> u64 {
        let tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        tallies.values().map(|t| t.failures).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_resource_and_keeps_the_oldest_branch() {
        let f = PhaseTwoFailures::default();
        f.record(Half::Rollback, "r1", 20, "x:20", &"NotConnected");
        f.record(Half::Rollback, "r1", 10, "x:10", &"NotConnected");
        f.record(Half::Rollback, "r2", 30, "x:30", &"Timeout");
        f.record(Half::Commit, "r1", 5, "x:5", &"Timeout");
        assert_eq!(f.pending(), 4);
        {
            let t = f.tallies.lock().unwrap();
            let r1 = &t[&(Half::Rollback, "r1".into())];
            assert_eq!(
                (r1.failures, r1.oldest_branch, &*r1.oldest_xid),
                (2, 10, "x:10")
            );
            assert_eq!(t.len(), 3);
        }
        f.flush();
        assert_eq!(f.pending(), 0);
    }
}
