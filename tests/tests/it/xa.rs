//! XA mode end to end: the real `seata-tc`, real MariaDB (whose XA transactions are the
//! branches) and `seata-rm`'s XA data source. Every test checks the account row and that
//! `XA RECOVER` lists no branch of the test's transaction at the end.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use seata_it::mysql::{server_opts, TestDb, PHASE_TWO_WAIT};
use seata_it::tc::TcProcess;
use seata_rm::client::{RmClient, RmClientConfig};
use seata_rm::xa::xid::BranchXid;
use seata_rm::xa::XaDataSource;
use seata_tm::context::with_xid;
use seata_tm::{GlobalStatus, TmClient, TmConfig, TxError};

const TX_TIMEOUT: Duration = Duration::from_secs(60);

const ACCOUNT_DDL: &str = "CREATE TABLE account (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)";
const ACCOUNT_ROW: &str = "INSERT INTO account VALUES (1, 100)";
const DEBIT: &str = "UPDATE account SET balance = balance - ? WHERE id = 1";

struct Env {
    tc: TcProcess,
    tm: TmClient,
    rm: Arc<RmClient>,
    xa: XaDataSource,
    db: TestDb,
}

impl Env {
    async fn start(tag: &str) -> Env {
        let tc = TcProcess::start();
        let db = TestDb::create(tag, &[ACCOUNT_DDL, ACCOUNT_ROW]).await;
        let tm = TmClient::connect(TmConfig::new("it-xa-tm", vec![tc.addr().to_owned()]))
            .await
            .expect("TM connects");
        let (rm, xa) = Env::rm(&tc, &db).await;
        Env { tc, tm, rm, xa, db }
    }

    async fn rm(tc: &TcProcess, db: &TestDb) -> (Arc<RmClient>, XaDataSource) {
        let rm = RmClient::connect(RmClientConfig::new("it-xa-rm", vec![tc.addr().to_owned()]))
            .await
            .expect("RM connects");
        let xa = rm.xa_data_source(db.opts(4)).await.expect("XA data source");
        (rm, xa)
    }

    async fn balance(&self) -> i64 {
        self.db
            .scalar("SELECT balance FROM account WHERE id = 1")
            .await
    }

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

    async fn close(self) {
        self.rm.shutdown();
        self.tm.shutdown();
        self.db.cleanup().await;
    }
}

/// The prepared branches (`xid-branchId`) of global transaction `xid` on the server.
async fn prepared_of(xid: &str) -> Vec<String> {
    let mut c = mysql_async::Conn::new(server_opts())
        .await
        .expect("admin connection");
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = c.query("XA RECOVER").await.expect("XA RECOVER");
    let _ = c.disconnect().await;
    rows.into_iter()
        .filter_map(|(f, g, b, d)| BranchXid::from_recover_row(f, g, b, &d))
        .filter(|x| x.global_xid() == Some(xid))
        .map(|x| x.key())
        .collect()
}

/// One XA branch debiting `amount` inside the current global transaction, prepared.
async fn debit(xa: &XaDataSource, amount: i64) -> Result<i64, String> {
    let mut c = xa.begin().await.map_err(|e| e.to_string())?;
    let branch = c.branch_id().unwrap_or(0);
    c.exec_drop(DEBIT, (amount,))
        .await
        .map_err(|e| e.to_string())?;
    c.commit().await.map_err(|e| e.to_string())?;
    Ok(branch)
}

async fn global(env: &Env, commit: bool) -> String {
    let mut xid = String::new();
    let result: Result<(), TxError<String>> = env
        .tm
        .run("it-xa", TX_TIMEOUT, |ctx| {
            xid = ctx.xid().expect("xid").to_owned();
            let xa = env.xa.clone();
            async move {
                debit(&xa, 30).await?;
                if commit {
                    Ok(())
                } else {
                    Err("rolled back on purpose".into())
                }
            }
        })
        .await;
    assert_eq!(result.is_ok(), commit, "{result:?}");
    xid
}

#[tokio::test]
async fn commit_runs_xa_commit() {
    let env = Env::start("xa_commit").await;
    let xid = global(&env, true).await;
    env.wait_finished(&xid).await;
    assert_eq!(env.balance().await, 70);
    assert_eq!(prepared_of(&xid).await, Vec::<String>::new());
    assert!(env.xa.held_sessions().is_empty());
    env.close().await;
}

#[tokio::test]
async fn rollback_runs_xa_rollback() {
    let env = Env::start("xa_rollback").await;
    let xid = global(&env, false).await;
    env.wait_finished(&xid).await;
    assert_eq!(env.balance().await, 100);
    assert_eq!(prepared_of(&xid).await, Vec::<String>::new());
    env.close().await;
}

#[tokio::test]
async fn local_rollback_ends_the_branch() {
    let env = Env::start("xa_local_rollback").await;
    let mut tx = env
        .tm
        .begin("it-xa-local", TX_TIMEOUT)
        .await
        .expect("begin");
    let xid = tx.xid().to_owned();
    with_xid(xid.clone(), async {
        let mut c = env.xa.begin().await.expect("XA START");
        c.exec_drop(DEBIT, (30,)).await.expect("debit");
        c.rollback().await.expect("local rollback");
    })
    .await;
    assert_eq!(env.balance().await, 100);
    tx.commit().await.expect("commit answered");
    env.wait_finished(&xid).await;
    assert_eq!(env.balance().await, 100);
    assert_eq!(prepared_of(&xid).await, Vec::<String>::new());
    env.close().await;
}

/// The RM dies after `XA PREPARE` (its MySQL sessions end with it); the TM commits while no
/// RM is connected; a restarted RM finds the branch with `XA RECOVER`, leaves it to the TC,
/// and the TC's retry commits it on a fresh connection.
#[tokio::test]
async fn rm_killed_after_prepare_commits_after_restart() {
    let mut env = Env::start("xa_rm_killed").await;
    let mut tx = env.tm.begin("it-xa-kill", TX_TIMEOUT).await.expect("begin");
    let xid = tx.xid().to_owned();
    with_xid(xid.clone(), debit(&env.xa, 30))
        .await
        .expect("prepared");
    assert_eq!(prepared_of(&xid).await.len(), 1);
    // "kill -9": the sessions die with the process, and the TC connection closes.
    let mut admin = mysql_async::Conn::new(server_opts()).await.expect("admin");
    for id in env.xa.held_sessions() {
        admin.query_drop(format!("KILL {id}")).await.expect("KILL");
    }
    let _ = admin.disconnect().await;
    env.rm.shutdown();
    let status = tx.commit().await.expect("commit answered");
    assert_ne!(status, GlobalStatus::Finished);
    assert_eq!(
        env.balance().await,
        100,
        "not committed while the RM is gone"
    );
    let (rm2, xa2) = Env::rm(&env.tc, &env.db).await;
    env.rm = rm2;
    env.xa = xa2;
    env.wait_finished(&xid).await;
    assert_eq!(env.balance().await, 70);
    assert_eq!(prepared_of(&xid).await, Vec::<String>::new());
    env.close().await;
}

/// A TM that never commits: the TC's timeout rolls the prepared branch back.
#[tokio::test]
async fn timeout_rolls_back_a_prepared_branch() {
    let env = Env::start("xa_timeout").await;
    let tx = env
        .tm
        .begin("it-xa-timeout", Duration::from_secs(2))
        .await
        .expect("begin");
    let xid = tx.xid().to_owned();
    with_xid(xid.clone(), debit(&env.xa, 30))
        .await
        .expect("prepared");
    env.wait_finished(&xid).await;
    assert_eq!(env.balance().await, 100);
    assert_eq!(prepared_of(&xid).await, Vec::<String>::new());
    drop(tx);
    env.close().await;
}

/// A prepared branch of a global transaction the TC does not know (its RM died and the TC
/// lost or finished it) is rolled back by recovery instead of holding its row lock.
#[tokio::test]
async fn recovery_rolls_back_branches_the_tc_does_not_know() {
    let env = Env::start("xa_orphan").await;
    // Begun by this test's TC (other tests' RMs, asking their own TCs, leave it alone).
    let orphan = format!("{}:{}", env.tc.addr(), std::process::id());
    let bx = BranchXid::new(&orphan, 7);
    let mut c = mysql_async::Conn::new(env.db.opts(1)).await.expect("conn");
    for sql in [
        format!("XA START {}", bx.sql()),
        "UPDATE account SET balance = 0 WHERE id = 1".into(),
        format!("XA END {}", bx.sql()),
        format!("XA PREPARE {}", bx.sql()),
    ] {
        c.query_drop(sql).await.expect("orphan branch");
    }
    c.disconnect().await.expect("disconnect");
    assert_eq!(prepared_of(&orphan).await, vec![bx.key()]);
    let found = env.xa.recover().await.expect("recover");
    assert!(found.rolled_back.contains(&bx.key()), "{found:?}");
    assert_eq!(prepared_of(&orphan).await, Vec::<String>::new());
    assert_eq!(env.balance().await, 100);
    // A branch of a TC this RM is not connected to is not judged.
    let foreign = BranchXid::new("10.255.255.1:8091:1", 9);
    let mut c = mysql_async::Conn::new(env.db.opts(1)).await.expect("conn");
    env.db
        .run("CREATE TABLE scratch (id INT PRIMARY KEY)")
        .await;
    for sql in [
        format!("XA START {}", foreign.sql()),
        "INSERT INTO scratch VALUES (1)".into(),
        format!("XA END {}", foreign.sql()),
        format!("XA PREPARE {}", foreign.sql()),
    ] {
        c.query_drop(sql).await.expect("foreign branch");
    }
    c.disconnect().await.expect("disconnect");
    let found = env.xa.recover().await.expect("recover");
    assert!(found.foreign.contains(&foreign.key()), "{found:?}");
    let mut c = mysql_async::Conn::new(env.db.opts(1)).await.expect("conn");
    c.query_drop(format!("XA ROLLBACK {}", foreign.sql()))
        .await
        .expect("cleanup");
    env.close().await;
}
