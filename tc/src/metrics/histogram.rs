//! A histogram with fixed buckets made of atomics only: `observe` is a short scan of the
//! bounds and three relaxed `fetch_add`s, with no lock (prometheus-client's own histogram
//! takes a mutex per observation, which the request paths should not pay).
//!
//! Values are recorded as integers (microseconds for latencies, plain counts for sizes) and
//! converted at scrape time, so the sum needs no floating-point compare-and-swap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Latency bounds in microseconds: 100 µs to 10 s, about three per decade.
pub const LATENCY_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Batch-size bounds: powers of two up to 1024.
pub const BATCH: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

#[derive(Debug)]
struct Inner {
    bounds: &'static [u64],
    /// Recorded units per exported unit (1e6 for µs → s). A divisor rather than a factor:
    /// `100 / 1e6` prints as `0.0001`, `100 * 1e-6` does not.
    per_unit: f64,
    /// Per-bucket counts (not cumulative), plus one for values above the last bound.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    count: AtomicU64,
}

/// A cheap-to-clone handle; clones observe into the same histogram.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Inner>);

impl Histogram {
    /// A histogram over `bounds` (ascending), exported as value / `per_unit`.
    pub fn new(bounds: &'static [u64], per_unit: f64) -> Self {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(Inner {
            bounds,
            per_unit,
            buckets,
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }))
    }

    /// A latency histogram exported in seconds.
    pub fn latency() -> Self {
        Histogram::new(LATENCY_US, 1e6)
    }

    /// A batch-size histogram.
    pub fn batch() -> Self {
        Histogram::new(BATCH, 1.0)
    }

    /// Records `v` (in the recorded unit).
    #[inline]
    pub fn observe(&self, v: u64) {
        let i = self.0.bounds.partition_point(|&b| b < v);
        if let Some(b) = self.0.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.0.sum.fetch_add(v, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a duration in microseconds.
    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.0;
        // prometheus-client takes per-bucket counts and accumulates them itself.
        let mut total = 0u64;
        let mut buckets = Vec::with_capacity(inner.buckets.len());
        for (i, b) in inner.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            total += n;
            let upper = inner
                .bounds
                .get(i)
                .map_or(f64::INFINITY, |&u| u as f64 / inner.per_unit);
            buckets.push((upper, n));
        }
        // The count is the sum of the buckets, so the exposition stays self-consistent even
        // while other threads observe during the scrape.
        let sum = inner.sum.load(Ordering::Relaxed) as f64 / inner.per_unit;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_scaled() {
        let h = Histogram::latency();
        h.observe(50); // ≤ 100 µs
        h.observe(100); // ≤ 100 µs (upper bounds are inclusive)
        h.observe(3_000); // ≤ 5 ms
        h.observe(u64::MAX / 4); // +Inf
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("x", "test", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("x_bucket{le=\"0.0001\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.0025\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 3"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4"), "{out}");
        assert!(out.contains("x_count 4"), "{out}");
        assert_eq!(h.count(), 4);
    }
}
