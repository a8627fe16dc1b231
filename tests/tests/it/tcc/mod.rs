//! TCC mode end to end: the real `seata-tc`, real MariaDB, `seata-tm`'s template and
//! `seata-rm`'s TCC actions, plain (Seata 1.2) and fenced (Seata 1.5's `tcc_fence_log`).
//!
//! The action under test, [`Freeze`], reserves an amount of an account in prepare (`frozen +=
//! amount`), spends it in commit (`balance -= amount, frozen -= amount`) and releases it in
//! rollback (`frozen -= amount`), counting its calls; every test checks the account row.
//!
//! - this file: the fixture, commit, rollback, an error in prepare, timeout rollback, an RM
//!   restart between the phases;
//! - [`fence`]: duplicate commit, duplicate rollback, null rollback, suspension, cleanup;
//! - [`mixed`]: one global transaction with an AT branch and a TCC branch.

mod fence;
mod mixed;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use seata_it::mysql::{TestDb, PHASE_TWO_WAIT};
use seata_it::tc::TcProcess;
use seata_rm::client::{RmClient, RmClientConfig};
use seata_rm::tcc::TCC_FENCE_LOG_DDL;
use seata_rm::tcc::{ActionError, BusinessActionContext, TccAction, TccActionRef, TccFence};
use seata_tm::context::with_xid;
use seata_tm::{GlobalStatus, TmClient, TmConfig, TxError};
use serde_json::json;

/// Global transaction timeout: long enough never to fire unless a test wants it to.
const TX_TIMEOUT: Duration = Duration::from_secs(60);

/// The account every test starts with: id 1, balance 100, nothing frozen.
const ACCOUNT_DDL: &str =
    "CREATE TABLE account (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL, frozen BIGINT NOT NULL)";
const ACCOUNT_ROW: &str = "INSERT INTO account VALUES (1, 100, 0)";

/// How often each phase's business code ran.
#[derive(Debug, Default)]
struct Calls {
    prepare: AtomicUsize,
    commit: AtomicUsize,
    rollback: AtomicUsize,
}

impl Calls {
    fn get(&self) -> (usize, usize, usize) {
        (
            self.prepare.load(Ordering::SeqCst),
            self.commit.load(Ordering::SeqCst),
            self.rollback.load(Ordering::SeqCst),
        )
    }
}

/// The test action. Without a fence it runs its SQL on its own pool (autocommit); with one,
/// on the fence's connection. Parameters: `id`, `amount`, and `fail` (prepare changes the row,
/// then fails).
struct Freeze {
    own_pool: Option<Pool>,
    calls: Arc<Calls>,
}

impl Freeze {
    async fn sql(
        &self,
        ctx: &mut BusinessActionContext,
        sql: &str,
        amount: i64,
    ) -> Result<(), ActionError> {
        let id: i64 = ctx.param("id")?;
        // Every statement names `amount` once or twice, then `id`.
        let params: Vec<mysql_async::Value> = if sql.matches('?').count() == 3 {
            vec![amount.into(), amount.into(), id.into()]
        } else {
            vec![amount.into(), id.into()]
        };
        match &self.own_pool {
            Some(pool) => pool.get_conn().await?.exec_drop(sql, params).await?,
            None => ctx.connection()?.exec_drop(sql, params).await?,
        }
        Ok(())
    }
}

impl TccAction for Freeze {
    async fn prepare(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        self.calls.prepare.fetch_add(1, Ordering::SeqCst);
        let amount: i64 = ctx.param("amount")?;
        self.sql(
            ctx,
            "UPDATE account SET frozen = frozen + ? WHERE id = ?",
            amount,
        )
        .await?;
        if ctx.param::<Option<bool>>("fail")?.unwrap_or(false) {
            return Err("prepare failed on purpose".into());
        }
        Ok(())
    }

    async fn commit(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        self.calls.commit.fetch_add(1, Ordering::SeqCst);
        let amount: i64 = ctx.param("amount")?;
        self.sql(
            ctx,
            "UPDATE account SET balance = balance - ?, frozen = frozen - ? WHERE id = ?",
            amount,
        )
        .await
    }

    async fn rollback(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        self.calls.rollback.fetch_add(1, Ordering::SeqCst);
        let amount: i64 = ctx.param("amount")?;
        self.sql(
            ctx,
            "UPDATE account SET frozen = frozen - ? WHERE id = ?",
            amount,
        )
        .await
    }
}

/// A TC, a TM and an RM client, and a database with the account and the fence table.
struct Env {
    tc: TcProcess,
    tm: TmClient,
    rm: Arc<RmClient>,
    db: TestDb,
}

impl Env {
    async fn start(tag: &str) -> Env {
        let tc = TcProcess::start();
        let db = TestDb::create(tag, &[ACCOUNT_DDL, ACCOUNT_ROW, TCC_FENCE_LOG_DDL]).await;
        let tm = TmClient::connect(TmConfig::new("it-tcc-tm", vec![tc.addr().to_owned()]))
            .await
            .expect("TM connects");
        let rm = Env::rm(&tc).await;
        Env { tc, tm, rm, db }
    }

    async fn rm(tc: &TcProcess) -> Arc<RmClient> {
        RmClient::connect(RmClientConfig::new("it-tcc-rm", vec![tc.addr().to_owned()]))
            .await
            .expect("RM connects")
    }

    /// Registers [`Freeze`] on `rm` as `name`, fenced or not.
    async fn action(
        &self,
        rm: &Arc<RmClient>,
        name: &str,
        fenced: bool,
    ) -> (TccActionRef, Arc<Calls>) {
        let calls = Arc::new(Calls::default());
        let pool = Pool::new(self.db.opts(4));
        let action = if fenced {
            let freeze = Freeze {
                own_pool: None,
                calls: calls.clone(),
            };
            rm.tcc_fenced(name, freeze, TccFence::new(pool)).await
        } else {
            let freeze = Freeze {
                own_pool: Some(pool),
                calls: calls.clone(),
            };
            rm.tcc(name, freeze).await
        };
        (action.expect("action registered"), calls)
    }

    /// `(balance, frozen)` of account 1.
    async fn account(&self) -> (i64, i64) {
        let rows: Vec<(i64, i64)> = self
            .db
            .query("SELECT balance, frozen FROM account WHERE id = 1")
            .await;
        rows.into_iter().next().expect("account 1 exists")
    }

    /// The fence row's status code, if any.
    async fn fence_status(&self, xid: &str, branch_id: i64) -> Option<i64> {
        let mut c = self.db.plain().get_conn().await.expect("plain connection");
        c.exec_first(
            "SELECT status FROM tcc_fence_log WHERE xid = ? AND branch_id = ?",
            (xid, branch_id),
        )
        .await
        .expect("fence row query")
    }

    /// Polls the TC until `xid` is `Finished` (bounded).
    async fn wait_finished(&self, xid: &str) {
        let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
        loop {
            let s = self.tm.status(xid).await.expect("status answered");
            if s == GlobalStatus::Finished {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{xid} stuck in {s:?}; TC log:\n{}",
                self.tc.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs one call of `action` in a global transaction that commits (`commit`) or fails
    /// on purpose; returns the XID and the branch id.
    async fn global(
        &self,
        action: &TccActionRef,
        params: serde_json::Value,
        commit: bool,
    ) -> (String, i64) {
        let mut ids = (String::new(), 0);
        let result = self
            .tm
            .run("it-tcc", TX_TIMEOUT, |ctx| {
                ids.0 = ctx.xid().expect("launcher has an XID").to_owned();
                let action = action.clone();
                async move {
                    let branch = action.call(params).await.map_err(|e| e.to_string())?;
                    if commit {
                        Ok(branch)
                    } else {
                        Err(format!("rolled back on purpose (branch {branch})"))
                    }
                }
            })
            .await;
        match (commit, result) {
            (true, Ok(branch)) => ids.1 = branch,
            (false, Err(TxError::Business(e))) => {
                ids.1 = e
                    .rsplit_once("branch ")
                    .and_then(|(_, b)| b.trim_end_matches(')').parse().ok())
                    .unwrap_or(0);
            }
            (_, other) => panic!("{}: unexpected outcome {other:?}", ids.0),
        }
        ids
    }

    async fn close(self) {
        self.rm.shutdown();
        self.tm.shutdown();
        self.db.cleanup().await;
    }
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn commit_runs_prepare_then_commit() {
    let env = Env::start("tcc_commit").await;
    let (action, calls) = env.action(&env.rm, "freeze", false).await;
    let (xid, branch) = env
        .global(&action, json!({"id": 1, "amount": 30}), true)
        .await;
    assert!(branch > 0);
    env.wait_finished(&xid).await;
    assert_eq!(calls.get(), (1, 1, 0));
    assert_eq!(env.account().await, (70, 0));
    env.close().await;
}

#[tokio::test]
async fn rollback_releases_the_reservation() {
    let env = Env::start("tcc_rollback").await;
    let (action, calls) = env.action(&env.rm, "freeze", false).await;
    let (xid, _) = env
        .global(&action, json!({"id": 1, "amount": 30}), false)
        .await;
    env.wait_finished(&xid).await;
    assert_eq!(calls.get(), (1, 0, 1));
    assert_eq!(env.account().await, (100, 0));
    env.close().await;
}

#[tokio::test]
async fn error_in_prepare_fails_the_call_and_rollback_runs() {
    // Seata 1.2 without a fence: the branch is registered before prepare, so the global
    // rollback calls the action's rollback even though prepare failed.
    let env = Env::start("tcc_prepare_err").await;
    let (action, calls) = env.action(&env.rm, "freeze", false).await;
    let mut xid = String::new();
    let result: Result<(), TxError<String>> = env
        .tm
        .run("it-tcc", TX_TIMEOUT, |ctx| {
            xid = ctx.xid().expect("xid").to_owned();
            let action = action.clone();
            async move {
                action
                    .call(json!({"id": 1, "amount": 30, "fail": true}))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await;
    match result {
        Err(TxError::Business(e)) => assert!(e.contains("prepare failed on purpose"), "{e}"),
        other => panic!("expected the prepare error, got {other:?}"),
    }
    env.wait_finished(&xid).await;
    assert_eq!(calls.get(), (1, 0, 1));
    // The plain action's prepare committed its reservation; its rollback released it.
    assert_eq!(env.account().await, (100, 0));
    env.close().await;
}

#[tokio::test]
async fn timeout_rolls_back_a_prepared_branch() {
    let env = Env::start("tcc_timeout").await;
    let (action, calls) = env.action(&env.rm, "freeze", true).await;
    let tx = env
        .tm
        .begin("it-tcc-timeout", Duration::from_secs(2))
        .await
        .expect("begin");
    let xid = tx.xid().to_owned();
    let branch = with_xid(xid.clone(), action.call(json!({"id": 1, "amount": 30})))
        .await
        .expect("prepare");
    assert_eq!(env.account().await, (100, 30));
    // The TM never commits: the TC's timeout check rolls the transaction back.
    env.wait_finished(&xid).await;
    assert_eq!(calls.get(), (1, 0, 1));
    assert_eq!(env.account().await, (100, 0));
    assert_eq!(env.fence_status(&xid, branch).await, Some(3));
    drop(tx);
    env.close().await;
}

#[tokio::test]
async fn rm_restart_between_phases_commits_on_the_new_instance() {
    let env = Env::start("tcc_restart").await;
    let (action, first_calls) = env.action(&env.rm, "freeze", true).await;
    let mut tx = env
        .tm
        .begin("it-tcc-restart", TX_TIMEOUT)
        .await
        .expect("begin");
    let xid = tx.xid().to_owned();
    let branch = with_xid(xid.clone(), action.call(json!({"id": 1, "amount": 30})))
        .await
        .expect("prepare");
    // The RM goes away after phase one; another instance of the service comes up.
    env.rm.shutdown();
    drop(action);
    let rm2 = Env::rm(&env.tc).await;
    let (_action2, calls) = env.action(&rm2, "freeze", true).await;
    let status = tx.commit().await.expect("commit answered");
    assert!(
        matches!(
            status,
            GlobalStatus::Committed | GlobalStatus::CommitRetrying
        ),
        "{status:?}"
    );
    env.wait_finished(&xid).await;
    assert_eq!(first_calls.get(), (1, 0, 0));
    assert_eq!(calls.get(), (0, 1, 0));
    assert_eq!(env.account().await, (70, 0));
    assert_eq!(env.fence_status(&xid, branch).await, Some(2));
    rm2.shutdown();
    env.close().await;
}
