//! [`TransOptions`]: the per-transaction options of spec §7 as they travel in the body of
//! prepare/submit/abort (§2.3). Durations go on the wire as **whole seconds**; a part second is
//! rounded up so that a short setting never turns into `0`, which means "server default".

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Options of one global transaction. Zero/empty values are left out of the body, so the
/// server's defaults apply (§7: retry interval 10 s, request timeout 3 s, timeout to fail 35 s
/// for msg/tcc/xa and never for a saga).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TransOptions {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) wait_result: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) timeout_to_fail: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) retry_interval: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) request_timeout: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) retry_limit: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) branch_headers: BTreeMap<String, String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whole seconds, a part second rounded up (`Duration::ZERO` stays 0 = server default).
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl TransOptions {
    /// Defaults: everything from the server.
    pub fn new() -> TransOptions {
        TransOptions::default()
    }

    /// `wait_result`: submit/abort answer only after one processing round (§5.6), so a
    /// success means the transaction finished; FAILURE means it rolled back; ONGOING means it
    /// is still being retried.
    pub fn wait_result(mut self, on: bool) -> Self {
        self.wait_result = on;
        self
    }

    /// `timeout_to_fail` (§5.3): tcc/xa prepared this long are aborted; msg prepared this long
    /// are checked through `query_prepared`; sagas submitted this long are aborted.
    pub fn timeout_to_fail(mut self, d: Duration) -> Self {
        self.timeout_to_fail = whole_seconds(d);
        self
    }

    /// `retry_interval`: base of the retry schedule (doubled after each error, §5.1).
    pub fn retry_interval(mut self, d: Duration) -> Self {
        self.retry_interval = whole_seconds(d);
        self
    }

    /// `request_timeout`: timeout of each branch call the server makes (§5.4).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = whole_seconds(d);
        self
    }

    /// `retry_limit` (saga): after this many not-done answers the saga is aborted.
    pub fn retry_limit(mut self, n: u64) -> Self {
        self.retry_limit = n;
        self
    }

    /// Adds one of the `branch_headers` the server sends on every branch call.
    pub fn branch_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.branch_headers.insert(name.into(), value.into());
        self
    }

    /// Whether `wait_result` is on.
    pub fn waits_for_result(&self) -> bool {
        self.wait_result
    }

    /// The `branch_headers`.
    pub fn branch_headers(&self) -> &BTreeMap<String, String> {
        &self.branch_headers
    }

    /// `request_timeout` in seconds, if set.
    pub fn request_timeout_secs(&self) -> Option<u64> {
        (self.request_timeout > 0).then_some(self.request_timeout)
    }
}

/// The option setters, delegated to the initiator's `options` field, so that a saga reads
/// `Saga::new(..).retry_interval(..).wait_result(true)` like its Go counterpart.
macro_rules! option_setters {
    () => {
        /// Replaces all options at once.
        pub fn options(mut self, options: $crate::options::TransOptions) -> Self {
            self.options = options;
            self
        }

        /// See [`TransOptions::wait_result`](crate::TransOptions::wait_result).
        pub fn wait_result(mut self, on: bool) -> Self {
            self.options = self.options.wait_result(on);
            self
        }

        /// See [`TransOptions::timeout_to_fail`](crate::TransOptions::timeout_to_fail).
        pub fn timeout_to_fail(mut self, d: std::time::Duration) -> Self {
            self.options = self.options.timeout_to_fail(d);
            self
        }

        /// See [`TransOptions::retry_interval`](crate::TransOptions::retry_interval).
        pub fn retry_interval(mut self, d: std::time::Duration) -> Self {
            self.options = self.options.retry_interval(d);
            self
        }

        /// See [`TransOptions::request_timeout`](crate::TransOptions::request_timeout).
        pub fn request_timeout(mut self, d: std::time::Duration) -> Self {
            self.options = self.options.request_timeout(d);
            self
        }

        /// See [`TransOptions::branch_header`](crate::TransOptions::branch_header).
        pub fn branch_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.options = self.options.branch_header(name, value);
            self
        }
    };
}
pub(crate) use option_setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(whole_seconds(Duration::from_secs(4)), 4);
    }

    #[test]
    fn serialises_only_what_is_set() {
        let o = TransOptions::new()
            .retry_interval(Duration::from_secs(2))
            .branch_header("x-a", "1")
            .wait_result(true);
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::json!({"wait_result": true, "retry_interval": 2,
                               "branch_headers": {"x-a": "1"}})
        );
        assert_eq!(
            serde_json::to_value(TransOptions::new()).unwrap(),
            serde_json::json!({})
        );
    }
}
