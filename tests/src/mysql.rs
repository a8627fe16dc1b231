//! Throw-away MariaDB databases for the AT-mode tests: each [`TestDb`] is a uniquely named
//! database holding Seata 1.2's `undo_log` table (at-mode.md 1) plus the test's business tables,
//! with a plain (non-proxied) pool to set up and check data. It is dropped by
//! [`TestDb::cleanup`], or on `Drop` when a test panicked first.
//!
//! The server comes from `SEATA_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`).
//! This module owns no AT-mode logic: the proxy under test gets its own pool from the RM.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, Value};

pub use seata_rm::at::undo::UNDO_LOG_DDL;

/// How long to wait for asynchronous phase-two effects (the RM deletes committed undo logs in
/// the background; the TC retries every second).
pub const PHASE_TWO_WAIT: Duration = Duration::from_secs(20);

/// The server URL without a database: `SEATA_TEST_MYSQL_URL` or the local default.
pub fn server_url() -> String {
    std::env::var("SEATA_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// Options for the server without a database.
pub fn server_opts() -> Opts {
    Opts::from_url(&server_url()).expect("SEATA_TEST_MYSQL_URL is not a mysql:// URL")
}

/// Options for database `db` on the test server, with at most `max_conns` pooled connections
/// (MariaDB's default limit is 151 connections for every test running at once).
pub fn db_opts(db: &str, max_conns: usize) -> Opts {
    let constraints = PoolConstraints::new(1, max_conns.max(1)).expect("1 <= max_conns");
    OptsBuilder::from_opts(server_opts())
        .db_name(Some(db))
        .pool_opts(PoolOpts::default().with_constraints(constraints))
        .into()
}

/// One test's database.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    plain: Pool,
    cleaned: bool,
}

impl TestDb {
    /// Creates `seata_it_<tag>_<pid>_<seq>_<nanos>` with an `undo_log` table and runs `ddl`
    /// (business tables and rows) in it.
    pub async fn create(tag: &str, ddl: &[&str]) -> TestDb {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "seata_it_{tag}_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = Conn::new(server_opts())
            .await
            .unwrap_or_else(|e| panic!("cannot reach MariaDB at {} ({e})", server_url()));
        admin
            .query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create test database");
        admin.disconnect().await.expect("disconnect");
        let db = TestDb {
            plain: Pool::new(db_opts(&name, 4)),
            name,
            cleaned: false,
        };
        db.run(UNDO_LOG_DDL).await;
        for stmt in ddl {
            db.run(stmt).await;
        }
        db
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Options for this database with at most `max_conns` pooled connections, e.g. for the
    /// RM's data source.
    pub fn opts(&self, max_conns: usize) -> Opts {
        db_opts(&self.name, max_conns)
    }

    /// The plain pool (statements through it bypass AT mode).
    pub fn plain(&self) -> &Pool {
        &self.plain
    }

    /// Runs a statement on a plain connection.
    pub async fn run(&self, sql: &str) {
        let mut c = self.plain.get_conn().await.expect("plain connection");
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs a query on a plain connection and converts its rows.
    pub async fn query<T: FromRow + Send + 'static>(&self, sql: &str) -> Vec<T> {
        let mut c = self.plain.get_conn().await.expect("plain connection");
        c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of `sql` as raw values, for whole-table comparisons.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        self.query::<Row>(sql)
            .await
            .into_iter()
            .map(Row::unwrap)
            .collect()
    }

    /// The single integer `sql` returns (a `COUNT(*)`, a `SUM`).
    pub async fn scalar(&self, sql: &str) -> i64 {
        let v: Vec<Option<i64>> = self.query(sql).await;
        v.into_iter().next().flatten().unwrap_or(0)
    }

    /// Rows in `undo_log`.
    pub async fn undo_rows(&self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM undo_log").await
    }

    /// Waits until `undo_log` is empty (phase-two commit deletes undo logs asynchronously);
    /// panics with the count left after [`PHASE_TWO_WAIT`].
    pub async fn wait_undo_empty(&self) {
        let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
        loop {
            let n = self.undo_rows().await;
            if n == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} undo_log rows left in {} after {PHASE_TWO_WAIT:?}",
                n,
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes the plain pool and drops the database.
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        let _ = self.plain.clone().disconnect().await;
        drop_database(&self.name).await;
    }
}

async fn drop_database(name: &str) {
    if let Ok(mut conn) = Conn::new(server_opts()).await {
        // A panicked test may leave a session holding the tables (an open XA branch): give
        // up on the drop after a while rather than hang the test run on the metadata lock.
        let _ = conn.query_drop("SET SESSION lock_wait_timeout = 10").await;
        let _ = conn
            .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await;
        let _ = conn.disconnect().await;
    }
}

impl Drop for TestDb {
    /// A test that panicked before `cleanup` still drops its database, on a helper thread
    /// with its own runtime since the test's runtime cannot be blocked on here.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&name));
            }
        })
        .join();
    }
}
