//! Test harness: a fake in-process TC link and a throw-away MariaDB database per test.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, Row, Value};
use seata_protocol::BranchStatus;
use seata_rm::at::{AtConfig, AtResourceManager, DataSourceProxy, TcLink};
use seata_rm::error::RmError;

/// A TC that hands out branch ids and records what it was asked.
#[derive(Debug, Default)]
pub struct FakeTc {
    next_branch: AtomicI64,
    /// Branch registrations: (xid, resource id, lock keys).
    pub registered: Mutex<Vec<(String, String, String)>>,
    /// Successful registrations: (xid, branch id).
    pub branches: Mutex<Vec<(String, i64)>>,
    /// Branch reports: (xid, branch id, status).
    pub reports: Mutex<Vec<(String, i64, BranchStatus)>>,
    /// Lock queries: (xid, lock keys).
    pub queries: Mutex<Vec<(String, String)>>,
    /// Answer this many registrations with a lock conflict first.
    pub conflicts: AtomicU32,
    /// Answer this many lock queries with "locked" first.
    pub locked_queries: AtomicU32,
    /// When non-zero, the next registration returns this branch id.
    pub force_branch_id: AtomicI64,
}

impl FakeTc {
    pub fn new() -> Arc<Self> {
        Arc::new(FakeTc {
            next_branch: AtomicI64::new(1000),
            ..FakeTc::default()
        })
    }

    pub fn lock_keys(&self) -> Vec<String> {
        self.registered
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.2.clone())
            .collect()
    }

    pub fn last_branch(&self) -> (String, i64) {
        self.branches.lock().unwrap().last().unwrap().clone()
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl TcLink for FakeTc {
    fn branch_register<'a>(
        &'a self,
        xid: &'a str,
        resource_id: &'a str,
        lock_keys: &'a str,
        _application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, RmError>> {
        async move {
            self.registered.lock().unwrap().push((
                xid.to_string(),
                resource_id.to_string(),
                lock_keys.to_string(),
            ));
            if take_one(&self.conflicts) {
                return Err(RmError::LockConflict {
                    xid: xid.to_string(),
                    lock_keys: lock_keys.to_string(),
                    message: "held by another global transaction".into(),
                });
            }
            let forced = self.force_branch_id.swap(0, Ordering::SeqCst);
            let id = if forced != 0 {
                forced
            } else {
                self.next_branch.fetch_add(1, Ordering::SeqCst) + 1
            };
            self.branches.lock().unwrap().push((xid.to_string(), id));
            Ok(id)
        }
        .boxed()
    }

    fn branch_report<'a>(
        &'a self,
        xid: &'a str,
        branch_id: i64,
        status: BranchStatus,
        _application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), RmError>> {
        async move {
            self.reports
                .lock()
                .unwrap()
                .push((xid.to_string(), branch_id, status));
            Ok(())
        }
        .boxed()
    }

    fn lock_query<'a>(
        &'a self,
        xid: &'a str,
        _resource_id: &'a str,
        lock_keys: &'a str,
    ) -> BoxFuture<'a, Result<bool, RmError>> {
        async move {
            self.queries
                .lock()
                .unwrap()
                .push((xid.to_string(), lock_keys.to_string()));
            Ok(!take_one(&self.locked_queries))
        }
        .boxed()
    }
}

pub use seata_rm::at::undo::UNDO_LOG_DDL;

/// One test's database, AT resource manager and fake TC.
pub struct TestDb {
    pub name: String,
    pub tc: Arc<FakeTc>,
    pub rm: Arc<AtResourceManager>,
    pub ds: DataSourceProxy,
    pub plain: Pool,
    admin: Opts,
    cleaned: bool,
}

fn base_opts() -> Opts {
    let url = std::env::var("SEATA_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string());
    Opts::from_url(&url).expect("SEATA_TEST_MYSQL_URL is not a MySQL URL")
}

impl TestDb {
    /// Creates a uniquely named database with an undo_log table and runs `ddl` in it.
    pub async fn new(ddl: &[&str]) -> TestDb {
        Self::with_config(ddl, AtConfig::default()).await
    }

    pub async fn with_config(ddl: &[&str], config: AtConfig) -> TestDb {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "seata_rm_it_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let admin = base_opts();
        let mut conn = Conn::new(admin.clone()).await.unwrap();
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        let opts: Opts = OptsBuilder::from_opts(admin.clone())
            .db_name(Some(name.clone()))
            .into();
        let plain = Pool::new(opts.clone());
        let mut c = plain.get_conn().await.unwrap();
        c.query_drop(UNDO_LOG_DDL).await.unwrap();
        for stmt in ddl {
            c.query_drop(*stmt).await.unwrap();
        }
        drop(c);
        let tc = FakeTc::new();
        let rm = AtResourceManager::new(tc.clone(), config).unwrap();
        let ds = rm.data_source(opts);
        TestDb {
            name,
            tc,
            rm,
            ds,
            plain,
            admin,
            cleaned: false,
        }
    }

    /// The connection options of this database.
    pub fn opts(&self) -> Opts {
        OptsBuilder::from_opts(self.admin.clone())
            .db_name(Some(self.name.clone()))
            .into()
    }

    /// Runs a query on a plain (non-proxied) connection.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        let mut c = self.plain.get_conn().await.unwrap();
        let rows: Vec<Row> = c.query(sql).await.unwrap();
        rows.into_iter().map(Row::unwrap).collect()
    }

    /// Runs a statement on a plain connection.
    pub async fn run(&self, sql: &str) {
        let mut c = self.plain.get_conn().await.unwrap();
        c.query_drop(sql).await.unwrap();
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let mut c = self.plain.get_conn().await.unwrap();
        c.query_first::<i64, _>(sql).await.unwrap().unwrap()
    }

    pub async fn undo_rows(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM undo_log").await
    }

    /// Drops the database.
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        self.ds.pool().clone().disconnect().await.unwrap();
        self.plain.clone().disconnect().await.unwrap();
        let mut conn = Conn::new(self.admin.clone()).await.unwrap();
        conn.query_drop(format!("DROP DATABASE `{}`", self.name))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
    }
}

impl Drop for TestDb {
    /// A test that panicked before `cleanup` still drops its database (on a helper thread,
    /// since the test's runtime cannot be blocked on here).
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = Conn::new(admin).await {
                    let _ = conn.query_drop(format!("DROP DATABASE `{name}`")).await;
                    let _ = conn.disconnect().await;
                }
            });
        })
        .join();
    }
}
