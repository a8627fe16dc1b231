//! OpenTelemetry export of the TC's `tracing` spans over OTLP (HTTP/protobuf), compiled in
//! with the `otlp` cargo feature and switched on by `[tracing] otlp-endpoint`. Span fields
//! become span attributes, so `xid` (and `branch_id`) let a collector follow one global
//! transaction across the TC and the services that carry the same XID.
//!
//! HTTP rather than gRPC: the batch processor exports from its own thread, where a blocking
//! HTTP client works without a tokio runtime.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter for {endpoint} could not be built: {source}; check [tracing] otlp-endpoint (e.g. http://127.0.0.1:4318/v1/traces)")]
pub struct OtlpError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// Flushes and stops the exporter when dropped (at the end of `main`).
#[derive(Debug)]
pub struct OtlpGuard(SdkTracerProvider);

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("OTLP exporter did not shut down cleanly: {e}");
        }
    }
}

/// A `tracing` layer exporting spans to `endpoint` (an OTLP/HTTP traces URL), and the guard
/// that flushes it.
pub fn layer<S>(endpoint: &str) -> Result<(impl Layer<S>, OtlpGuard), OtlpError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| OtlpError {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("seata-tc").build())
        .build();
    let tracer = provider.tracer("seata-tc");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((layer, OtlpGuard(provider)))
}
