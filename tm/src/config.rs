//! [`TmConfig`]: who the TM registers as, where the TCs are, and its timeouts and retry counts,
//! with Seata 1.2's client defaults. Durations are plain milliseconds so the config reads the
//! same in TOML, JSON or environment-derived maps.

use std::time::Duration;

use seata_protocol::rpc::{Registration, RpcConfig, TcClientConfig};
use serde::Deserialize;

use crate::error::TmError;

/// Settings of a [`TmClient`](crate::TmClient).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TmConfig {
    /// Seata `applicationId`, sent at registration. Required (no default).
    pub application_id: String,
    /// Seata `transactionServiceGroup`. Default `my_test_tx_group` (Seata's sample value).
    pub transaction_service_group: String,
    /// TC addresses, `host:port`; every one is connected and requests are spread over the live
    /// ones. Default `["127.0.0.1:8091"]`.
    pub addresses: Vec<String>,
    /// How long [`TmClient::connect`](crate::TmClient::connect) waits for a first registered
    /// connection, in ms. Default 10000 (Seata's connect timeout).
    pub connect_timeout_ms: u64,
    /// How long a request waits for its response, in ms. Default 30000 (Seata
    /// `transport.rpcTmRequestTimeout`). Also how long a request waits for a TC to come back.
    pub request_timeout_ms: u64,
    /// Timeout of a global transaction begun without one, in ms. Default 60000 (Seata's
    /// `@GlobalTransactional` default).
    pub default_timeout_ms: u64,
    /// Attempts of a global commit (Seata `client.tm.commitRetryCount`). Default 5, at least 1.
    /// Only requests that did not reach the TC, or that the TC answered `Failed`, are retried.
    pub commit_retry_count: u32,
    /// Attempts of a global rollback (Seata `client.tm.rollbackRetryCount`). Default 5, at
    /// least 1.
    pub rollback_retry_count: u32,
    /// First reconnect delay after a TC connection dies, in ms; doubles up to
    /// `reconnect-max-ms`. Default 200.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, in ms. Default 10000 (Seata re-checks its TCs every 10 s).
    pub reconnect_max_ms: u64,
    /// Whether [`GlobalTx::run`](crate::GlobalTx::run) starts the closure as soon as the
    /// GlobalBegin is sent instead of after the TC's answer, so the first statement's SQL
    /// overlaps that round trip (what needs the XID waits for it; see
    /// [`context`](crate::context)). Default true. Only on a multi-thread tokio runtime in a
    /// build that unwinds on panic; otherwise the begin is awaited first.
    pub overlap_begin: bool,
}

impl Default for TmConfig {
    fn default() -> Self {
        TmConfig {
            application_id: String::new(),
            transaction_service_group: "my_test_tx_group".into(),
            addresses: vec!["127.0.0.1:8091".into()],
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            default_timeout_ms: 60_000,
            commit_retry_count: 5,
            rollback_retry_count: 5,
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            overlap_begin: true,
        }
    }
}

impl TmConfig {
    /// Defaults with the given application id and TC addresses.
    pub fn new(application_id: impl Into<String>, addresses: Vec<String>) -> Self {
        TmConfig {
            application_id: application_id.into(),
            addresses,
            ..TmConfig::default()
        }
    }

    /// Checks every field; the error names the field and the accepted range.
    pub fn validate(&self) -> Result<(), TmError> {
        let bad = |field, reason: &str| {
            Err(TmError::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.application_id.trim().is_empty() {
            return bad("application-id", "must not be empty");
        }
        if self.transaction_service_group.trim().is_empty() {
            return bad("transaction-service-group", "must not be empty");
        }
        if self.addresses.is_empty() || self.addresses.iter().any(|a| a.trim().is_empty()) {
            return bad("addresses", "needs at least one non-empty host:port");
        }
        for (field, ms) in [
            ("connect-timeout-ms", self.connect_timeout_ms),
            ("request-timeout-ms", self.request_timeout_ms),
            ("reconnect-min-ms", self.reconnect_min_ms),
        ] {
            if ms == 0 {
                return bad(field, "must be at least 1 ms");
            }
        }
        if self.default_timeout_ms == 0 || self.default_timeout_ms > i32::MAX as u64 {
            return bad("default-timeout-ms", "must be 1..=2147483647 ms");
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return bad("reconnect-max-ms", "must be at least reconnect-min-ms");
        }
        if self.commit_retry_count == 0 {
            return bad("commit-retry-count", "must be at least 1 (attempts)");
        }
        if self.rollback_retry_count == 0 {
            return bad("rollback-retry-count", "must be at least 1 (attempts)");
        }
        Ok(())
    }

    /// The default global transaction timeout.
    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.default_timeout_ms)
    }

    /// The RPC client settings this config stands for.
    pub fn tc_client_config(&self) -> TcClientConfig {
        let registration = Registration::Tm {
            application_id: self.application_id.clone(),
            transaction_service_group: self.transaction_service_group.clone(),
        };
        let mut config = TcClientConfig::new(self.addresses.clone(), registration);
        config.rpc = RpcConfig {
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            ..RpcConfig::client()
        };
        config.reconnect_min = Duration::from_millis(self.reconnect_min_ms);
        config.reconnect_max = Duration::from_millis(self.reconnect_max_ms);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_kebab_case_with_defaults() {
        let c: TmConfig = serde_json::from_str(
            r#"{"application-id":"order","addresses":["10.0.0.1:8091","10.0.0.2:8091"],"commit-retry-count":3}"#,
        )
        .unwrap();
        assert_eq!(c.application_id, "order");
        assert_eq!(c.addresses.len(), 2);
        assert_eq!(c.commit_retry_count, 3);
        assert_eq!(c.rollback_retry_count, 5);
        assert_eq!(c.default_timeout(), Duration::from_secs(60));
        c.validate().unwrap();
    }

    #[test]
    fn rejects_missing_application_id_naming_the_field() {
        let err = TmConfig::default().validate().unwrap_err();
        assert!(err.to_string().contains("application-id"), "{err}");
    }

    #[test]
    fn rejects_zero_retry_count() {
        let c = TmConfig {
            rollback_retry_count: 0,
            ..TmConfig::new("a", vec!["127.0.0.1:1".into()])
        };
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("rollback-retry-count"), "{err}");
    }
}
