//! The TM client (`seata-tm`) against the real `seata-tc`: begin/commit/rollback/status, the
//! closure template, a commit after a timeout rollback, the XID carried over HTTP from a
//! reqwest client to an axum server, and a TC killed and restarted under an in-flight commit.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use bytes::BytesMut;
use seata_it::clients::{Phase, TestRm, WAIT};
use seata_it::tc::TcProcess;
use seata_protocol::{BranchType, Message, SeataCodec};
use seata_tm::propagation::{RequestBuilderXidExt, XidLayer};
use seata_tm::{current_xid, GlobalStatus, Role, TmClient, TmConfig, TmError, TxError, TxState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio_util::codec::Decoder;

const T: Duration = Duration::from_secs(60);

/// A TM config for `addr` with quick reconnects, so tests wait little after a TC restart.
fn config(addr: &str) -> TmConfig {
    TmConfig {
        reconnect_min_ms: 20,
        reconnect_max_ms: 200,
        ..TmConfig::new("it-tm", vec![addr.to_owned()])
    }
}

async fn connect(addr: &str) -> TmClient {
    TmClient::connect(config(addr)).await.expect("TM connects")
}

/// What a commit answer may say: committed, or committing asynchronously. Never `Finished`,
/// which the TC also says of XIDs it does not know (and of rolled back ones).
fn committed(status: GlobalStatus) -> bool {
    matches!(
        status,
        GlobalStatus::Committed | GlobalStatus::AsyncCommitting
    )
}

fn rolled_back(status: GlobalStatus) -> bool {
    matches!(status, GlobalStatus::Rollbacked | GlobalStatus::Rollbacking)
}

/// A TCC resource (synchronous phase two) whose RM records what the TC decided.
const TCC: &str = "it-tm-tcc";

async fn rm(addr: &str) -> TestRm {
    TestRm::connect(addr, "it-tm-rm", &[TCC]).await
}

/// Gives `xid` a branch, so its outcome shows in the RM's phase-two calls.
async fn branch(rm: &TestRm, xid: &str) {
    let r = rm.register_typed(xid, BranchType::Tcc, TCC, "").await;
    assert!(r.result.is_success(), "{:?}", r.result);
}

/// Once a transaction is over, the status query says `Finished` whatever happened; the RM's
/// calls tell commit from rollback: `phase` arrived for `xid`, the other phase never did.
async fn assert_outcome(rm: &TestRm, xid: &str, phase: Phase) {
    let calls = rm
        .wait_for(WAIT, |c| c.iter().any(|c| c.xid == xid && c.phase == phase))
        .await;
    assert!(
        calls
            .iter()
            .filter(|c| c.xid == xid)
            .all(|c| c.phase == phase),
        "{xid} wanted only {phase:?}: {calls:?}"
    );
}

#[tokio::test]
async fn begin_status_commit_and_rollback() {
    let tc = TcProcess::start();
    let tm = connect(tc.addr()).await;
    let rm = rm(tc.addr()).await;

    let mut tx = tm.begin("it-commit", T).await.unwrap();
    assert!(tx.xid().contains(':'), "{}", tx.xid());
    assert_eq!(tx.status().await.unwrap(), GlobalStatus::Begin);
    branch(&rm, tx.xid()).await;
    let status = tx.commit().await.unwrap();
    assert!(committed(status), "{status:?}");
    assert_eq!(tx.state(), TxState::Committed);
    assert_eq!(tx.status().await.unwrap(), GlobalStatus::Finished);
    assert_outcome(&rm, tx.xid(), Phase::Commit).await;

    let mut tx = tm.begin("it-rollback", T).await.unwrap();
    branch(&rm, tx.xid()).await;
    let status = tx.rollback().await.unwrap();
    assert!(rolled_back(status), "{status:?}");
    assert_eq!(tx.state(), TxState::RolledBack);
    assert_eq!(tx.status().await.unwrap(), GlobalStatus::Finished);
    assert_outcome(&rm, tx.xid(), Phase::Rollback).await;
}

#[tokio::test]
async fn template_commits_on_ok_and_rolls_back_on_err() {
    let tc = TcProcess::start();
    let tm = connect(tc.addr()).await;
    let rm = rm(tc.addr()).await;

    let xid = tm
        .run("it-template-ok", T, |ctx| {
            let rm = rm.clone();
            async move {
                assert!(ctx.is_launcher());
                assert_eq!(current_xid().as_deref(), ctx.xid());
                let xid = ctx.xid().unwrap_or_default().to_owned();
                branch(&rm, &xid).await;
                Ok::<_, Infallible>(xid)
            }
        })
        .await
        .unwrap();
    assert_eq!(tm.status(&xid).await.unwrap(), GlobalStatus::Finished);
    assert_outcome(&rm, &xid, Phase::Commit).await;

    let seen = std::sync::Mutex::new(String::new());
    let err = tm
        .run("it-template-err", T, |ctx| {
            let xid = ctx.xid().unwrap_or_default().to_owned();
            *seen.lock().unwrap() = xid.clone();
            let rm = rm.clone();
            async move {
                branch(&rm, &xid).await;
                Err::<(), _>("out of stock")
            }
        })
        .await
        .unwrap_err();
    assert!(matches!(err, TxError::Business("out of stock")), "{err:?}");
    let xid = seen.into_inner().unwrap();
    assert_eq!(tm.status(&xid).await.unwrap(), GlobalStatus::Finished);
    assert_outcome(&rm, &xid, Phase::Rollback).await;
}

#[tokio::test]
async fn commit_after_a_timeout_rollback_is_an_error() {
    let tc = TcProcess::start();
    let tm = connect(tc.addr()).await;
    let mut tx = tm
        .begin("it-timeout", Duration::from_millis(1))
        .await
        .unwrap();
    // Wait (bounded) for the TC's timeout job to start the rollback.
    let mut status = GlobalStatus::Begin;
    for _ in 0..500 {
        status = tx.status().await.unwrap();
        if status != GlobalStatus::Begin {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(
        status,
        GlobalStatus::Begin,
        "the TC never timed the transaction out"
    );
    let err = tx.commit().await.unwrap_err();
    assert!(
        err.is_rolled_back() || matches!(err, TmError::AlreadyFinished { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn xid_travels_from_reqwest_to_an_axum_handler() {
    let tc = TcProcess::start();
    let tm = connect(tc.addr()).await;

    // The "stock" service: joins the caller's transaction through the header.
    let stock_tm = tm.clone();
    let app = Router::new()
        .route(
            "/stock",
            post(move || {
                let tm = stock_tm.clone();
                async move {
                    let xid = current_xid().unwrap_or_default();
                    let role = tm
                        .run("deduct-stock", T, |ctx| async move {
                            Ok::<_, Infallible>(ctx.role())
                        })
                        .await
                        .ok()
                        .flatten();
                    let status = tm.status(&xid).await.ok();
                    format!("{xid} {role:?} {status:?}")
                }
            }),
        )
        .layer(XidLayer::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/stock", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let http = reqwest::Client::new();
    let rm = rm(tc.addr()).await;
    let rm2 = rm.clone();
    let (xid, body) = tm
        .run("place-order", T, |ctx| async move {
            branch(&rm2, ctx.xid().unwrap_or_default()).await;
            let body = http
                .post(&url)
                .with_current_xid()
                .send()
                .await?
                .text()
                .await?;
            Ok::<_, reqwest::Error>((ctx.xid().unwrap_or_default().to_owned(), body))
        })
        .await
        .unwrap();
    assert_eq!(
        body,
        format!("{xid} Some({:?}) Some(Begin)", Role::Participant)
    );
    assert_eq!(tm.status(&xid).await.unwrap(), GlobalStatus::Finished);
    assert_outcome(&rm, &xid, Phase::Commit).await;

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tc_restart_under_an_in_flight_commit_memory_store() {
    // Memory store: the restarted TC has forgotten the transaction, which is the harder case
    // for the TM (it must not call that "committed").
    restart_under_an_in_flight_commit("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tc_restart_under_an_in_flight_commit_file_store() {
    // File store (the default): the begin survived the crash, the held commit never arrived,
    // so the transaction is still open and the TM's second commit decides it.
    restart_under_an_in_flight_commit("file").await;
}

async fn restart_under_an_in_flight_commit(store: &str) {
    let mut tc = TcProcess::start_with(&["--store", store]);
    let proxy = Proxy::start(tc.addr().to_owned()).await;
    let tm = connect(&proxy.addr).await;
    let mut tx = tm.begin("it-restart", T).await.unwrap();

    // Hold the TM's bytes so the commit is certainly in flight, then kill the TC under it.
    proxy.hold.store(true, Ordering::SeqCst);
    let commit = tokio::spawn(async move {
        let result = tx.commit().await;
        (tx, result)
    });
    proxy.commit_held.notified().await;
    tc.kill();
    let (mut tx, result) = commit.await.unwrap();
    let err = result.unwrap_err();
    assert!(err.is_undetermined(), "{err}");
    assert_eq!(tx.state(), TxState::Unknown);

    proxy.hold.store(false, Ordering::SeqCst);
    tc.restart();
    // Requests wait for the reconnect; retry the few that find no connection yet.
    let mut status = None;
    for _ in 0..20 {
        match tx.status().await {
            Ok(s) => {
                status = Some(s);
                break;
            }
            Err(e) if e.is_not_sent() => continue,
            Err(e) => panic!("status after restart: {e}"),
        }
    }
    if store == "memory" {
        // The held commit never reached the TC, and the new TC does not know the transaction.
        assert_eq!(status, Some(GlobalStatus::Finished));
        // Committing again is allowed from Unknown, and is not reported as a success.
        let err = tx.commit().await.unwrap_err();
        assert!(matches!(err, TmError::AlreadyFinished { .. }), "{err}");
        assert_eq!(tx.state(), TxState::CommitFailed);
    } else {
        // The acknowledged begin is durable: the transaction is still open after the crash.
        assert_eq!(status, Some(GlobalStatus::Begin));
        let status = tx.commit().await.unwrap();
        assert!(committed(status), "{status:?}");
    }

    // The reconnected client works as before.
    let mut tx = tm.begin("it-after-restart", T).await.unwrap();
    let status = tx.commit().await.unwrap();
    assert!(committed(status), "{status:?}");
}

/// A TCP proxy in front of the TC whose TM→TC direction can be held: bytes read while
/// `hold` is set are not forwarded, and `commit_held` fires once a held frame carries a
/// GlobalCommitRequest. When the TC side closes, the TM side is closed too.
struct Proxy {
    addr: String,
    hold: Arc<AtomicBool>,
    commit_held: Arc<Notify>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = Arc::new(AtomicBool::new(false));
        let commit_held = Arc::new(Notify::new());
        let (h, n) = (hold.clone(), commit_held.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue; // TC down: dropping `client` makes the TM retry later.
                };
                tokio::spawn(pump(client, server, h.clone(), n.clone()));
            }
        });
        Proxy {
            addr,
            hold,
            commit_held,
        }
    }
}

async fn pump(client: TcpStream, server: TcpStream, hold: Arc<AtomicBool>, held: Arc<Notify>) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let up = async {
        let mut codec = SeataCodec::default();
        let mut parsed = BytesMut::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let holding = hold.load(Ordering::SeqCst);
            // Parse every byte (frames may straddle reads) to spot the held commit.
            parsed.extend_from_slice(chunk);
            while let Ok(Some(frame)) = codec.decode(&mut parsed) {
                if holding && frame.body.as_ref().is_some_and(carries_commit) {
                    held.notify_one();
                }
            }
            if !holding && server_wr.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
    };
    // Either side ending ends both: the halves drop here and the TM sees its socket close.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

fn carries_commit(msg: &Message) -> bool {
    match msg {
        Message::GlobalCommitRequest(_) => true,
        Message::MergedWarpMessage(m) => m.msgs.iter().any(carries_commit),
        _ => false,
    }
}
