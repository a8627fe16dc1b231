//! One test's world: a real `seata-tc` (memory store, HTTP API on port 0), a throw-away MariaDB
//! database with an `account` table, a `busi_log` of every business run and a barrier table
//! under a non-default name, and a "bank" branch service built only from this crate's
//! branch-side pieces (extractor, `BranchResult`, `BranchBarrier`).
//!
//! The bank's one route `/{kind}` (`debit` or `credit`) does what the call's `op` says, so the
//! same URL serves a saga's action and compensation and a TCC's try/confirm/cancel:
//!
//! | kind   | action / try                    | compensate / cancel      | confirm               |
//! |--------|---------------------------------|--------------------------|-----------------------|
//! | debit  | balance -= n (409 if too low); try also frozen += n | undo it | frozen -= n |
//! | credit | balance += n; try: incoming += n | undo it                 | incoming -= n, balance += n |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::BoxFuture;
use mysql_async::params;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Transaction};
use seata_dtm::{
    BarrierTable, BranchBarrier, BranchError, BranchParams, BranchResult, BranchSuccess, DtmClient,
    GlobalStatus, TransQuery, XaLocal,
};
use seata_it::mysql::TestDb;
use seata_it::tc::TcProcess;
use serde::{Deserialize, Serialize};

/// Deadline of a wait for the TC to finish a transaction (it retries on a doubling schedule).
pub const WAIT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(25);

/// Account ids every test starts with: 1 and 2, each with a balance of 100.
pub const A: i64 = 1;
pub const B: i64 = 2;

/// A branch body.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Transfer {
    pub account: i64,
    pub amount: i64,
}

pub fn transfer(account: i64, amount: i64) -> Transfer {
    Transfer { account, amount }
}

/// A scripted answer, given before the barrier (the business does not run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Failure,
    Ongoing,
}

/// One call the bank received.
#[derive(Debug, Clone)]
pub struct Call {
    pub kind: String,
    pub params: BranchParams,
    pub arrived: u64,
    pub answered: u64,
    pub header: Option<String>,
}

#[derive(Debug, Default)]
pub struct Bank {
    pool: Option<Pool>,
    table: Option<BarrierTable>,
    clock: AtomicU64,
    calls: Mutex<Vec<Call>>,
    scripts: Mutex<HashMap<(String, String), Script>>,
    /// Steps of kind `meet` wait here for each other (proves they run concurrently).
    meet: Option<tokio::sync::Barrier>,
    xa: Option<XaLocal>,
}

impl Bank {
    fn pool(&self) -> &Pool {
        self.pool.as_ref().unwrap()
    }

    fn table(&self) -> BarrierTable {
        self.table.clone().unwrap()
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }
}

pub struct Env {
    pub tc: TcProcess,
    pub db: TestDb,
    pub pool: Pool,
    pub table: BarrierTable,
    pub dtm: DtmClient,
    pub bank: Arc<Bank>,
    /// `http://127.0.0.1:PORT`, the bank.
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

pub const ACCOUNT_DDL: &str = "CREATE TABLE account (id BIGINT PRIMARY KEY, \
    balance BIGINT NOT NULL, frozen BIGINT NOT NULL DEFAULT 0, \
    incoming BIGINT NOT NULL DEFAULT 0)";
pub const BUSI_LOG_DDL: &str = "CREATE TABLE busi_log (id BIGINT PRIMARY KEY AUTO_INCREMENT, \
    gid VARCHAR(128), branch_id VARCHAR(128), op VARCHAR(45), kind VARCHAR(45))";

/// Creates a test database with the bank's tables and a barrier table `<db>.barrier`.
pub async fn bank_db(tag: &str) -> (TestDb, Pool, BarrierTable) {
    let db = TestDb::create(
        tag,
        &[
            ACCOUNT_DDL,
            BUSI_LOG_DDL,
            "INSERT INTO account (id, balance) VALUES (1, 100), (2, 100)",
        ],
    )
    .await;
    let table = BarrierTable::new(&format!("{}.barrier", db.name())).unwrap();
    db.run(&table.ddl()).await;
    let pool = Pool::new(db.opts(24));
    (db, pool, table)
}

impl Env {
    pub async fn start(tag: &str) -> Env {
        Env::start_with(tag, None).await
    }

    /// With `meet = Some(n)`, `n` calls of kind `meet` must be in flight together to pass.
    pub async fn start_with(tag: &str, meet: Option<usize>) -> Env {
        let tc = TcProcess::start_with(&["--store", "memory"]);
        let (db, pool, table) = bank_db(tag).await;
        let bank = Arc::new(Bank {
            pool: Some(pool.clone()),
            table: Some(table.clone()),
            meet: meet.map(tokio::sync::Barrier::new),
            xa: Some(
                XaLocal::new(pool.clone())
                    .unwrap()
                    .with_table(table.clone()),
            ),
            ..Bank::default()
        });
        let app = Router::new()
            .route("/query_prepared", get(query_prepared))
            .route("/{kind}", post(handle))
            .route("/xa/{kind}", post(xa_handle))
            .with_state(bank.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dtm = DtmClient::new(tc.dtm_url()).unwrap();
        Env {
            tc,
            db,
            pool,
            table,
            dtm,
            bank,
            url,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/kind`.
    pub fn at(&self, kind: &str) -> String {
        format!("{}/{kind}", self.url)
    }

    /// Makes `kind` answer `script` to every call with this op.
    pub fn script(&self, kind: &str, op: &str, script: Script) {
        self.bank
            .scripts
            .lock()
            .unwrap()
            .insert((kind.into(), op.into()), script);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.bank.calls.lock().unwrap().clone()
    }

    /// Calls of `gid` with this op.
    pub fn calls_of(&self, gid: &str, op: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.params.gid == gid && c.params.op == op)
            .collect()
    }

    pub async fn new_gid(&self) -> String {
        self.dtm.new_gid().await.unwrap()
    }

    /// (balance, frozen, incoming) of an account.
    pub async fn account(&self, id: i64) -> (i64, i64, i64) {
        let rows: Vec<(i64, i64, i64)> = self
            .db
            .query(&format!(
                "SELECT balance, frozen, incoming FROM account WHERE id = {id}"
            ))
            .await;
        rows[0]
    }

    /// How often the business ran for (gid, op, kind).
    pub async fn business_runs(&self, gid: &str, op: &str, kind: &str) -> i64 {
        business_runs(&self.db, gid, op, kind).await
    }

    /// Polls `query` until the transaction is `succeed` or `failed`.
    pub async fn wait_final(&self, gid: &str) -> TransQuery {
        wait_status(&self.dtm, gid, |s| s.is_final()).await
    }

    pub async fn finish(self) {
        self.server.abort();
        let _ = self.pool.clone().disconnect().await;
        self.db.cleanup().await;
        drop(self.tc);
    }
}

pub async fn business_runs(db: &TestDb, gid: &str, op: &str, kind: &str) -> i64 {
    db.scalar(&format!(
        "SELECT COUNT(*) FROM busi_log WHERE gid = '{gid}' AND op = '{op}' AND kind = '{kind}'"
    ))
    .await
}

/// Polls `query` until `done(status)`; panics with the last answer after [`WAIT`].
pub async fn wait_status(
    dtm: &DtmClient,
    gid: &str,
    done: impl Fn(GlobalStatus) -> bool,
) -> TransQuery {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let q = dtm.query(gid).await.unwrap();
        if let Some(q) = &q {
            if done(q.transaction.status) {
                return q.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{gid} not done after {WAIT:?}: {q:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn handle(
    State(bank): State<Arc<Bank>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    params: BranchParams,
    Json(t): Json<Transfer>,
) -> BranchResult {
    let arrived = bank.tick();
    let script = bank
        .scripts
        .lock()
        .unwrap()
        .get(&(kind.clone(), params.op.clone()))
        .copied();
    let result = answer(&bank, &kind, &params, t, script).await;
    let call = Call {
        kind,
        params,
        arrived,
        answered: bank.tick(),
        header: headers
            .get("x-test")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    bank.calls.lock().unwrap().push(call);
    result.map(|_| BranchSuccess)
}

async fn answer(
    bank: &Bank,
    kind: &str,
    params: &BranchParams,
    t: Transfer,
    script: Option<Script>,
) -> Result<(), BranchError> {
    match script {
        Some(Script::Failure) => return Err(BranchError::failure("scripted FAILURE")),
        Some(Script::Ongoing) => return Err(BranchError::ongoing("scripted ONGOING")),
        None => {}
    }
    if kind == "meet" {
        let meet = bank.meet.as_ref().unwrap();
        tokio::time::timeout(Duration::from_secs(20), meet.wait())
            .await
            .map_err(|_| BranchError::internal("the other concurrent step never arrived"))?;
        return Ok(());
    }
    let barrier = BranchBarrier::new(params.clone()).with_table(bank.table());
    let (kind, op, gid, branch_id) = (
        kind.to_owned(),
        params.op.clone(),
        params.gid.clone(),
        params.branch_id.clone(),
    );
    barrier
        .call_with_pool(bank.pool(), move |tx| {
            business(tx, kind, op, gid, branch_id, t)
        })
        .await?;
    Ok(())
}

/// The bank's business for one op, in the barrier's transaction (table in the module docs).
pub fn business<'a>(
    tx: &'a mut Transaction<'static>,
    kind: String,
    op: String,
    gid: String,
    branch_id: String,
    t: Transfer,
) -> BoxFuture<'a, Result<(), BranchError>> {
    Box::pin(async move {
        let (n, id) = (t.amount, t.account);
        let sql = match (kind.as_str(), op.as_str()) {
            ("debit", "action") => {
                "UPDATE account SET balance = balance - :n WHERE id = :id AND balance >= :n"
            }
            ("debit", "try") => {
                "UPDATE account SET balance = balance - :n, frozen = frozen + :n \
                                 WHERE id = :id AND balance >= :n"
            }
            ("debit", "compensate") => "UPDATE account SET balance = balance + :n WHERE id = :id",
            ("debit", "confirm") => "UPDATE account SET frozen = frozen - :n WHERE id = :id",
            ("debit", "cancel") => {
                "UPDATE account SET balance = balance + :n, frozen = frozen - :n WHERE id = :id"
            }
            ("credit", "action") => "UPDATE account SET balance = balance + :n WHERE id = :id",
            ("credit", "compensate") => "UPDATE account SET balance = balance - :n WHERE id = :id",
            ("credit", "try") => "UPDATE account SET incoming = incoming + :n WHERE id = :id",
            ("credit", "confirm") => {
                "UPDATE account SET incoming = incoming - :n, balance = balance + :n WHERE id = :id"
            }
            ("credit", "cancel") => "UPDATE account SET incoming = incoming - :n WHERE id = :id",
            other => return Err(BranchError::internal(format!("no business for {other:?}"))),
        };
        tx.exec_drop(sql, params! { n, id }).await?;
        if tx.affected_rows() == 0 {
            return Err(BranchError::failure(format!(
                "account {id}: balance below {n}"
            )));
        }
        tx.exec_drop(
            "INSERT INTO busi_log (gid, branch_id, op, kind) VALUES (?, ?, ?, ?)",
            (gid, branch_id, op, kind),
        )
        .await?;
        Ok(())
    })
}

async fn query_prepared(State(bank): State<Arc<Bank>>, params: BranchParams) -> BranchResult {
    let arrived = bank.tick();
    let result = BranchBarrier::new(params.clone())
        .with_table(bank.table())
        .query_prepared(bank.pool())
        .await;
    let call = Call {
        kind: "query_prepared".into(),
        params,
        arrived,
        answered: bank.tick(),
        header: None,
    };
    bank.calls.lock().unwrap().push(call);
    result.map(|()| BranchSuccess)
}

/// The bank over XA: phase one (`op=action`) debits/credits inside the XA branch, phase two
/// commits or rolls it back. Phase-two calls carry no body.
async fn xa_handle(
    State(bank): State<Arc<Bank>>,
    Path(kind): Path<String>,
    params: BranchParams,
    body: axum::body::Bytes,
) -> BranchResult {
    let arrived = bank.tick();
    let xa = bank.xa.clone().unwrap();
    let result = if params.op == "action" {
        let t: Transfer = serde_json::from_slice(&body).unwrap();
        let (k, gid, bid) = (kind.clone(), params.gid.clone(), params.branch_id.clone());
        xa.run(&params, move |conn| xa_business(conn, k, gid, bid, t))
            .await
    } else {
        xa.phase2(&params).await
    };
    let call = Call {
        kind: format!("xa/{kind}"),
        params,
        arrived,
        answered: bank.tick(),
        header: None,
    };
    bank.calls.lock().unwrap().push(call);
    result.map(|()| BranchSuccess)
}

fn xa_business(
    conn: &mut Conn,
    kind: String,
    gid: String,
    branch_id: String,
    t: Transfer,
) -> BoxFuture<'_, Result<(), BranchError>> {
    Box::pin(async move {
        let (n, id) = (t.amount, t.account);
        let sql = match kind.as_str() {
            "debit" => "UPDATE account SET balance = balance - :n WHERE id = :id AND balance >= :n",
            _ => "UPDATE account SET balance = balance + :n WHERE id = :id",
        };
        conn.exec_drop(sql, params! { n, id }).await?;
        if conn.affected_rows() == 0 {
            return Err(BranchError::failure(format!(
                "account {id}: balance below {n}"
            )));
        }
        conn.exec_drop(
            "INSERT INTO busi_log (gid, branch_id, op, kind) VALUES (?, ?, 'action', ?)",
            (gid, branch_id, format!("xa-{kind}")),
        )
        .await?;
        Ok(())
    })
}

/// xids of `gid` the database still holds prepared.
pub async fn prepared_xids(db: &TestDb, gid: &str) -> Vec<String> {
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = db.query("XA RECOVER").await;
    rows.into_iter()
        .map(|(_, _, _, data)| String::from_utf8_lossy(&data).into_owned())
        .filter(|x| x.starts_with(gid))
        .collect()
}
