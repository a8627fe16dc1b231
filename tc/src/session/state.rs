//! The global transaction lifecycle as pure functions: status transitions, timeout and retry
//! deadlines, and retry back-off. Time always comes in as `now` (ms), so all of it is tested
//! without clocks or sleeps.
//!
//! ```text
//!                         TM GlobalBegin
//!                               |
//!                               v
//!        +-------------------- Begin ------------------------+
//!        | TM commit            | TM rollback                | timeout job
//!        v                      v                            v
//!   AT-only: AsyncCommitting   Rollbacking            TimeoutRollbacking
//!   else:    Committing         |  retryable failure         |  retryable failure
//!        |   |                  v                            v
//!        |   | retryable   RollbackRetrying        TimeoutRollbackRetrying
//!        |   v                  |                            |
//!        | CommitRetrying       | all branches undone        | all branches undone
//!        |   |                  v                            v
//!        |   |              Rollbacked                TimeoutRollbacked
//!        |   |              (unretryable: RollbackFailed / TimeoutRollbackFailed,
//!        |   |               kept visible with the locks of branches not undone)
//!        v   v
//!     all branches done -> Committed      (non-async unretryable: CommitFailed)
//!
//!   Committed / CommitFailed / Rollbacked / TimeoutRollbacked: the session is removed, and
//!   later queries answer Finished.
//! ```
//!
//! Departures from Seata 1.2: commit goes from Begin straight to AsyncCommitting (1.2 passes
//! through Committing, which costs a second store write and means nothing to anyone), and an
//! AsyncCommitting session never becomes CommitFailed (its AT branches are already committed
//! locally; see the coordinator).

use seata_protocol::GlobalStatus;
use thiserror::Error;

/// Something that moves a global transaction's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The TM asked to commit; `asynchronous` when no branch is TCC or XA.
    Commit {
        /// Commit the branches in the background (AT only).
        asynchronous: bool,
    },
    /// The TM asked to roll back.
    Rollback,
    /// The timeout job found the transaction past its timeout.
    Timeout,
    /// A branch's phase two failed in a way worth retrying.
    PhaseTwoRetryable,
    /// A branch's phase two failed for good.
    PhaseTwoUnretryable,
    /// Every branch finished phase two.
    PhaseTwoDone,
}

/// A move the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{event:?} is not allowed in status {from}")]
pub struct IllegalMove {
    /// Status before.
    pub from: GlobalStatus,
    /// The event.
    pub event: Event,
}

/// The status after `event` in status `from`.
pub fn transition(from: GlobalStatus, event: Event) -> Result<GlobalStatus, IllegalMove> {
    use GlobalStatus as S;
    let to = match (from, event) {
        (S::Begin, Event::Commit { asynchronous: true }) => S::AsyncCommitting,
        (
            S::Begin,
            Event::Commit {
                asynchronous: false,
            },
        ) => S::Committing,
        (S::Begin, Event::Rollback) => S::Rollbacking,
        (S::Begin, Event::Timeout) => S::TimeoutRollbacking,

        (S::Committing | S::CommitRetrying, Event::PhaseTwoRetryable) => S::CommitRetrying,
        (S::AsyncCommitting, Event::PhaseTwoRetryable) => S::AsyncCommitting,
        (S::Rollbacking | S::RollbackRetrying, Event::PhaseTwoRetryable) => S::RollbackRetrying,
        (S::TimeoutRollbacking | S::TimeoutRollbackRetrying, Event::PhaseTwoRetryable) => {
            S::TimeoutRollbackRetrying
        }

        (S::Committing | S::CommitRetrying, Event::PhaseTwoUnretryable) => S::CommitFailed,
        (S::Rollbacking | S::RollbackRetrying, Event::PhaseTwoUnretryable) => S::RollbackFailed,
        (S::TimeoutRollbacking | S::TimeoutRollbackRetrying, Event::PhaseTwoUnretryable) => {
            S::TimeoutRollbackFailed
        }

        (S::Committing | S::CommitRetrying | S::AsyncCommitting, Event::PhaseTwoDone) => {
            S::Committed
        }
        (S::Rollbacking | S::RollbackRetrying, Event::PhaseTwoDone) => S::Rollbacked,
        (S::TimeoutRollbacking | S::TimeoutRollbackRetrying, Event::PhaseTwoDone) => {
            S::TimeoutRollbacked
        }
        _ => return Err(IllegalMove { from, event }),
    };
    Ok(to)
}

/// Which phase two a status belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still in phase one.
    Open,
    /// Committing (sync or async).
    Commit,
    /// Rolling back (TM or timeout).
    Rollback,
    /// Final: nothing more to do.
    Done,
}

/// The phase of a status.
pub fn phase_of(status: GlobalStatus) -> Phase {
    use GlobalStatus as S;
    match status {
        S::Begin | S::UnKnown => Phase::Open,
        S::Committing | S::CommitRetrying | S::AsyncCommitting => Phase::Commit,
        S::Rollbacking
        | S::RollbackRetrying
        | S::TimeoutRollbacking
        | S::TimeoutRollbackRetrying => Phase::Rollback,
        _ => Phase::Done,
    }
}

/// Seata's "Begin sessions past their timeout": `now − begin > timeout`.
pub fn is_timed_out(begin_time_ms: i64, timeout_ms: i32, now_ms: i64) -> bool {
    now_ms.saturating_sub(begin_time_ms) > i64::from(timeout_ms)
}

/// Seata's retry deadline (`server.max*RetryTimeout`), measured from the begin time;
/// a negative limit means retry forever.
pub fn retry_expired(begin_time_ms: i64, max_retry_timeout_ms: i64, now_ms: i64) -> bool {
    max_retry_timeout_ms >= 0 && now_ms.saturating_sub(begin_time_ms) > max_retry_timeout_ms
}

/// Longest wait between two retries of one session.
pub const MAX_BACKOFF_MS: u32 = 30_000;

/// When a session in a retry queue may be tried next. Seata retries every session every
/// period; an RM that is gone for hours would then cost a request per branch per second, so
/// the wait doubles per failure up to [`MAX_BACKOFF_MS`] and drops back to zero as soon as an
/// RM registers one of the session's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    /// Earliest time of the next try, ms.
    pub next_at_ms: i64,
    /// Wait after the next failure, ms (0: not failed yet).
    pub delay_ms: u32,
}

impl Backoff {
    /// Due for a try at `now`.
    pub fn is_due(&self, now_ms: i64) -> bool {
        now_ms >= self.next_at_ms
    }

    /// A try failed at `now`; `base_ms` is the job period.
    pub fn failed(&mut self, now_ms: i64, base_ms: u32) {
        let delay = if self.delay_ms == 0 {
            base_ms.max(1)
        } else {
            self.delay_ms
        };
        self.next_at_ms = now_ms.saturating_add(i64::from(delay));
        self.delay_ms = delay.saturating_mul(2).min(MAX_BACKOFF_MS);
    }

    /// Try again at once (an RM for one of the session's resources is back).
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GlobalStatus as S;

    #[test]
    fn begin_moves_to_each_phase_two() {
        assert_eq!(
            transition(S::Begin, Event::Commit { asynchronous: true }),
            Ok(S::AsyncCommitting)
        );
        assert_eq!(
            transition(
                S::Begin,
                Event::Commit {
                    asynchronous: false
                }
            ),
            Ok(S::Committing)
        );
        assert_eq!(transition(S::Begin, Event::Rollback), Ok(S::Rollbacking));
        assert_eq!(
            transition(S::Begin, Event::Timeout),
            Ok(S::TimeoutRollbacking)
        );
    }

    #[test]
    fn timeout_flavour_is_kept_through_retries_and_ends() {
        let s = transition(S::TimeoutRollbacking, Event::PhaseTwoRetryable).unwrap();
        assert_eq!(s, S::TimeoutRollbackRetrying);
        assert_eq!(transition(s, Event::PhaseTwoDone), Ok(S::TimeoutRollbacked));
        assert_eq!(
            transition(s, Event::PhaseTwoUnretryable),
            Ok(S::TimeoutRollbackFailed)
        );
        assert_eq!(
            transition(S::RollbackRetrying, Event::PhaseTwoDone),
            Ok(S::Rollbacked)
        );
    }

    #[test]
    fn illegal_moves_are_typed_errors() {
        let e = transition(S::Rollbacking, Event::Commit { asynchronous: true }).unwrap_err();
        assert_eq!(e.from, S::Rollbacking);
        assert!(transition(S::Committed, Event::PhaseTwoDone).is_err());
        assert!(transition(S::AsyncCommitting, Event::PhaseTwoUnretryable).is_err());
        assert!(transition(S::Begin, Event::PhaseTwoDone).is_err());
    }

    #[test]
    fn every_phase_two_status_has_a_way_out() {
        for s in S::ALL {
            if matches!(phase_of(*s), Phase::Commit | Phase::Rollback) {
                assert!(transition(*s, Event::PhaseTwoDone).unwrap().is_final());
            }
        }
    }

    #[test]
    fn timeout_and_retry_deadlines() {
        assert!(!is_timed_out(1_000, 500, 1_500));
        assert!(is_timed_out(1_000, 500, 1_501));
        assert!(!retry_expired(0, -1, i64::MAX));
        assert!(retry_expired(0, 5_000, 5_001));
        assert!(!retry_expired(0, 5_000, 5_000));
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        assert!(b.is_due(0));
        b.failed(0, 1_000);
        assert_eq!(b.next_at_ms, 1_000);
        b.failed(1_000, 1_000);
        assert_eq!(b.next_at_ms, 3_000);
        for _ in 0..10 {
            b.failed(0, 1_000);
        }
        assert_eq!(b.next_at_ms, i64::from(MAX_BACKOFF_MS));
        b.reset();
        assert!(b.is_due(0));
    }
}
