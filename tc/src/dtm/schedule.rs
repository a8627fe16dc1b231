//! When the server looks at a transaction again (spec §5.1), as pure functions of the stored
//! timers. Differences from DTM, on purpose: the doubling back-off is capped
//! ([`Defaults::max_retry_interval_s`], 5 minutes by default; DTM's grows without bound, ~3
//! hours after ten errors), and every not-done answer is counted in `retry_count`, which
//! `query` shows.

use super::machine::{Defaults, Outcome};
use super::model::Trans;

/// The interval a transaction returns to after progress, s: its `retry_interval`, else its
/// `timeout_to_fail` when shorter than the server's interval, else the server's.
pub fn reset_interval(trans: &Trans, defaults: &Defaults) -> i64 {
    let o = &trans.options;
    if o.retry_interval > 0 {
        o.retry_interval
    } else if o.timeout_to_fail > 0 && o.timeout_to_fail < defaults.retry_interval_s {
        o.timeout_to_fail
    } else {
        defaults.retry_interval_s
    }
    .max(1)
}

/// Timers of a transaction just created at `now_ms`.
pub fn on_create(trans: &mut Trans, now_ms: i64, defaults: &Defaults) {
    trans.next_cron_interval = reset_interval(trans, defaults);
    trans.next_cron_time = now_ms.saturating_add(trans.next_cron_interval.saturating_mul(1000));
}

/// Timers after progress (a success, a transition): back to the reset interval, next look
/// one interval from now (in case this process dies mid-round).
pub fn on_progress(trans: &mut Trans, now_ms: i64, defaults: &Defaults) {
    on_create(trans, now_ms, defaults);
}

/// Timers after a round that ended on `outcome` (not a success): an error doubles the
/// interval up to the cap, an ongoing answer keeps it.
pub fn on_not_done(trans: &mut Trans, outcome: &Outcome, now_ms: i64, defaults: &Defaults) {
    trans.retry_count = trans.retry_count.saturating_add(1);
    let base = trans
        .next_cron_interval
        .max(reset_interval(trans, defaults));
    if !matches!(outcome, Outcome::Ongoing(_)) {
        let cap = defaults
            .max_retry_interval_s
            .max(reset_interval(trans, defaults));
        trans.next_cron_interval = base.saturating_mul(2).min(cap);
    } else {
        trans.next_cron_interval = base;
    }
    trans.next_cron_time = now_ms.saturating_add(trans.next_cron_interval.saturating_mul(1000));
}

/// Timers while nothing can happen before `at_ms` (a timeout to come, a msg delay): look
/// again then, or after one interval if that is sooner (a shared store's owner may change).
pub fn on_wait(trans: &mut Trans, at_ms: i64, now_ms: i64, defaults: &Defaults) {
    let interval = reset_interval(trans, defaults);
    trans.next_cron_interval = interval;
    trans.next_cron_time = at_ms.min(now_ms.saturating_add(interval.saturating_mul(1000)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtm::machine::test_support::record;
    use crate::dtm::model::{TransStatus, TransType};

    #[test]
    fn reset_interval_follows_dtm() {
        let d = Defaults::default();
        let mut t = record(TransType::Saga, TransStatus::Submitted).trans;
        assert_eq!(reset_interval(&t, &d), 10);
        t.options.timeout_to_fail = 4;
        assert_eq!(reset_interval(&t, &d), 4);
        t.options.retry_interval = 2;
        assert_eq!(reset_interval(&t, &d), 2);
    }

    #[test]
    fn errors_double_up_to_the_cap_and_ongoing_keeps_the_interval() {
        let d = Defaults {
            max_retry_interval_s: 30,
            ..Defaults::default()
        };
        let mut t = record(TransType::Saga, TransStatus::Submitted).trans;
        on_create(&mut t, 0, &d);
        let err = Outcome::Error("500".into());
        let mut seen = vec![];
        for _ in 0..4 {
            on_not_done(&mut t, &err, 0, &d);
            seen.push(t.next_cron_interval);
        }
        assert_eq!(seen, [20, 30, 30, 30]);
        assert_eq!(t.retry_count, 4);
        on_not_done(&mut t, &Outcome::Ongoing("later".into()), 1_000, &d);
        assert_eq!((t.next_cron_interval, t.next_cron_time), (30, 31_000));
        on_progress(&mut t, 2_000, &d);
        assert_eq!((t.next_cron_interval, t.next_cron_time), (10, 12_000));
    }

    #[test]
    fn waiting_looks_again_at_the_deadline_or_after_an_interval() {
        let d = Defaults::default();
        let mut t = record(TransType::Tcc, TransStatus::Prepared).trans;
        on_wait(&mut t, 5_000, 0, &d);
        assert_eq!(t.next_cron_time, 5_000);
        on_wait(&mut t, 60_000, 0, &d);
        assert_eq!(t.next_cron_time, 10_000);
    }
}
