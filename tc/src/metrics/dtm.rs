//! Counters of DTM-mode transactions (`seata_dtm_*`), kept under their own names because
//! DTM users' dashboards read them; the mode-wide counters in [`super::seata`] count the same
//! transactions again under `mode` = saga, msg, dtm-tcc or dtm-xa.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// `trans_type` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TypeLabel {
    /// saga, msg, tcc, xa.
    pub trans_type: String,
}

/// `trans_type` and `status` labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TypeStatusLabels {
    /// saga, msg, tcc, xa.
    pub trans_type: String,
    /// succeed or failed.
    pub status: String,
}

/// `op` and `outcome` labels of a branch call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallLabels {
    /// action, compensate, confirm, cancel, commit, rollback, msg (queryPrepared).
    pub op: String,
    /// success, failure, ongoing, error.
    pub outcome: String,
}

/// Counters of DTM-mode transactions.
#[derive(Debug, Default)]
pub struct DtmMetrics {
    /// `seata_dtm_transactions_started_total{trans_type}`.
    pub started: Family<TypeLabel, Counter>,
    /// `seata_dtm_transactions_finished_total{trans_type,status}`.
    pub finished: Family<TypeStatusLabels, Counter>,
    /// `seata_dtm_branch_calls_total{op,outcome}`.
    pub branch_calls: Family<CallLabels, Counter>,
    /// `seata_dtm_rounds_total`: processing rounds run (API-triggered and cron).
    pub rounds: Counter,
}

impl DtmMetrics {
    /// Registers every counter in `registry` (whose prefix is `seata`).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "dtm_transactions_started",
            "DTM-mode transactions created, by type",
            self.started.clone(),
        );
        registry.register(
            "dtm_transactions_finished",
            "DTM-mode transactions that reached succeed or failed",
            self.finished.clone(),
        );
        registry.register(
            "dtm_branch_calls",
            "Branch calls made by the server, by op and classified outcome",
            self.branch_calls.clone(),
        );
        registry.register(
            "dtm_rounds",
            "Processing rounds run on DTM-mode transactions",
            self.rounds.clone(),
        );
    }
}
