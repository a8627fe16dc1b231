//! Prometheus counters of this TM, behind the `metrics` cargo feature: requests to the TC by
//! operation and result. Without the feature the hooks compile to nothing.
//!
//! The counters are process-wide (one TM client per process is the norm; several share
//! them); call [`register`] once with the application's registry to expose them:
//!
//! ```ignore
//! let mut registry = prometheus_client::registry::Registry::default();
//! seata_tm::metrics::register(&mut registry);
//! ```

/// A TM request to the TC (`op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Begin,
    Commit,
    Rollback,
}

/// Records the result of one TM operation (after its retries).
#[inline]
pub(crate) fn record<T, E>(op: Op, result: &Result<T, E>) {
    #[cfg(feature = "metrics")]
    imp::record(op, result.is_ok());
    #[cfg(not(feature = "metrics"))]
    let _ = (op, result);
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

    use super::Op;

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct Labels {
        op: &'static str,
        result: &'static str,
    }

    struct TmMetrics {
        family: Family<Labels, Counter>,
        /// [op][ok]: pre-resolved so a request pays no label hash.
        counters: [[Counter; 2]; 3],
    }

    static TM: LazyLock<TmMetrics> = LazyLock::new(|| {
        let family = Family::<Labels, Counter>::default();
        let counters = ["begin", "commit", "rollback"].map(|op| {
            ["error", "ok"].map(|result| family.get_or_create(&Labels { op, result }).clone())
        });
        TmMetrics { family, counters }
    });

    pub(super) fn record(op: Op, ok: bool) {
        if let Some(c) = TM
            .counters
            .get(op as usize)
            .and_then(|r| r.get(usize::from(ok)))
        {
            c.inc();
        }
    }

    /// Registers `seata_tm_requests_total{op,result}` (global begin, commit and rollback
    /// requests of this process's TMs, after retries; `result` is `ok` or `error`) in
    /// `registry`.
    pub fn register(registry: &mut Registry) {
        registry.register(
            "seata_tm_requests",
            "Global begin/commit/rollback requests of this TM, by result",
            TM.family.clone(),
        );
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn counts_by_op_and_result() {
            record(Op::Commit, true);
            let mut reg = Registry::default();
            register(&mut reg);
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
            // The counters are the process's: other tests running alongside add to them.
            let count = |labels: &str| {
                let prefix = format!("seata_tm_requests_total{{{labels}}} ");
                out.lines()
                    .find_map(|l| l.strip_prefix(prefix.as_str()))
                    .and_then(|n| n.parse::<u64>().ok())
            };
            assert!(
                count("op=\"commit\",result=\"ok\"").is_some_and(|n| n >= 1),
                "{out}"
            );
            assert!(count("op=\"begin\",result=\"error\"").is_some(), "{out}");
        }
    }
}
