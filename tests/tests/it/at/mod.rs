//! AT mode end to end: the real `seata-tc` binary, real MariaDB, the TM template from
//! `seata-tm` and the AT proxy and RM client from `seata-rm`.
//!
//! - [`statements`]: every supported statement kind × global commit and rollback, composite
//!   keys, a table of every common column type.
//! - [`isolation`]: dirty write before rollback, two global transactions on one row, SELECT
//!   FOR UPDATE against a held lock, pass-through outside a global transaction.
//! - [`invariant`]: concurrent transfers across two databases with deliberate rollbacks.
//! - [`new_kinds`]: an upsert, a multi-table UPDATE and a savepoint rollback through the TC.
//! - [`overlapped_begin`]: statements that start while the GlobalBegin is on its way, and a
//!   begin that fails under them.
//!
//! This file holds the fixture ([`Env`]: a TC, a TM client, an RM client with its AT resource
//! manager) and the checks every test repeats: table contents, an empty `undo_log` once phase
//! two is over, and no row lock left on the TC.

mod invariant;
mod isolation;
mod new_kinds;
mod overlapped_begin;
mod statements;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use seata_it::mysql::{TestDb, PHASE_TWO_WAIT};
use seata_it::tc::TcProcess;
use seata_rm::at::{AtConfig, AtResourceManager, DataSourceProxy, TcLink};
use seata_rm::client::{RmClient, RmClientConfig};
use seata_tm::{GlobalStatus, TmClient, TmConfig, TxError};

/// Global transaction timeout for the tests: long enough never to fire on a slow CI machine.
const TX_TIMEOUT: Duration = Duration::from_secs(60);

/// The error a closure returns to ask for a rollback.
const INTENDED: &str = "rolled back on purpose by the test";

/// How a global transaction is to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Commit,
    Rollback,
}

/// A TC plus one TM client and one RM client (with its AT resource manager) connected to it.
struct Env {
    tc: TcProcess,
    tm: TmClient,
    rm: Arc<RmClient>,
    at: Arc<AtResourceManager>,
}

impl Env {
    async fn start() -> Env {
        Env::with_config(AtConfig::default()).await
    }

    async fn with_config(config: AtConfig) -> Env {
        let tc = TcProcess::start();
        let tm = TmClient::connect(TmConfig::new("it-at-tm", vec![tc.addr().to_owned()]))
            .await
            .expect("TM connects");
        let rm = RmClient::connect(RmClientConfig::new("it-at-rm", vec![tc.addr().to_owned()]))
            .await
            .expect("RM connects");
        let at = rm.at(config).expect("AT resource manager");
        Env { tc, tm, rm, at }
    }

    /// Registers `db` as an AT resource of this RM (a pool of at most `max_conns`).
    async fn data_source(&self, db: &TestDb, max_conns: usize) -> DataSourceProxy {
        self.rm
            .at_data_source(&self.at, db.opts(max_conns))
            .await
            .expect("AT data source registered with the TC")
    }

    /// Whether the TC would grant `lock_key` on `ds` to a new transaction now (a global lock
    /// query with an empty XID, as `@GlobalLock` sends).
    async fn lockable(&self, ds: &DataSourceProxy, lock_key: &str) -> bool {
        self.rm
            .lock_query("", ds.resource_id(), lock_key)
            .await
            .expect("global lock query answered")
    }

    /// Waits (bounded) until the TC holds no lock on `lock_key`.
    async fn wait_lockable(&self, ds: &DataSourceProxy, lock_key: &str) {
        let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
        while !self.lockable(ds, lock_key).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{lock_key} on {} still locked after {PHASE_TWO_WAIT:?}; TC log:\n{}",
                ds.resource_id(),
                self.tc.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the TC's status of `xid` until `done` holds (bounded).
    async fn wait_status(&self, xid: &str, done: impl Fn(GlobalStatus) -> bool) -> GlobalStatus {
        let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
        loop {
            let s = self.tm.status(xid).await.expect("status answered");
            if done(s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{xid} stuck in {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `body` in a global transaction through the TM template and ends it as `end` says
    /// (`Err` from the closure for a rollback). Panics if the outcome differs; returns the XID.
    async fn global<F, Fut>(&self, end: End, body: F) -> String
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let mut xid = String::new();
        let result = self
            .tm
            .run("it-at", TX_TIMEOUT, |ctx| {
                xid = ctx.xid().expect("launcher has an XID").to_owned();
                async move {
                    body().await?;
                    match end {
                        End::Commit => Ok(()),
                        End::Rollback => Err(anyhow::anyhow!(INTENDED)),
                    }
                }
            })
            .await;
        match (end, result) {
            (End::Commit, Ok(())) => {}
            (End::Rollback, Err(TxError::Business(e))) if e.to_string() == INTENDED => {}
            (end, other) => panic!("{xid}: expected {end:?}, got {other:?}"),
        }
        xid
    }

    /// After a global transaction ended: the TC forgets it, no lock remains on `lock_key`,
    /// and `undo_log` empties.
    async fn assert_phase_two_done(&self, xid: &str, db: &TestDb, ds: &DataSourceProxy, key: &str) {
        self.wait_status(xid, |s| s == GlobalStatus::Finished).await;
        db.wait_undo_empty().await;
        self.wait_lockable(ds, key).await;
    }

    /// Closes the RM's pools (one per data source) before the databases are dropped.
    async fn close(self, sources: &[&DataSourceProxy]) {
        for ds in sources {
            let _ = ds.pool().clone().disconnect().await;
        }
        self.rm.shutdown();
        self.tm.shutdown();
    }
}
