//! The closure of `TmClient::run` starts while the GlobalBegin is on its way (multi-thread
//! runtime; a relay holds the TC's answer until the test lets it through): a read runs
//! without waiting for the XID, an UPDATE runs its SQL before the answer and registers its
//! branch after it, and both commit and rollback come out exact. When
//! the begin fails, the UPDATE's local transaction is rolled back: the row is unchanged,
//! unlocked and without an undo log, and `run` returns the begin's error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use seata_it::mysql::{TestDb, PHASE_TWO_WAIT};
use seata_rm::error::RmError;
use seata_tm::context::{current_bound_xid, BoundXid};
use seata_tm::{TmClient, TmConfig, TxError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{End, Env, INTENDED, TX_TIMEOUT};

const ACCOUNT: &str = "CREATE TABLE account (id INT PRIMARY KEY, balance INT NOT NULL)";
const ROWS: &str = "INSERT INTO account VALUES (1, 100), (2, 200)";
const UPDATE: &str = "UPDATE account SET balance = balance + ? WHERE id = ?";

/// True while the TC's answer to the begin has not been taken in.
fn begin_pending() -> bool {
    matches!(current_bound_xid(), Some(BoundXid::Pending(p)) if p.now().is_none())
}

/// A TCP relay in front of the TC whose TC→client direction can be held shut: what the TC
/// sends while it is shut waits in the relay until it opens.
struct Relay {
    addr: String,
    open: watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (open, gate) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut client_rd, mut client_wr) = client.into_split();
                let (mut server_rd, mut server_wr) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
                });
                let mut gate = gate.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_rd.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if gate.wait_for(|open| *open).await.is_err() {
                            return;
                        }
                        if client_wr.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Relay { addr, open }
    }
}

/// Opens the relay once MySQL shows a transaction of connection `id` that has modified a row
/// (bounded; it opens anyway after the wait and says whether it saw one).
async fn open_when_modified(db: &TestDb, id: u64, relay: &watch::Sender<bool>) -> bool {
    let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
    let mut conn = db.plain().get_conn().await.expect("plain connection");
    // InnoDB refreshes what `innodb_trx` shows only when it was last read over 100 ms ago:
    // polling faster would see one snapshot for ever, and the first read of a round could
    // see the previous round's transaction on the same pooled connection.
    let fresh = Duration::from_millis(150);
    let seen = loop {
        tokio::time::sleep(fresh).await;
        let modified: Option<u64> = conn
            .exec_first(
                "SELECT trx_rows_modified FROM information_schema.innodb_trx \
                 WHERE trx_mysql_thread_id = ?",
                (id,),
            )
            .await
            .expect("innodb_trx readable");
        if modified.is_some_and(|n| n > 0) {
            break true;
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
    };
    relay.send_replace(true);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_overlapping_the_begin_commits_and_rolls_back_exactly() {
    let env = Env::start().await;
    let db = TestDb::create("overlap", &[ACCOUNT, ROWS]).await;
    let ds = env.data_source(&db, 2).await;
    // The TM reaches the TC through the relay, so the test decides when the TC's answer to
    // the begin arrives; the RM connects directly.
    let relay = Relay::start(env.tc.addr().to_owned()).await;
    let tm = TmClient::connect(TmConfig::new("it-overlap-tm", vec![relay.addr.clone()]))
        .await
        .expect("TM connects through the relay");
    for (end, balance) in [(End::Rollback, 100), (End::Commit, 105)] {
        let mut conn = ds.get_conn().await.expect("AT connection");
        let id: Option<u64> = conn
            .exec_first("SELECT CONNECTION_ID()", ())
            .await
            .expect("connection id");
        let id = id.expect("a connection id");
        relay.open.send_replace(false);
        let opener = async { open_when_modified(&db, id, &relay.open).await };
        let seen = Arc::new(Mutex::new(None));
        let seen_in = seen.clone();
        let run = tm.run("it-overlap", TX_TIMEOUT, |ctx| async move {
            let at_start = begin_pending();
            let read: Option<i32> = conn
                .exec_first("SELECT balance FROM account WHERE id = ?", (1,))
                .await?;
            assert_eq!(read, Some(100));
            // Still unanswered: the read did not wait for the XID.
            let after_read = begin_pending();
            // Its SQL runs and changes the row; the relay opens on seeing that, and the
            // branch registers once the XID is in.
            conn.exec_drop(UPDATE, (5, 1)).await?;
            let xid = ctx.wait_xid().await?.expect("a launcher has an XID");
            *seen_in.lock().unwrap() = Some((at_start, after_read, xid));
            match end {
                End::Commit => Ok(()),
                End::Rollback => Err(anyhow::anyhow!(INTENDED)),
            }
        });
        let (result, modified_before_answer) = tokio::join!(run, opener);
        match (end, &result) {
            (End::Commit, Ok(())) => {}
            (End::Rollback, Err(TxError::Business(e))) if e.to_string() == INTENDED => {}
            _ => panic!("expected {end:?}, got {result:?}"),
        }
        assert!(
            modified_before_answer,
            "the UPDATE's SQL did not run before the TC's answer to the begin"
        );
        let (at_start, after_read, xid) = seen.lock().unwrap().take().expect("the closure ran");
        assert!(
            at_start,
            "the closure started only after the begin was answered"
        );
        assert!(after_read, "the read waited for the XID");
        env.assert_phase_two_done(&xid, &db, &ds, "account:1").await;
        let balances: Vec<(i32, i32)> = db
            .query("SELECT id, balance FROM account ORDER BY id")
            .await;
        assert_eq!(balances, vec![(1, balance), (2, 200)], "after {end:?}");
    }
    tm.shutdown();
    env.close(&[&ds]).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_begin_rolls_the_overlapping_update_back() {
    let mut env = Env::start().await;
    let db = TestDb::create("overlapfail", &[ACCOUNT, ROWS]).await;
    let ds = env.data_source(&db, 2).await;
    // A TM that gives up on a TC it cannot reach after a second.
    let tm = TmClient::connect(TmConfig {
        request_timeout_ms: 1_000,
        ..TmConfig::new("it-overlap-tm", vec![env.tc.addr().to_owned()])
    })
    .await
    .expect("TM connects");
    let mut conn = ds.get_conn().await.expect("AT connection");
    env.tc.kill();
    let statement = Arc::new(Mutex::new(None));
    let statement_in = statement.clone();
    let result = tm
        .run("it-overlap-fail", TX_TIMEOUT, |_| async {
            // The closure swallows the statement's error: `run` must still not succeed.
            *statement_in.lock().unwrap() = Some(conn.exec_drop(UPDATE, (5, 1)).await);
            Ok::<_, RmError>(())
        })
        .await;
    assert!(
        matches!(result, Err(TxError::Tm(_))),
        "run must return the begin's error: {result:?}"
    );
    let ran = statement.lock().unwrap().take().expect("the closure ran");
    assert!(
        matches!(ran, Err(RmError::NotBegun(_))),
        "the UPDATE must fail as not begun: {ran:?}"
    );
    // Its local transaction is over: nothing changed, nothing logged, nothing locked.
    let balances: Vec<(i32, i32)> = db
        .query("SELECT id, balance FROM account ORDER BY id")
        .await;
    assert_eq!(balances, vec![(1, 100), (2, 200)]);
    assert_eq!(db.undo_rows().await, 0);
    let mut plain = db.plain().get_conn().await.expect("plain connection");
    plain
        .query_drop("SET SESSION innodb_lock_wait_timeout = 5")
        .await
        .expect("session setting");
    plain
        .exec_drop(UPDATE, (1, 1))
        .await
        .expect("the row is not left locked by the failed statement");
    drop(plain);
    drop(conn);
    tm.shutdown();
    env.close(&[&ds]).await;
    db.cleanup().await;
}
