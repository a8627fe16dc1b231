//! Gauges read at scrape time from the state that already exists (the session map, the lock
//! manager, the connection registry), so the request paths keep no gauge of their own:
//! `seata_sessions_open{status}`, `seata_row_locks_held`, `seata_connections{role}`.
//!
//! The sources are traits so that this module needs neither the coordinator nor the registry
//! (they depend on `metrics` for their counters; the reverse would be an import cycle).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use seata_protocol::GlobalStatus;

/// Global sessions by status code (index = `GlobalStatus::code()`).
pub type StatusCounts = [u64; 16];

/// What the coordinator reports at scrape time.
pub trait SessionGauges: Send + Sync + 'static {
    /// Sessions held, by status.
    fn sessions_by_status(&self) -> StatusCounts;
    /// Row locks held by this TC's lock manager (0 when a shared store holds the locks).
    fn row_locks_held(&self) -> u64;
}

/// What the connection registry reports at scrape time.
pub trait ConnectionGauges: Send + Sync + 'static {
    /// Registered connections as (TM, RM).
    fn connections_by_role(&self) -> (u64, u64);
}

/// The scrape-time collector.
pub struct OpenState {
    sessions: Arc<dyn SessionGauges>,
    connections: Arc<dyn ConnectionGauges>,
}

impl OpenState {
    /// A collector over the coordinator's sessions and locks and the registry's connections.
    pub fn new(sessions: Arc<dyn SessionGauges>, connections: Arc<dyn ConnectionGauges>) -> Self {
        OpenState {
            sessions,
            connections,
        }
    }
}

impl std::fmt::Debug for OpenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenState").finish_non_exhaustive()
    }
}

/// Statuses shown even at 0, so a dashboard (or a checker waiting for "back to 0") always
/// finds the series: every status a live session can be in. Final statuses appear only while
/// a session in one is still held (e.g. kept after a failed rollback).
const ALWAYS: &[GlobalStatus] = &[
    GlobalStatus::Begin,
    GlobalStatus::Committing,
    GlobalStatus::CommitRetrying,
    GlobalStatus::AsyncCommitting,
    GlobalStatus::Rollbacking,
    GlobalStatus::RollbackRetrying,
    GlobalStatus::TimeoutRollbacking,
    GlobalStatus::TimeoutRollbackRetrying,
];

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for OpenState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.sessions.sessions_by_status();
        {
            let mut family = encoder.encode_descriptor(
                "sessions_open",
                "Global sessions held by the TC (Seata protocol), by status",
                None,
                MetricType::Gauge,
            )?;
            for status in GlobalStatus::ALL {
                let n = counts.get(usize::from(status.code())).copied().unwrap_or(0);
                if n == 0 && !ALWAYS.contains(status) {
                    continue;
                }
                let labels = [("status", status.java_name())];
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "row_locks_held",
            "AT row locks held by this TC's lock manager (0 with a shared MySQL lock table)",
            self.sessions.row_locks_held(),
        )?;
        let (tm, rm) = self.connections.connections_by_role();
        let mut family = encoder.encode_descriptor(
            "connections",
            "Registered Seata-protocol connections, by role",
            None,
            MetricType::Gauge,
        )?;
        for (role, n) in [("tm", tm), ("rm", rm)] {
            let labels = [("role", role)];
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl SessionGauges for Fake {
        fn sessions_by_status(&self) -> StatusCounts {
            let mut c = [0; 16];
            c[usize::from(GlobalStatus::Begin.code())] = 3;
            c[usize::from(GlobalStatus::RollbackFailed.code())] = 1;
            c
        }
        fn row_locks_held(&self) -> u64 {
            7
        }
    }
    impl ConnectionGauges for Fake {
        fn connections_by_role(&self) -> (u64, u64) {
            (2, 5)
        }
    }

    #[test]
    fn gauges_show_live_statuses_at_zero_and_final_ones_only_when_held() {
        let mut reg = prometheus_client::registry::Registry::with_prefix("seata");
        reg.register_collector(Box::new(OpenState::new(Arc::new(Fake), Arc::new(Fake))));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        for line in [
            "seata_sessions_open{status=\"Begin\"} 3",
            "seata_sessions_open{status=\"Committing\"} 0",
            "seata_sessions_open{status=\"RollbackFailed\"} 1",
            "seata_row_locks_held 7",
            "seata_connections{role=\"tm\"} 2",
            "seata_connections{role=\"rm\"} 5",
        ] {
            assert!(out.contains(line), "missing {line} in {out}");
        }
        assert!(!out.contains("status=\"Committed\""), "{out}");
    }
}
