//! Prometheus metrics of the TC, in the text exposition format on the HTTP listener at
//! `GET /metrics` (and at `GET /api/metrics`, DTM's path). Labels are bounded: types,
//! statuses and outcomes, never gids or XIDs.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

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

/// Every metric of the process, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// DTM mode.
    pub dtm: Arc<DtmMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("seata");
        let dtm = Arc::new(DtmMetrics::default());
        registry.register(
            "dtm_transactions_started",
            "DTM-mode transactions created, by type",
            dtm.started.clone(),
        );
        registry.register(
            "dtm_transactions_finished",
            "DTM-mode transactions that reached succeed or failed",
            dtm.finished.clone(),
        );
        registry.register(
            "dtm_branch_calls",
            "Branch calls made by the server, by op and classified outcome",
            dtm.branch_calls.clone(),
        );
        registry.register(
            "dtm_rounds",
            "Processing rounds run on DTM-mode transactions",
            dtm.rounds.clone(),
        );
        Metrics { registry, dtm }
    }
}

impl Metrics {
    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// `GET /metrics` and `GET /api/metrics`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    let serve = move || {
        let m = metrics.clone();
        async move {
            (
                [(
                    CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                m.render(),
            )
                .into_response()
        }
    };
    Router::new()
        .route("/metrics", get(serve.clone()))
        .route("/api/metrics", get(serve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text_with_bounded_labels() {
        let m = Metrics::default();
        m.dtm
            .finished
            .get_or_create(&TypeStatusLabels {
                trans_type: "saga".into(),
                status: "succeed".into(),
            })
            .inc();
        let text = m.render();
        assert!(
            text.contains("seata_dtm_rounds_total 0"),
            "unlabelled counters always show"
        );
        assert!(
            text.contains("# TYPE seata_dtm_transactions_finished counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "seata_dtm_transactions_finished_total{trans_type=\"saga\",status=\"succeed\"} 1"
            ),
            "{text}"
        );
    }
}
