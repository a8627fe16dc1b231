//! The fault schedule: when, during the load, a TC or a worker is killed. Drawn from the
//! run's seed, so `--seed S` with the same flags replays the same moments and victims (the
//! load itself depends on timing and is not replayed exactly).

use std::time::Duration;

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of TC number `.0` (modulo the TCs running).
    Tc(usize),
    /// `kill -9` of worker slot `.0` (modulo the workers).
    Rm(usize),
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Time since the load started.
    pub at: Duration,
    /// What to kill.
    pub fault: Fault,
    /// How long the victim stays down before its restart.
    pub down: Duration,
}

/// `tc_kills` TC kills and `rm_kills` worker kills at random moments in the middle 80 % of
/// `load`, sorted by time.
pub fn plan(seed: u64, load: Duration, tc_kills: u32, rm_kills: u32) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let span = load.as_millis() as u64;
    let mut out = Vec::new();
    for (n, is_tc) in [(tc_kills, true), (rm_kills, false)] {
        for _ in 0..n {
            let at = Duration::from_millis(span / 10 + rng.u64(0..=span * 8 / 10));
            let victim = rng.usize(..1024);
            out.push(Planned {
                at,
                fault: if is_tc {
                    Fault::Tc(victim)
                } else {
                    Fault::Rm(victim)
                },
                down: Duration::from_millis(rng.u64(0..=1000)),
            });
        }
    }
    out.sort_by_key(|p| p.at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_plan_inside_the_load() {
        let load = Duration::from_secs(60);
        let a = plan(7, load, 5, 2);
        assert_eq!(a, plan(7, load, 5, 2));
        assert_eq!(a.len(), 7);
        assert!(a.iter().all(|p| p.at >= load / 10 && p.at <= load * 9 / 10));
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        assert_ne!(a, plan(8, load, 5, 2));
    }
}
