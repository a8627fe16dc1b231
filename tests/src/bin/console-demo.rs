//! `console-demo TC_ADDR HTTP_ADDR`: puts a running TC into a state worth looking at, for
//! `scripts/console-check.sh` (and for trying the console by hand). Over the real protocols it
//! leaves Seata transactions in phase one (AT with row locks, TCC), rolling back with an RM
//! that keeps failing, timed out, and RollbackFailed after a dirty rollback, plus DTM sagas
//! that succeeded and that keep retrying. It prints `ready <xid-of-the-dirty-rollback>` and
//! keeps its RM and TM connections open until its standard input closes.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use seata_it::clients::{self, Answer, TestRm};
use seata_protocol::rpc::{Registration, RequestHandler, RpcHandle, TcClient, TcClientConfig};
use seata_protocol::{
    BranchRegisterRequest, BranchRegisterResponse, BranchRollbackResponse, BranchStatus,
    BranchType, GlobalStatus, Message, TransactionExceptionCode, TxResult,
};

/// Answers every rollback as an AT RM that found the row changed outside the global lock.
struct DirtyRm;

impl RequestHandler for DirtyRm {
    fn on_request(
        self: Arc<Self>,
        _conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        Box::pin(async move {
            let Message::BranchRollbackRequest(r) = msg else {
                return None;
            };
            let report = r#"{"table":"account","pk":"42","before":{"balance":100},"after":{"balance":70},"current":{"balance":15}}"#;
            Some(
                BranchRollbackResponse {
                    result: TxResult::failed(
                        TransactionExceptionCode::BranchRollbackFailedUnretriable,
                        report,
                    ),
                    xid: r.xid,
                    branch_id: r.branch_id,
                    branch_status: BranchStatus::PhaseTwoRollbackFailedUnretryable,
                }
                .into(),
            )
        })
    }
}

/// Submits a two-step saga; the second step's action is `second` when given.
async fn dtm_saga(
    http: &reqwest::Client,
    dtm: &str,
    gid: &str,
    url: &str,
    second: &str,
) -> anyhow::Result<()> {
    let second = if second.is_empty() { url } else { second };
    let body = serde_json::json!({
        "gid": gid,
        "trans_type": "saga",
        "steps": [
            {"action": url, "compensate": url},
            {"action": second, "compensate": url},
        ],
        "payloads": ["{\"amount\":30}", "{\"amount\":30}"],
        "retry_interval": 60,
    });
    let r = http
        .post(format!("{dtm}/submit"))
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    anyhow::ensure!(
        status.is_success(),
        "submit {gid}: {status} {}",
        r.text().await?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(tc), Some(http_addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: console-demo TC_ADDR HTTP_ADDR");
    };
    let tm = clients::tm(&tc).await;
    let orders = TestRm::connect(&tc, "order-service", &["jdbc:mysql://db/orders"]).await;
    let stock = TestRm::connect(&tc, "stock-service", &["jdbc:mysql://db/stock"]).await;
    let tcc = TestRm::connect(&tc, "payment-service", &["payment-tcc"]).await;
    let dirty = TcClient::connect(
        TcClientConfig::new(
            vec![tc.clone()],
            Registration::Rm {
                application_id: "account-service".into(),
                transaction_service_group: "it_tx_group".into(),
                resource_ids: vec!["jdbc:mysql://db/account".into()],
            },
        ),
        Arc::new(DirtyRm),
        Duration::from_secs(10),
    )
    .await?;

    // In phase one: AT branches holding row locks, and a TCC branch.
    let open = clients::begin(&tm, 600_000).await;
    orders
        .register(&open, "jdbc:mysql://db/orders", "orders:1001,1002")
        .await;
    stock
        .register(&open, "jdbc:mysql://db/stock", "stock:7")
        .await;
    let open_tcc = clients::begin(&tm, 600_000).await;
    tcc.register_typed(&open_tcc, BranchType::Tcc, "payment-tcc", "")
        .await;

    // Rolling back with an RM that keeps answering "retry later".
    orders.answer(Answer::Retryable);
    let retrying = clients::begin(&tm, 600_000).await;
    orders
        .register(&retrying, "jdbc:mysql://db/orders", "orders:2001")
        .await;
    clients::rollback(&tm, &retrying).await;

    // Timed out in phase one, its rollback retrying too.
    let timed_out = clients::begin(&tm, 500).await;
    orders
        .register(&timed_out, "jdbc:mysql://db/orders", "orders:3001")
        .await;

    // A dirty rollback: RollbackFailed, the row kept locked, waiting for an operator.
    let failed = clients::begin(&tm, 600_000).await;
    let reg: BranchRegisterResponse = dirty
        .request(BranchRegisterRequest {
            xid: failed.clone(),
            branch_type: BranchType::At,
            resource_id: "jdbc:mysql://db/account".into(),
            lock_key: "account:42".into(),
            application_data: String::new(),
        })
        .await?;
    anyhow::ensure!(reg.result.is_success(), "register: {:?}", reg.result);
    stock
        .register(&failed, "jdbc:mysql://db/stock", "stock:9")
        .await;
    let r = clients::rollback(&tm, &failed).await;
    anyhow::ensure!(
        r.global_status == GlobalStatus::RollbackRetrying
            || r.global_status == GlobalStatus::RollbackFailed,
        "dirty rollback answered {}",
        r.global_status
    );
    clients::wait_status(&tm, &failed, GlobalStatus::RollbackFailed).await;

    // DTM: sagas against a small branch server (one succeeds, one fails and is compensated),
    // and one whose branch server is down (it keeps retrying).
    let busi = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let busi_addr = busi.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/ok",
            axum::routing::post(|| async {
                axum::Json(serde_json::json!({"dtm_result": "SUCCESS"}))
            }),
        )
        .route(
            "/fail",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::CONFLICT,
                    axum::Json(serde_json::json!({"dtm_result": "FAILURE"})),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(busi, app).await });
    let dtm = format!("http://{http_addr}/api/dtmsvr");
    let http = reqwest::Client::new();
    dtm_saga(
        &http,
        &dtm,
        "demo-saga-ok",
        &format!("http://{busi_addr}/ok"),
        "",
    )
    .await?;
    dtm_saga(
        &http,
        &dtm,
        "demo-saga-fail",
        &format!("http://{busi_addr}/ok"),
        &format!("http://{busi_addr}/fail"),
    )
    .await?;
    dtm_saga(&http, &dtm, "demo-saga-down", "http://127.0.0.1:9/pay", "").await?;

    clients::wait_status(&tm, &timed_out, GlobalStatus::TimeoutRollbackRetrying).await;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {failed} {open}")?;
        out.flush()?;
    }
    // Keep the connections (and so the registered clients) until told to stop.
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
        }
    })
    .await?;
    Ok(())
}
