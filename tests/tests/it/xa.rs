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
        Env::rm_checking_after(tc, db, Duration::from_secs(10)).await
    }

    /// An RM whose held branches are checked with the TC after `check_after`.
    async fn rm_checking_after(
        tc: &TcProcess,
        db: &TestDb,
        check_after: Duration,
    ) -> (Arc<RmClient>, XaDataSource) {
        let mut config = RmClientConfig::new("it-xa-rm", vec![tc.addr().to_owned()]);
        config.xa_check_after = check_after;
        let rm = RmClient::connect(config).await.expect("RM connects");
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

/// RM connections the TC lists (admin API, read from loopback).
async fn rm_connections(tc: &TcProcess) -> usize {
    let url = format!("http://{}/admin/v1/clients", tc.http_addr());
    let view: serde_json::Value = reqwest::get(url)
        .await
        .expect("clients")
        .json()
        .await
        .expect("JSON");
    view["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|c| c["role"] == "RM")
        .count()
}

/// Waits until the TC lists `n` RM connections.
async fn wait_rm_connections(tc: &TcProcess, n: usize) {
    let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
    loop {
        let listed = rm_connections(tc).await;
        if listed == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{listed} RM connections listed, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After a TC restart the RM that began an XA branch comes back on a new connection, so the
/// branch's phase two can reach another process of the service while the branch is still
/// active (not prepared) in the first. That process must not answer "done": the TC would end
/// the transaction and the branch, prepared afterwards, would hold its rows for ever.
#[tokio::test]
async fn phase_two_reaching_another_process_waits_for_the_owner() {
    let env = Env::start("xa_elsewhere").await;
    let tx = env
        .tm
        .begin("it-xa-elsewhere", TX_TIMEOUT)
        .await
        .expect("begin");
    let xid = tx.xid().to_owned();
    let mut owner = with_xid(xid.clone(), env.xa.begin()).await.expect("branch");
    owner.exec_drop(DEBIT, (30,)).await.expect("update");
    // The owner's TC connection is gone; another process of the service is connected.
    let (rm_b, _xa_b) = Env::rm(&env.tc, &env.db).await;
    env.rm.shutdown();
    wait_rm_connections(&env.tc, 1).await;
    let status = env.tm.rollback(&xid).await.expect("rollback answered");
    let after = env.tm.status(&xid).await.expect("status");
    // The owner ends its branch (it would prepare into a finished transaction otherwise),
    // before any assertion so that a failure cannot leave its session holding the table;
    // then the other process finds nothing left and the TC finishes.
    owner.rollback().await.expect("local rollback");
    assert_eq!(status, GlobalStatus::RollbackRetrying, "{}", env.tc.log());
    assert_ne!(after, GlobalStatus::Finished);
    env.wait_finished(&xid).await;
    assert_eq!(env.balance().await, 100);
    assert_eq!(prepared_of(&xid).await, Vec::<String>::new());
    drop(tx);
    rm_b.shutdown();
    env.close().await;
}

/// After a TC restart both processes of the service come back on new ports, so the TC no
/// longer knows which one holds a prepared branch's session. The one that does not answers
/// "retry" (its probe finds the XID taken); the TC must then ask the next holder at once, so
/// the commit ends in one pass instead of in backed-off retries while the rows stay locked.
/// Two branches: phase two takes the holders in turn, so one of them is asked the wrong
/// process first.
#[tokio::test]
async fn after_a_tc_restart_xa_phase_two_finds_the_holding_process_in_one_pass() {
    let mut env = Env::start("xa_next_holder").await;
    env.db.run("INSERT INTO account VALUES (2, 100)").await;
    let mut tx = env
        .tm
        .begin("it-xa-next-holder", TX_TIMEOUT)
        .await
        .expect("begin");
    let xid = tx.xid().to_owned();
    for id in [1_i64, 2] {
        let xa = env.xa.clone();
        with_xid(xid.clone(), async move {
            let mut c = xa.begin().await?;
            c.exec_drop(
                "UPDATE account SET balance = balance - 30 WHERE id = ?",
                (id,),
            )
            .await?;
            c.commit().await
        })
        .await
        .expect("prepared");
    }
    let (rm_b, _xa_b) = Env::rm(&env.tc, &env.db).await;
    env.tc.restart();
    wait_rm_connections(&env.tc, 2).await;
    assert!(env.tm.wait_connected(PHASE_TWO_WAIT).await, "TM not back");
    let status = tx.commit().await.expect("commit answered");
    assert_eq!(status, GlobalStatus::Committed, "{}", env.tc.log());
    let total: i64 = env
        .db
        .scalar("SELECT CAST(SUM(balance) AS SIGNED) FROM account")
        .await;
    assert_eq!(total, 140);
    assert_eq!(prepared_of(&xid).await, Vec::<String>::new());
    rm_b.shutdown();
    env.close().await;
}

/// A branch that prepares after its global transaction ended without it (here the TC, on the
/// memory store, forgot it in a restart) is rolled back by the RM's own check, not kept
/// prepared until the RM restarts.
#[tokio::test]
async fn a_held_branch_whose_transaction_ended_is_rolled_back() {
    let mut tc = TcProcess::start_with(&["--store", "memory"]);
    let db = TestDb::create("xa_orphan_held", &[ACCOUNT_DDL, ACCOUNT_ROW]).await;
    let tm = TmClient::connect(TmConfig::new("it-xa-tm", vec![tc.addr().to_owned()]))
        .await
        .expect("TM connects");
    let (rm, xa) = Env::rm_checking_after(&tc, &db, Duration::from_millis(200)).await;
    let tx = tm
        .begin("it-xa-orphan-held", TX_TIMEOUT)
        .await
        .expect("begin");
    let xid = tx.xid().to_owned();
    let mut c = with_xid(xid.clone(), xa.begin()).await.expect("branch");
    c.exec_drop(DEBIT, (30,)).await.expect("update");
    tc.kill();
    tc.restart();
    c.commit().await.expect("prepared");
    let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
    while !prepared_of(&xid).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{xid} still prepared; TC log:\n{}",
            tc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let balance: i64 = db.scalar("SELECT balance FROM account WHERE id = 1").await;
    assert_eq!(balance, 100);
    drop(tx);
    rm.shutdown();
    tm.shutdown();
    db.cleanup().await;
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
