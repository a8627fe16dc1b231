//! Helpers for the db-store (several TCs on one MySQL database) tests: a uniquely named
//! database per test, dropped afterwards, and TC flags for it. The server comes from
//! `SEATA_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use seata_protocol::rpc::{NoRequests, Registration, TcClient, TcClientConfig};

use crate::tc::TcProcess;

/// The MySQL server of the tests, without a database.
pub fn server_url() -> String {
    std::env::var("SEATA_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
        .trim_end_matches('/')
        .to_owned()
}

/// A database of its own for one test; dropped with the value.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    config: tempfile::TempDir,
}

impl TestDb {
    /// Creates `seata_ha_<pid>_<n>`.
    pub async fn create() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "seata_ha_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = mysql_async::Conn::from_url(server_url())
            .await
            .expect("MySQL reachable (set SEATA_TEST_MYSQL_URL)");
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await
            .expect("drop old test database");
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create test database");
        let _ = conn.disconnect().await;
        let url = format!("{}/{name}", server_url());
        TestDb {
            name,
            url,
            config: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `mysql://.../<name>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Starts a TC on this database with a short lease (`lease_ms`) so takeovers are quick.
    pub fn start_tc(&self, lease_ms: u64) -> TcProcess {
        let path = self.config.path().join(format!("tc-{lease_ms}.toml"));
        std::fs::write(&path, format!("db-lease-ms = {lease_ms}\n")).expect("write TC config");
        let path = path.to_str().expect("utf-8 temp path").to_owned();
        TcProcess::start_with(&[
            "--config",
            &path,
            "--store",
            "db",
            "--db-url",
            &self.url,
            "--init-db",
        ])
    }

    /// Rows of `SELECT COUNT(*) FROM <table>` (a fixed table name from the test).
    pub async fn count(&self, table: &str) -> i64 {
        let mut conn = mysql_async::Conn::from_url(&self.url)
            .await
            .expect("connect test database");
        let n: Option<i64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .expect("count rows");
        let _ = conn.disconnect().await;
        n.unwrap_or(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (server_url(), self.name.clone());
        // Drop runs outside any runtime we could block on: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut conn) = mysql_async::Conn::from_url(server).await {
                        let _ = conn
                            .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                            .await;
                        let _ = conn.disconnect().await;
                    }
                });
            }
        })
        .join();
    }
}

/// A TM connected to every address (requests spread round-robin, fail over on loss).
pub async fn tm_all(addrs: &[&str]) -> TcClient {
    let config = TcClientConfig::new(
        addrs.iter().map(|a| a.to_string()).collect(),
        Registration::Tm {
            application_id: "it-tm".into(),
            transaction_service_group: "it_tx_group".into(),
        },
    );
    TcClient::connect(config, Arc::new(NoRequests), Duration::from_secs(10))
        .await
        .expect("TM connects")
}
