//! `seata-tc` configuration: one TOML file (`--config FILE`), every key optional, command-line
//! flags override the file. Defaults are Seata 1.2's (tc-semantics section 7) unless a comment
//! says why not.
//!
//! ```toml
//! listen = "0.0.0.0:8091"
//! store = "file"
//! [recovery]
//! committing-retry-period-ms = 1000
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where sessions, branches and locks are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreMode {
    /// In memory only: everything is lost when the process stops.
    Memory,
    /// Embedded append-only log in `data-dir` (durable). The default, as in Seata: a TC that
    /// restarts keeps every acknowledged transaction without any external service.
    #[default]
    File,
    /// Seata's `global_table`/`branch_table`/`lock_table` in MySQL, shareable by several TCs.
    Db,
}

/// How the file store makes records durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// fdatasync before acknowledging (group commit shares one sync among concurrent writes).
    #[default]
    Fsync,
    /// Write to the OS without syncing: survives a crash of the TC process, not of the machine.
    None,
}

/// The whole configuration of one TC process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TcConfig {
    /// Address to listen on. Default `0.0.0.0:8091` (Seata's port); `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// IP written into XIDs (`ip:port:id`). Default: the listen IP, or when that is unspecified
    /// (`0.0.0.0`), the first non-loopback address of the host, else 127.0.0.1.
    pub host: Option<IpAddr>,
    /// Node number mixed into transaction and branch ids so several TCs never hand out the same
    /// id. Default 1, range 0..=1023.
    pub server_node: u16,
    /// Session store. Default `file` (in `data-dir`).
    pub store: StoreMode,
    /// Directory of the file store. Default `./seata-data`.
    pub data_dir: PathBuf,
    /// File store durability. Default `fsync`: a decision is acknowledged only after it is on
    /// disk (fdatasync, shared by concurrent requests through group commit).
    pub sync: SyncMode,
    /// MySQL URL of the db store, e.g. `mysql://user:pass@127.0.0.1:3306/seata`.
    /// Required with `store = "db"`.
    pub db_url: Option<String>,
    /// Create the db store's tables (`global_table`, `branch_table`, `lock_table`, and the
    /// lease table) if they are missing. Default false.
    pub init_db: bool,
    /// Lease length of the db store, in ms: how long a TC's server node and the phase two of
    /// the transactions it drives stay its own without renewal (renewed every third of it).
    /// Another TC takes a dead TC's transactions over this long after its last renewal.
    /// Default 10000.
    pub db_lease_ms: u64,
    /// Largest frame accepted or sent, in bytes. Default 8 MiB (Seata's `MAX_FRAME_LENGTH`).
    pub max_frame_len: usize,
    /// Most client connections served at once; further ones wait in the accept queue.
    /// Default 10000.
    pub max_connections: usize,
    /// How long a TC → RM request (branch commit/rollback) may take, in ms. Default 30000.
    pub rpc_timeout_ms: u64,
    /// A connection that sends nothing (not even a heartbeat) for this long is closed, in ms.
    /// Default 15000 (3 × the clients' 5 s heartbeat).
    pub read_idle_timeout_ms: u64,
    /// On shutdown, how long in-flight requests and jobs may take to finish, in ms. Default 5000.
    pub shutdown_grace_ms: u64,
    /// Bounds on what one peer may cost (Seata protocol listener).
    pub limits: LimitsConfig,
    /// Retry and timeout jobs.
    pub recovery: RecoveryConfig,
    /// Undo log housekeeping broadcast to AT resources.
    pub undo: UndoConfig,
    /// Address of the HTTP listener (DTM's API at `/api/dtmsvr`), or `off`. Default
    /// `0.0.0.0:36789`, DTM's port; port 0 picks a free port.
    pub http_listen: String,
    /// Address of the gRPC listener (DTM's `dtmgimp.Dtm` service), or `off`. Default
    /// `0.0.0.0:36790`, DTM's gRPC port; port 0 picks a free port.
    pub grpc_listen: String,
    /// etcd endpoints (`host:port`) to register the gRPC listener in, go-zero style. Default
    /// none: no registration.
    pub etcd: Vec<String>,
    /// Key prefix of the etcd registration: the key is `<etcd-key>/<lease id>`, the value the
    /// gRPC listener's `host:port`. Default `dtmservice` (what go-zero's DTM examples use).
    pub etcd_key: String,
    /// DTM-mode transactions (saga, msg, tcc, xa over HTTP and gRPC).
    pub dtm: DtmConfig,
    /// The admin API (`/admin/v1`) and console (`/console`) on the HTTP listener.
    pub admin: AdminConfig,
    /// Prometheus metrics on the HTTP listener (`/metrics`).
    pub metrics: MetricsConfig,
    /// Span export (`[tracing]`).
    pub tracing: TracingConfig,
}

/// Span export (`[tracing]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/HTTP traces URL to export spans to (e.g. `http://127.0.0.1:4318/v1/traces`), with
    /// the XID as a span attribute. Needs a build with the `otlp` cargo feature. Default
    /// empty: no export.
    pub otlp_endpoint: String,
}

/// Prometheus metrics (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsConfig {
    /// Update the counters and histograms on the request paths. Default `true`; `false`
    /// exists to measure what they cost (the scrape-time gauges stay).
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

/// Who may use the admin API and console (`[admin]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token the actions (retry, rollback, commit, give-up, delete) require. Default
    /// none: with neither this nor `token-file`, actions are disabled (answered 403).
    pub token: Option<String>,
    /// File whose first line is the token (keeps it out of the config file). Default none.
    pub token_file: Option<PathBuf>,
    /// Serve the read endpoints and the console to every address, not only loopback.
    /// Default false: an operator on another host goes through an SSH tunnel or a proxy.
    pub public_read: bool,
}

/// Server-wide defaults of DTM-mode transactions (DTM's config keys, spec §7); each
/// transaction's own options override them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DtmConfig {
    /// How often due transactions are looked for, ms. Default 1000 (DTM polls every 3 s).
    pub cron_interval_ms: u64,
    /// HTTP timeout of a branch call, s (`RequestTimeout`). Default 3.
    pub request_timeout_s: i64,
    /// Base retry interval, s (`RetryInterval`). Default 10.
    pub retry_interval_s: i64,
    /// Prepared tcc/xa/msg older than this time out, s (`TimeoutToFail`). Default 35.
    pub timeout_to_fail_s: i64,
    /// Cap of the doubling retry interval, s. Default 300 (DTM has no cap).
    pub max_retry_interval_s: i64,
    /// Largest request body accepted, bytes. Default 1048576 (1 MiB).
    pub max_body_bytes: usize,
    /// Finished transactions stay queryable this long, s. Default 86400 (a day).
    pub finished_keep_s: u64,
    /// At most this many finished transactions are kept (oldest forgotten first).
    /// Default 100000.
    pub finished_keep_max: usize,
}

impl Default for DtmConfig {
    fn default() -> Self {
        DtmConfig {
            cron_interval_ms: 1000,
            request_timeout_s: 3,
            retry_interval_s: 10,
            timeout_to_fail_s: 35,
            max_retry_interval_s: 300,
            max_body_bytes: 1 << 20,
            finished_keep_s: 86_400,
            finished_keep_max: 100_000,
        }
    }
}

impl DtmConfig {
    /// The engine's defaults.
    pub fn defaults(&self) -> crate::dtm::machine::Defaults {
        crate::dtm::machine::Defaults {
            timeout_to_fail_s: self.timeout_to_fail_s,
            retry_interval_s: self.retry_interval_s,
            max_retry_interval_s: self.max_retry_interval_s,
            request_timeout_s: self.request_timeout_s,
        }
    }
}

/// Bounds on what one peer of the Seata protocol listener may cost: connections, memory,
/// time and the size of what it registers. The defaults are far above what Java Seata clients
/// send (a client opens one TM and one RM connection per TC and registers within
/// milliseconds; Seata 1.2's own file store refuses a branch over 16 KB), so only broken or
/// hostile peers meet them; requests over a size limit get a failed answer that names the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LimitsConfig {
    /// A new connection that has not sent RegisterTM or RegisterRM within this long is closed
    /// (before it, only registrations and heartbeats are served), in ms. Default 5000.
    pub register_timeout_ms: u64,
    /// Most connections from one IP address at once; further ones are closed at accept.
    /// Default 1000.
    pub max_connections_per_ip: usize,
    /// Bytes all partly received frames over 64 KiB may hold together; a connection whose
    /// frame would take more is closed. Default 268435456 (256 MiB).
    pub frame_memory_budget: usize,
    /// A write (answer or heartbeat) the peer takes no bytes of for this long closes the
    /// connection and drops its queued answers, in ms. Default 30000.
    pub write_timeout_ms: u64,
    /// Requests one connection may have in progress; at the limit the connection is not read
    /// until one is answered (back-pressure). Default 1000.
    pub max_inflight_per_connection: usize,
    /// Rows in one branch's lock key. Default 100000.
    pub max_lock_keys_per_branch: usize,
    /// Bytes of one branch's lock key. Default 4194304 (4 MiB).
    pub max_lock_key_bytes: usize,
    /// Resource ids in one RegisterRM; more are refused (`identified = false`). Default 10000.
    pub max_resource_ids_per_register: usize,
    /// Bytes of a branch register's or report's applicationData. Default 1048576 (1 MiB).
    pub max_application_data_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            register_timeout_ms: 5_000,
            max_connections_per_ip: 1_000,
            frame_memory_budget: 256 << 20,
            write_timeout_ms: 30_000,
            max_inflight_per_connection: 1_000,
            max_lock_keys_per_branch: 100_000,
            max_lock_key_bytes: 4 << 20,
            max_resource_ids_per_register: 10_000,
            max_application_data_bytes: 1 << 20,
        }
    }
}

/// Periods of the background jobs and the retry limits (Seata's `server.recovery.*`,
/// `server.max*RetryTimeout`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RecoveryConfig {
    /// Period of the commit retry job, ms. Default 1000.
    pub committing_retry_period_ms: u64,
    /// Period of the async (AT) commit job, ms. Default 1000.
    pub async_committing_retry_period_ms: u64,
    /// Period of the rollback retry job, ms. Default 1000.
    pub rollbacking_retry_period_ms: u64,
    /// Period of the transaction timeout check, ms. Default 1000.
    pub timeout_retry_period_ms: u64,
    /// Stop retrying a commit this long after the transaction began, ms; -1 = never stop.
    /// Default -1.
    pub max_commit_retry_timeout_ms: i64,
    /// Stop retrying a rollback this long after the transaction began, ms; -1 = never stop.
    /// Default -1.
    pub max_rollback_retry_timeout_ms: i64,
    /// Release the locks of a transaction whose rollback retries gave up. Default false (the
    /// data was not restored, so the rows stay protected until an operator acts).
    pub rollback_retry_timeout_unlock_enable: bool,
}

/// Undo log housekeeping (`server.undo.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct UndoConfig {
    /// Undo logs older than this many days are deleted by the RMs. Default 7; values ≤ 0 mean 7.
    pub log_save_days: i16,
    /// Period of the broadcast, ms. Default 86400000 (a day).
    pub log_delete_period_ms: u64,
    /// Delay before the first broadcast, ms. Default 180000 (3 minutes).
    pub log_delete_first_delay_ms: u64,
}

impl Default for TcConfig {
    fn default() -> Self {
        TcConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8091)),
            host: None,
            server_node: 1,
            store: StoreMode::default(),
            data_dir: PathBuf::from("./seata-data"),
            sync: SyncMode::default(),
            db_url: None,
            init_db: false,
            db_lease_ms: 10_000,
            max_frame_len: seata_protocol::DEFAULT_MAX_FRAME_LEN,
            max_connections: 10_000,
            rpc_timeout_ms: 30_000,
            read_idle_timeout_ms: 15_000,
            shutdown_grace_ms: 5_000,
            limits: LimitsConfig::default(),
            recovery: RecoveryConfig::default(),
            undo: UndoConfig::default(),
            http_listen: "0.0.0.0:36789".into(),
            grpc_listen: "0.0.0.0:36790".into(),
            etcd: Vec::new(),
            etcd_key: "dtmservice".into(),
            dtm: DtmConfig::default(),
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            committing_retry_period_ms: 1000,
            async_committing_retry_period_ms: 1000,
            rollbacking_retry_period_ms: 1000,
            timeout_retry_period_ms: 1000,
            max_commit_retry_timeout_ms: -1,
            max_rollback_retry_timeout_ms: -1,
            rollback_retry_timeout_unlock_enable: false,
        }
    }
}

impl Default for UndoConfig {
    fn default() -> Self {
        UndoConfig {
            log_save_days: 7,
            log_delete_period_ms: 86_400_000,
            log_delete_first_delay_ms: 180_000,
        }
    }
}

/// A configuration value outside its accepted range.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {field} = {value}: {accepted}")]
pub struct ConfigError {
    /// Key name, as written in the TOML file.
    pub field: &'static str,
    /// The rejected value.
    pub value: String,
    /// What would be accepted.
    pub accepted: &'static str,
}

impl TcConfig {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks ranges; called once at start-up so a bad value stops the TC with its name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(field: &'static str, value: impl ToString, accepted: &'static str) -> ConfigError {
            ConfigError {
                field,
                value: value.to_string(),
                accepted,
            }
        }
        if self.server_node > 1023 {
            return Err(bad("server-node", self.server_node, "0 to 1023"));
        }
        if self.max_frame_len < 1024 || self.max_frame_len > i32::MAX as usize {
            return Err(bad(
                "max-frame-len",
                self.max_frame_len,
                "1024 to 2147483647 bytes",
            ));
        }
        if self.store == StoreMode::Db && self.db_url.as_deref().unwrap_or("").is_empty() {
            return Err(bad(
                "db-url",
                "(unset)",
                "a mysql:// URL when store = \"db\"",
            ));
        }
        if self.max_connections == 0 {
            return Err(bad("max-connections", 0, "at least 1"));
        }
        let l = &self.limits;
        let counts = [
            ("limits.max-connections-per-ip", l.max_connections_per_ip),
            (
                "limits.max-inflight-per-connection",
                l.max_inflight_per_connection,
            ),
            (
                "limits.max-lock-keys-per-branch",
                l.max_lock_keys_per_branch,
            ),
            (
                "limits.max-resource-ids-per-register",
                l.max_resource_ids_per_register,
            ),
        ];
        for (field, v) in counts {
            if v == 0 {
                return Err(bad(field, 0, "at least 1"));
            }
        }
        if l.frame_memory_budget < self.max_frame_len {
            return Err(bad(
                "limits.frame-memory-budget",
                l.frame_memory_budget,
                "at least max-frame-len bytes (one largest frame must fit)",
            ));
        }
        if l.max_lock_key_bytes < 1024 {
            return Err(bad(
                "limits.max-lock-key-bytes",
                l.max_lock_key_bytes,
                "at least 1024",
            ));
        }
        let periods = [
            (
                "recovery.committing-retry-period-ms",
                self.recovery.committing_retry_period_ms,
            ),
            (
                "recovery.async-committing-retry-period-ms",
                self.recovery.async_committing_retry_period_ms,
            ),
            (
                "recovery.rollbacking-retry-period-ms",
                self.recovery.rollbacking_retry_period_ms,
            ),
            (
                "recovery.timeout-retry-period-ms",
                self.recovery.timeout_retry_period_ms,
            ),
            ("undo.log-delete-period-ms", self.undo.log_delete_period_ms),
            ("rpc-timeout-ms", self.rpc_timeout_ms),
            ("dtm.cron-interval-ms", self.dtm.cron_interval_ms),
            ("read-idle-timeout-ms", self.read_idle_timeout_ms),
            (
                "limits.register-timeout-ms",
                self.limits.register_timeout_ms,
            ),
            ("limits.write-timeout-ms", self.limits.write_timeout_ms),
        ];
        for (field, v) in periods {
            if v == 0 {
                return Err(bad(field, 0, "at least 1 ms"));
            }
        }
        self.http_addr()?;
        self.grpc_addr()?;
        if !self.etcd.is_empty() {
            if self.grpc_addr()?.is_none() {
                return Err(bad(
                    "etcd",
                    self.etcd.join(","),
                    "no endpoints while grpc-listen is off (there is nothing to register)",
                ));
            }
            let key_ok = !self.etcd_key.is_empty()
                && !self.etcd_key.ends_with('/')
                && self.etcd_key.chars().all(|c| c.is_ascii_graphic());
            if !key_ok {
                return Err(bad(
                    "etcd-key",
                    &self.etcd_key,
                    "a non-empty key prefix without spaces or a trailing / (e.g. dtmservice)",
                ));
            }
            if let Some(e) = self.etcd.iter().find(|e| e.trim().is_empty()) {
                return Err(bad("etcd", e, "host:port endpoints, e.g. 127.0.0.1:2379"));
            }
        }
        let d = &self.dtm;
        let seconds = [
            ("dtm.request-timeout-s", d.request_timeout_s),
            ("dtm.retry-interval-s", d.retry_interval_s),
            ("dtm.timeout-to-fail-s", d.timeout_to_fail_s),
            ("dtm.max-retry-interval-s", d.max_retry_interval_s),
        ];
        for (field, v) in seconds {
            if !(1..=86_400 * 365).contains(&v) {
                return Err(bad(field, v, "1 to 31536000 seconds"));
            }
        }
        if d.max_body_bytes < 1024 {
            return Err(bad("dtm.max-body-bytes", d.max_body_bytes, "at least 1024"));
        }
        Ok(())
    }

    /// The HTTP listener's address; `None` when `http-listen = "off"`.
    pub fn http_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.http_listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        self.http_listen.parse().map(Some).map_err(|_| ConfigError {
            field: "http-listen",
            value: self.http_listen.clone(),
            accepted: "IP:PORT (e.g. 0.0.0.0:36789) or off",
        })
    }

    /// The gRPC listener's address; `None` when `grpc-listen = "off"`.
    pub fn grpc_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.grpc_listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        self.grpc_listen.parse().map(Some).map_err(|_| ConfigError {
            field: "grpc-listen",
            value: self.grpc_listen.clone(),
            accepted: "IP:PORT (e.g. 0.0.0.0:36790) or off",
        })
    }

    /// Undo save days with Seata's rule: ≤ 0 means 7.
    pub fn undo_save_days(&self) -> i16 {
        if self.undo.log_save_days <= 0 {
            seata_protocol::DEFAULT_UNDO_LOG_SAVE_DAYS
        } else {
            self.undo.log_save_days
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_and_unknown_key_is_rejected() {
        assert_eq!(TcConfig::from_toml("").unwrap(), TcConfig::default());
        let c = TcConfig::from_toml(
            "store = \"memory\"\n[recovery]\nmax-commit-retry-timeout-ms = 5000\n",
        )
        .unwrap();
        assert_eq!(c.recovery.max_commit_retry_timeout_ms, 5000);
        assert!(TcConfig::from_toml("lisen = \"x\"").is_err());
    }

    #[test]
    fn readme_config_example_is_the_defaults() {
        // Keeps the README's documented config in step with the code.
        let readme = include_str!("../../README.md");
        let start = readme
            .find("Config file (TOML")
            .and_then(|i| readme[i..].find("```toml").map(|j| i + j + "```toml".len()))
            .expect("README has the config example");
        let end = start + readme[start..].find("```").expect("closed code block");
        let parsed = TcConfig::from_toml(&readme[start..end]).expect("README example parses");
        assert_eq!(parsed, TcConfig::default());
    }

    #[test]
    fn limits_are_read_and_checked() {
        let c = TcConfig::from_toml("[limits]\nmax-lock-keys-per-branch = 7\n").unwrap();
        assert_eq!(c.limits.max_lock_keys_per_branch, 7);
        assert_eq!(c.limits.write_timeout_ms, 30_000);
        let mut c = TcConfig::default();
        c.limits.frame_memory_budget = c.max_frame_len - 1;
        assert_eq!(
            c.validate().unwrap_err().field,
            "limits.frame-memory-budget"
        );
        c.limits = LimitsConfig {
            max_connections_per_ip: 0,
            ..LimitsConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().field,
            "limits.max-connections-per-ip"
        );
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = TcConfig::default();
        c.recovery.timeout_retry_period_ms = 0;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "recovery.timeout-retry-period-ms");
    }
}
