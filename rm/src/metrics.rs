//! Prometheus counters of this RM, behind the `metrics` cargo feature: branch registrations
//! by branch type and result, and phase-two requests served by branch type, phase and the
//! status answered. Without the feature the hooks compile to nothing.
//!
//! The counters are process-wide; call [`register`] once with the application's registry:
//!
//! ```ignore
//! let mut registry = prometheus_client::registry::Registry::default();
//! seata_rm::metrics::register(&mut registry);
//! ```

use seata_protocol::{BranchStatus, BranchType};

use crate::error::RmError;

/// Records a branch registration's result.
#[inline]
pub(crate) fn registered(branch_type: BranchType, result: &Result<i64, RmError>) {
    #[cfg(feature = "metrics")]
    imp::registered(branch_type, result);
    #[cfg(not(feature = "metrics"))]
    let _ = (branch_type, result);
}

/// Records a phase-two request served with `status`.
#[inline]
pub(crate) fn phase_two(branch_type: BranchType, commit: bool, status: BranchStatus) {
    #[cfg(feature = "metrics")]
    imp::phase_two(branch_type, commit, status);
    #[cfg(not(feature = "metrics"))]
    let _ = (branch_type, commit, status);
}

#[cfg(feature = "metrics")]
pub use imp::register;

#[cfg(feature = "metrics")]
mod imp {
    use std::sync::LazyLock;

    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;
    use seata_protocol::{BranchStatus, BranchType};

    use crate::error::RmError;

    const TYPES: [&str; 4] = ["at", "tcc", "saga", "xa"];

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct RegisterLabels {
        branch_type: &'static str,
        result: &'static str,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct PhaseTwoLabels {
        branch_type: &'static str,
        phase: &'static str,
        outcome: &'static str,
    }

    struct RmMetrics {
        register_family: Family<RegisterLabels, Counter>,
        /// [branch type][ok, lock_conflict, error]
        registers: [[Counter; 3]; 4],
        phase_two_family: Family<PhaseTwoLabels, Counter>,
        /// [branch type][commit?][done, retryable, unretryable]
        phase_two: [[[Counter; 3]; 2]; 4],
    }

    static RM: LazyLock<RmMetrics> = LazyLock::new(|| {
        let register_family = Family::<RegisterLabels, Counter>::default();
        let registers = TYPES.map(|branch_type| {
            ["ok", "lock_conflict", "error"].map(|result| {
                register_family
                    .get_or_create(&RegisterLabels {
                        branch_type,
                        result,
                    })
                    .clone()
            })
        });
        let phase_two_family = Family::<PhaseTwoLabels, Counter>::default();
        let phase_two = TYPES.map(|branch_type| {
            ["rollback", "commit"].map(|phase| {
                ["done", "retryable", "unretryable"].map(|outcome| {
                    phase_two_family
                        .get_or_create(&PhaseTwoLabels {
                            branch_type,
                            phase,
                            outcome,
                        })
                        .clone()
                })
            })
        });
        RmMetrics {
            register_family,
            registers,
            phase_two_family,
            phase_two,
        }
    });

    fn type_index(t: BranchType) -> usize {
        usize::from(t.code()).min(TYPES.len() - 1)
    }

    pub(super) fn registered(t: BranchType, result: &Result<i64, RmError>) {
        let i = match result {
            Ok(_) => 0,
            Err(RmError::LockConflict { .. }) => 1,
            Err(_) => 2,
        };
        if let Some(c) = RM.registers.get(type_index(t)).and_then(|r| r.get(i)) {
            c.inc();
        }
    }

    pub(super) fn phase_two(t: BranchType, commit: bool, status: BranchStatus) {
        let i = match status {
            BranchStatus::PhaseTwoCommitted | BranchStatus::PhaseTwoRollbacked => 0,
            BranchStatus::PhaseTwoCommitFailedUnretryable
            | BranchStatus::PhaseTwoRollbackFailedUnretryable => 2,
            _ => 1,
        };
        if let Some(c) = RM
            .phase_two
            .get(type_index(t))
            .and_then(|p| p.get(usize::from(commit)))
            .and_then(|a| a.get(i))
        {
            c.inc();
        }
    }

    /// Registers `seata_rm_branch_registers_total{branch_type,result}` (`ok`,
    /// `lock_conflict`, `error`) and `seata_rm_phase_two_total{branch_type,phase,outcome}`
    /// (`done`, `retryable`, `unretryable`: the status this RM answered) in `registry`.
    pub fn register(registry: &mut Registry) {
        registry.register(
            "seata_rm_branch_registers",
            "Branch registrations of this RM, by branch type and result",
            RM.register_family.clone(),
        );
        registry.register(
            "seata_rm_phase_two",
            "Phase-two requests this RM served, by branch type, phase and answered status",
            RM.phase_two_family.clone(),
        );
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn counts_registrations_and_phase_two_answers() {
            registered(BranchType::Tcc, &Ok(7));
            phase_two(
                BranchType::Xa,
                false,
                BranchStatus::PhaseTwoRollbackFailedRetryable,
            );
            let mut reg = Registry::default();
            register(&mut reg);
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
            for line in [
                "seata_rm_branch_registers_total{branch_type=\"tcc\",result=\"ok\"} 1",
                "seata_rm_phase_two_total{branch_type=\"xa\",phase=\"rollback\",outcome=\"retryable\"} 1",
            ] {
                assert!(out.contains(line), "missing {line} in {out}");
            }
        }
    }
}
