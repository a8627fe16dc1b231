//! Prometheus metrics of the TC, in the text exposition format on the HTTP listener at
//! `GET /metrics` (and at `GET /api/metrics`, DTM's path). Labels are bounded: types,
//! statuses and outcomes, never gids or XIDs.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

mod dtm;
pub mod gauges;
pub mod histogram;
pub mod seata;

pub use dtm::{CallLabels, DtmMetrics, TypeLabel, TypeStatusLabels};
pub use gauges::{ConnectionGauges, OpenState, SessionGauges};
pub use seata::seata;

/// Every metric of the process, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// DTM mode.
    pub dtm: Arc<DtmMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(None)
    }
}

impl Metrics {
    /// The registry, with the scrape-time gauges of `open` when given (the Seata side runs).
    pub fn new(open: Option<OpenState>) -> Self {
        let mut registry = Registry::with_prefix("seata");
        let dtm = Arc::new(DtmMetrics::default());
        dtm.register(&mut registry);
        seata::seata().register(&mut registry);
        if let Some(open) = open {
            registry.register_collector(Box::new(open));
        }
        Metrics { registry, dtm }
    }

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
