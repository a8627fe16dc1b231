//! DTM's gRPC path end to end (spec §9): the initiators over `grpc://` against the real
//! `seata-tc`, branches as a tonic service (`busi.Busi`, generated from `tests/proto/busi.proto`)
//! built only from this crate's branch-side pieces: [`BranchParams::from_request`], the barrier
//! and `Status: From<BranchError>`. The bank's business is the HTTP bank's (harness), keyed by
//! `dtm-op`. Outcomes are read over the TC's HTTP `query` (DTM's gRPC API has none).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use prost::Message;
use seata_dtm::grpc::GrpcBranchResult;
use seata_dtm::{
    tcc_global_transaction_with, xa_global_transaction_with, BarrierTable, BranchBarrier,
    BranchError, BranchParams, BranchStatus, DtmClient, DtmError, GlobalStatus, Msg, Saga,
    TransOptions, TransQuery, XaLocal,
};
use seata_it::mysql::TestDb;
use seata_it::tc::TcProcess;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

use crate::harness::{self, bank_db, business, business_runs, A, B};

#[allow(clippy::all, missing_debug_implementations)]
mod busi {
    tonic::include_proto!("busi");
}

use busi::busi_client::BusiClient;
use busi::busi_server::{Busi, BusiServer};
use busi::{BusiReply, Transfer};

fn transfer(account: i64, amount: i64) -> Transfer {
    Transfer { account, amount }
}

/// The bank as a tonic service.
#[derive(Debug)]
struct Bank {
    pool: Pool,
    table: BarrierTable,
    calls: Mutex<Vec<(String, BranchParams)>>,
    /// (method, op) → the next answers, then the business.
    scripts: Mutex<HashMap<(String, String), VecDeque<Status>>>,
}

impl Bank {
    async fn handle(&self, kind: &str, req: Request<Transfer>) -> GrpcBranchResult<BusiReply> {
        let params = BranchParams::from_request(&req)?;
        self.calls
            .lock()
            .unwrap()
            .push((kind.to_owned(), params.clone()));
        let scripted = self
            .scripts
            .lock()
            .unwrap()
            .get_mut(&(kind.to_owned(), params.op.clone()))
            .and_then(VecDeque::pop_front);
        if let Some(status) = scripted {
            return Err(status);
        }
        let t = req.into_inner();
        let t = harness::transfer(t.account, t.amount);
        let (kind, op, gid, branch_id) = (
            kind.to_owned(),
            params.op.clone(),
            params.gid.clone(),
            params.branch_id.clone(),
        );
        BranchBarrier::new(params)
            .with_table(self.table.clone())
            .call_with_pool(&self.pool, move |tx| {
                business(tx, kind, op, gid, branch_id, t)
            })
            .await?;
        Ok(Response::new(BusiReply {
            message: "done".into(),
        }))
    }
}

impl Bank {
    /// XA: phase one runs the transfer inside an XA branch that registers itself with the
    /// server named by `dtm-dtm` (over gRPC); phase two commits or rolls it back.
    async fn xa(&self, kind: &str, req: Request<Transfer>) -> GrpcBranchResult<BusiReply> {
        let params = BranchParams::from_request(&req)?;
        self.calls
            .lock()
            .unwrap()
            .push((format!("xa-{kind}"), params.clone()));
        let xa = XaLocal::new(self.pool.clone())?.with_table(self.table.clone());
        if params.op == "action" {
            let (kind, t) = (kind.to_owned(), req.into_inner());
            xa.run(&params, move |conn| xa_business(conn, kind, t))
                .await?;
        } else {
            xa.phase2(&params).await?;
        }
        Ok(Response::new(BusiReply {
            message: "done".into(),
        }))
    }
}

fn xa_business(
    conn: &mut Conn,
    kind: String,
    t: Transfer,
) -> BoxFuture<'_, Result<(), BranchError>> {
    Box::pin(async move {
        let sql = if kind == "debit" {
            "UPDATE account SET balance = balance - ? WHERE id = ? AND balance >= ?"
        } else {
            "UPDATE account SET balance = balance + ? WHERE id = ? AND ? >= 0"
        };
        conn.exec_drop(sql, (t.amount, t.account, t.amount)).await?;
        if conn.affected_rows() == 0 {
            return Err(BranchError::failure("balance too low"));
        }
        Ok(())
    })
}

#[derive(Debug, Clone)]
struct BankService(Arc<Bank>);

#[tonic::async_trait]
impl Busi for BankService {
    async fn debit(&self, req: Request<Transfer>) -> GrpcBranchResult<BusiReply> {
        self.0.handle("debit", req).await
    }

    async fn credit(&self, req: Request<Transfer>) -> GrpcBranchResult<BusiReply> {
        self.0.handle("credit", req).await
    }

    async fn xa_debit(&self, req: Request<Transfer>) -> GrpcBranchResult<BusiReply> {
        self.0.xa("debit", req).await
    }

    async fn xa_credit(&self, req: Request<Transfer>) -> GrpcBranchResult<BusiReply> {
        self.0.xa("credit", req).await
    }

    async fn query_prepared(&self, req: Request<Transfer>) -> GrpcBranchResult<BusiReply> {
        let params = BranchParams::from_request(&req)?;
        BranchBarrier::new(params)
            .with_table(self.0.table.clone())
            .query_prepared(&self.0.pool)
            .await?;
        Ok(Response::new(BusiReply::default()))
    }
}

struct Env {
    tc: TcProcess,
    db: TestDb,
    pool: Pool,
    table: BarrierTable,
    /// Over gRPC: the client under test.
    dtm: DtmClient,
    /// Over HTTP: `query` only.
    http: DtmClient,
    bank: Arc<Bank>,
    /// `127.0.0.1:PORT`, the bank.
    addr: String,
    server: tokio::task::JoinHandle<()>,
}

impl Env {
    async fn start(tag: &str) -> Env {
        Env::start_with(tag, &[]).await
    }

    /// With `args` added to the TC's command line.
    async fn start_with(tag: &str, args: &[&str]) -> Env {
        let mut all = vec!["--store", "memory"];
        all.extend_from_slice(args);
        let tc = TcProcess::start_with(&all);
        let (db, pool, table) = bank_db(tag).await;
        let bank = Arc::new(Bank {
            pool: pool.clone(),
            table: table.clone(),
            calls: Mutex::default(),
            scripts: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let svc = BusiServer::new(BankService(bank.clone()));
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        let dtm = DtmClient::grpc(tc.grpc_addr()).unwrap();
        assert!(dtm.is_grpc());
        let http = DtmClient::new(tc.dtm_url()).unwrap();
        Env {
            tc,
            db,
            pool,
            table,
            dtm,
            http,
            bank,
            addr,
            server,
        }
    }

    /// `127.0.0.1:PORT/busi.Busi/<method>`.
    fn url(&self, method: &str) -> String {
        format!("{}/busi.Busi/{method}", self.addr)
    }

    fn script(&self, kind: &str, op: &str, answers: impl IntoIterator<Item = Status>) {
        self.bank
            .scripts
            .lock()
            .unwrap()
            .entry((kind.into(), op.into()))
            .or_default()
            .extend(answers);
    }

    /// Calls of `gid` with this kind and op.
    fn calls(&self, gid: &str, kind: &str, op: &str) -> Vec<BranchParams> {
        self.bank
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, p)| k == kind && p.gid == gid && p.op == op)
            .map(|(_, p)| p.clone())
            .collect()
    }

    async fn account(&self, id: i64) -> (i64, i64, i64) {
        let rows: Vec<(i64, i64, i64)> = self
            .db
            .query(&format!(
                "SELECT balance, frozen, incoming FROM account WHERE id = {id}"
            ))
            .await;
        rows[0]
    }

    async fn runs(&self, gid: &str, op: &str, kind: &str) -> i64 {
        business_runs(&self.db, gid, op, kind).await
    }

    async fn wait_final(&self, gid: &str) -> TransQuery {
        harness::wait_status(&self.http, gid, |s| s.is_final()).await
    }

    async fn finish(self) {
        self.server.abort();
        let _ = self.pool.clone().disconnect().await;
        self.db.cleanup().await;
    }
}

fn fast() -> TransOptions {
    TransOptions::new().retry_interval(Duration::from_secs(1))
}

#[tokio::test]
async fn grpc_saga_commits_with_binary_payloads() {
    let env = Env::start("g_saga_ok").await;
    let gid = env.dtm.new_gid().await.unwrap();
    Saga::new(&env.dtm, &gid)
        .add_message(env.url("Debit"), env.url("Debit"), &transfer(A, 30))
        .add_message(env.url("Credit"), env.url("Credit"), &transfer(B, 30))
        .options(fast().wait_result(true))
        .submit()
        .await
        .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.account(A).await, (70, 0, 0));
    assert_eq!(env.account(B).await, (130, 0, 0));
    let actions = env.calls(&gid, "debit", "action");
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (
            actions[0].trans_type.as_str(),
            actions[0].branch_id.as_str()
        ),
        ("saga", "01")
    );
    assert_eq!(env.runs(&gid, "action", "credit").await, 1);
    assert!(env.calls(&gid, "debit", "compensate").is_empty());
    // The query over a gRPC client is refused with a pointer to the HTTP API.
    let err = env.dtm.query(&gid).await.unwrap_err();
    assert!(matches!(err, DtmError::InvalidInput { .. }), "{err}");
    env.finish().await;
}

#[tokio::test]
async fn an_etcd_server_url_finds_the_tc_registered_there() {
    let etcd = seata_it::etcd::Etcd::start().await;
    let env = Env::start_with(
        "g_etcd",
        &["--etcd", etcd.addr(), "--etcd-key", "dtmservice"],
    )
    .await;
    let dtm = DtmClient::new(format!("etcd://{}/dtmservice", etcd.addr())).unwrap();
    assert!(dtm.is_grpc());
    // The TC registers itself shortly after it starts listening: until then the lookup finds
    // nothing, which is an `Unavailable` error (not sent), so ask until it answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let gid = loop {
        match dtm.new_gid().await {
            Ok(gid) => break gid,
            Err(DtmError::Grpc {
                code: Code::Unavailable,
                ..
            }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("NewGid through etcd: {e}\nTC log:\n{}", env.tc.log()),
        }
    };
    Saga::new(&dtm, &gid)
        .add_message(env.url("Debit"), env.url("Debit"), &transfer(A, 30))
        .add_message(env.url("Credit"), env.url("Credit"), &transfer(B, 30))
        .options(fast().wait_result(true))
        .submit()
        .await
        .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.account(A).await, (70, 0, 0));
    assert_eq!(env.account(B).await, (130, 0, 0));
    // Branches learn the server as the initiator named it, as go-zero's branches do.
    let actions = env.calls(&gid, "debit", "action");
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].gid, gid);

    // A key nobody registered: not sent, and the message names the key and the etcd.
    let nobody = DtmClient::new(format!("etcd://{}/nobody", etcd.addr())).unwrap();
    match nobody.new_gid().await {
        Err(DtmError::Grpc {
            code: Code::Unavailable,
            message,
            ..
        }) => assert!(message.contains("nobody/"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Malformed etcd URLs are refused by the constructor.
    for bad in ["etcd://127.0.0.1:2379", "etcd:///dtmservice"] {
        assert!(
            matches!(DtmClient::new(bad), Err(DtmError::InvalidInput { .. })),
            "{bad}"
        );
    }
    env.finish().await;
}

#[tokio::test]
async fn grpc_saga_rolls_back_through_aborted() {
    let env = Env::start("g_saga_rb").await;
    let gid = env.dtm.new_gid().await.unwrap();
    // Step 2 debits more than A has: the business answers FAILURE, the handler Aborted.
    let err = Saga::new(&env.dtm, &gid)
        .add_message(env.url("Credit"), env.url("Credit"), &transfer(B, 30))
        .add_message(env.url("Debit"), env.url("Debit"), &transfer(A, 1000))
        .options(fast().wait_result(true))
        .submit()
        .await
        .unwrap_err();
    assert!(err.is_failure(), "{err}");
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Failed);
    assert_eq!(
        q.branch("02", "action").unwrap().status,
        BranchStatus::Failed
    );
    assert_eq!(env.account(A).await, (100, 0, 0));
    assert_eq!(env.account(B).await, (100, 0, 0));
    // Step 2's compensation is a null compensation (its action rolled back with its barrier
    // row); step 1's ran its business.
    assert_eq!(env.calls(&gid, "debit", "compensate").len(), 1);
    assert_eq!(env.runs(&gid, "compensate", "debit").await, 0);
    assert_eq!(env.runs(&gid, "compensate", "credit").await, 1);
    env.finish().await;
}

#[tokio::test]
async fn grpc_saga_retries_other_errors() {
    let env = Env::start("g_saga_retry").await;
    env.script(
        "credit",
        "action",
        [
            Status::internal("database down"),
            Status::unavailable("restarting"),
        ],
    );
    let gid = env.dtm.new_gid().await.unwrap();
    Saga::new(&env.dtm, &gid)
        .add_message(env.url("Debit"), env.url("Debit"), &transfer(A, 10))
        .add_message(env.url("Credit"), env.url("Credit"), &transfer(B, 10))
        .options(fast())
        .submit()
        .await
        .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.calls(&gid, "credit", "action").len(), 3);
    assert_eq!(env.runs(&gid, "action", "credit").await, 1);
    assert!(env.calls(&gid, "debit", "compensate").is_empty());
    assert_eq!(env.account(B).await, (110, 0, 0));
    env.finish().await;
}

#[tokio::test]
async fn grpc_msg_commits_after_the_local_transaction() {
    let env = Env::start("g_msg").await;
    let gid = env.dtm.new_gid().await.unwrap();
    let g = gid.clone();
    Msg::new(&env.dtm, &gid)
        .add_message(env.url("Credit"), &transfer(B, 25))
        .query_prepared(env.url("QueryPrepared"))
        .barrier_table(env.table.clone())
        .options(fast())
        .do_and_submit(&env.pool, move |tx| {
            business(
                tx,
                "debit".into(),
                "action".into(),
                g,
                "01".into(),
                harness::transfer(A, 25),
            )
        })
        .await
        .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.account(A).await, (75, 0, 0));
    assert_eq!(env.account(B).await, (125, 0, 0));
    let credits = env.calls(&gid, "credit", "action");
    assert_eq!(credits.len(), 1);
    assert_eq!(credits[0].trans_type, "msg");
    env.finish().await;
}

#[tokio::test]
async fn grpc_msg_retries_its_action_until_it_succeeds() {
    let env = Env::start("g_msg_retry").await;
    env.script("credit", "action", [Status::unavailable("not yet")]);
    let gid = env.dtm.new_gid().await.unwrap();
    let msg = Msg::new(&env.dtm, &gid)
        .add_message(env.url("Credit"), &transfer(B, 5))
        .query_prepared(env.url("QueryPrepared"))
        .options(fast());
    msg.prepare().await.unwrap();
    msg.submit().await.unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.calls(&gid, "credit", "action").len(), 2);
    assert_eq!(env.account(B).await, (105, 0, 0));
    env.finish().await;
}

#[tokio::test]
async fn grpc_tcc_commits() {
    let env = Env::start("g_tcc_ok").await;
    let gid = env.dtm.new_gid().await.unwrap();
    let (debit, credit) = (env.url("Debit"), env.url("Credit"));
    let reply = tcc_global_transaction_with(&env.dtm, &gid, fast(), |tcc| async move {
        let r: BusiReply = tcc
            .call_branch_message(&transfer(A, 30), &debit, &debit, &debit)
            .await?;
        tcc.call_branch_message::<BusiReply>(&transfer(B, 30), &credit, &credit, &credit)
            .await?;
        Ok::<_, DtmError>(r)
    })
    .await
    .unwrap();
    assert_eq!(reply.message, "done", "the try's reply decoded");
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.account(A).await, (70, 0, 0));
    assert_eq!(env.account(B).await, (130, 0, 0));
    let tries = env.calls(&gid, "debit", "try");
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0].trans_type, "tcc");
    assert_eq!(tries[0].dtm.as_deref(), Some(env.tc.grpc_addr()));
    assert_eq!(env.runs(&gid, "confirm", "debit").await, 1);
    assert_eq!(env.runs(&gid, "confirm", "credit").await, 1);
    env.finish().await;
}

#[tokio::test]
async fn grpc_tcc_rolls_back_when_a_try_answers_aborted() {
    let env = Env::start("g_tcc_rb").await;
    let gid = env.dtm.new_gid().await.unwrap();
    let (debit, credit) = (env.url("Debit"), env.url("Credit"));
    let err = tcc_global_transaction_with(&env.dtm, &gid, fast(), |tcc| async move {
        tcc.call_branch_message::<BusiReply>(&transfer(B, 30), &credit, &credit, &credit)
            .await?;
        tcc.call_branch_message::<BusiReply>(&transfer(A, 1000), &debit, &debit, &debit)
            .await?;
        Ok::<_, DtmError>(())
    })
    .await
    .unwrap_err();
    assert!(err.is_failure(), "{err}");
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Failed);
    assert_eq!(env.account(A).await, (100, 0, 0));
    assert_eq!(env.account(B).await, (100, 0, 0));
    // Both branches were cancelled; the refused try's cancel found no try row (null).
    assert_eq!(env.runs(&gid, "cancel", "credit").await, 1);
    assert_eq!(env.calls(&gid, "debit", "cancel").len(), 1);
    assert_eq!(env.runs(&gid, "cancel", "debit").await, 0);
    env.finish().await;
}

#[tokio::test]
async fn grpc_tcc_confirm_is_retried_after_other_errors() {
    let env = Env::start("g_tcc_retry").await;
    env.script("debit", "confirm", [Status::internal("flaky")]);
    let gid = env.dtm.new_gid().await.unwrap();
    let debit = env.url("Debit");
    tcc_global_transaction_with(&env.dtm, &gid, fast(), |tcc| async move {
        tcc.call_branch_message::<BusiReply>(&transfer(A, 10), &debit, &debit, &debit)
            .await?;
        Ok::<_, DtmError>(())
    })
    .await
    .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.calls(&gid, "debit", "confirm").len(), 2);
    assert_eq!(env.account(A).await, (90, 0, 0));
    env.finish().await;
}

#[tokio::test]
async fn grpc_xa_commits_and_rolls_back() {
    let env = Env::start("g_xa").await;
    let (debit, credit) = (env.url("XaDebit"), env.url("XaCredit"));
    // Commit: both branches prepared in phase one, committed by the server.
    let gid = env.dtm.new_gid().await.unwrap();
    let (d, c) = (debit.clone(), credit.clone());
    xa_global_transaction_with(&env.dtm, &gid, fast(), |xa| async move {
        xa.call_branch_bytes(transfer(A, 30).encode_to_vec(), &d)
            .await?;
        xa.call_branch_bytes(transfer(B, 30).encode_to_vec(), &c)
            .await?;
        Ok::<_, DtmError>(())
    })
    .await
    .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.account(A).await.0, 70);
    assert_eq!(env.account(B).await.0, 130);
    let phase1 = env.calls(&gid, "xa-debit", "action");
    assert_eq!(phase1[0].phase2_url.as_deref(), Some(debit.as_str()));
    assert_eq!(env.calls(&gid, "xa-debit", "commit").len(), 1);
    // Rollback: the second branch refuses (FAILURE → Aborted), the first is rolled back.
    let gid = env.dtm.new_gid().await.unwrap();
    let err = xa_global_transaction_with(&env.dtm, &gid, fast(), |xa| async move {
        xa.call_branch_bytes(transfer(B, 10).encode_to_vec(), &credit)
            .await?;
        xa.call_branch_bytes(transfer(A, 1000).encode_to_vec(), &debit)
            .await?;
        Ok::<_, DtmError>(())
    })
    .await
    .unwrap_err();
    assert!(err.is_failure(), "{err}");
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Failed);
    assert_eq!(env.calls(&gid, "xa-credit", "rollback").len(), 1);
    assert_eq!(env.account(A).await.0, 70);
    assert_eq!(env.account(B).await.0, 130);
    env.finish().await;
}

/// A call of the bank with the four metadata entries, as the server makes it.
fn branch_call(gid: &str, trans_type: &str, op: &str, t: Transfer) -> Request<Transfer> {
    let mut req = Request::new(t);
    let md = req.metadata_mut();
    for (k, v) in [
        ("dtm-gid", gid),
        ("dtm-trans_type", trans_type),
        ("dtm-branch_id", "01"),
        ("dtm-op", op),
    ] {
        md.insert(k, MetadataValue::try_from(v).unwrap());
    }
    req
}

#[tokio::test]
async fn the_barrier_in_a_tonic_handler_skips_duplicates_and_null_compensations() {
    let env = Env::start("g_barrier").await;
    let mut bank = BusiClient::connect(format!("http://{}", env.addr))
        .await
        .unwrap();
    // A duplicate action: the business runs once, both calls answer OK.
    for _ in 0..2 {
        bank.debit(branch_call("gb1", "saga", "action", transfer(A, 10)))
            .await
            .unwrap();
    }
    assert_eq!(env.runs("gb1", "action", "debit").await, 1);
    assert_eq!(env.account(A).await.0, 90);
    // A compensation whose action never ran: OK, no business; the late action is refused
    // as hanging (OK, no business either).
    bank.debit(branch_call("gb2", "saga", "compensate", transfer(A, 10)))
        .await
        .unwrap();
    bank.debit(branch_call("gb2", "saga", "action", transfer(A, 10)))
        .await
        .unwrap();
    assert_eq!(env.runs("gb2", "compensate", "debit").await, 0);
    assert_eq!(env.runs("gb2", "action", "debit").await, 0);
    assert_eq!(env.account(A).await.0, 90);
    // FAILURE is Aborted("FAILURE"); missing metadata is InvalidArgument naming it.
    let s = bank
        .debit(branch_call("gb3", "saga", "action", transfer(A, 1000)))
        .await
        .unwrap_err();
    assert_eq!((s.code(), s.message()), (Code::Aborted, "FAILURE"));
    let s = bank.debit(Request::new(transfer(A, 1))).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("dtm-gid"), "{}", s.message());
    env.finish().await;
}
