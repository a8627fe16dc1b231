//! The `shop` front: `POST /saga`, `/tcc`, `/at` or `/grpc-saga` with an order places it across
//! `order`, `stock` and `account` as one global transaction of that mode, and answers with a
//! [`Placed`]: 200 committed, 409 rolled back, 202 not decided yet (the coordinator is still
//! retrying; the caller asks it later with the gid).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use seata_dtm::{tcc_global_transaction_with, DtmClient, DtmError, Saga, TransOptions};
use seata_tm::propagation::RequestBuilderXidExt;
use seata_tm::{current_xid, TmClient, TxError};
use serde::{Deserialize, Serialize};

use crate::request::OrderRequest;

/// How the coordinator should retry a branch that errs or is unreachable.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// What became of an order, as the front saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Committed (saga: every action ran; TCC: submitted, the confirms follow; AT: committed).
    Committed,
    /// Rolled back, or being rolled back (compensations, cancels and undo are the
    /// coordinator's job from here).
    RolledBack,
    /// Not decided yet: a branch is being retried, or an answer was lost. Ask the coordinator.
    Pending,
}

/// The front's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placed {
    /// The global transaction (a DTM gid or a Seata XID; empty if none began).
    pub gid: String,
    /// What became of it.
    pub outcome: Outcome,
    /// Why, for anything but `committed`.
    pub message: String,
}

/// The front's clients and where the three services are.
#[derive(Debug, Clone)]
pub struct Front {
    /// The DTM-compatible coordinator (saga, TCC).
    pub dtm: Option<DtmClient>,
    /// The Seata TM (AT).
    pub tm: Option<TmClient>,
    /// For the AT calls to the services.
    pub http: reqwest::Client,
    /// Base URLs of `order`, `stock`, `account`, in the order the flow calls them.
    pub services: [String; 3],
    /// The gRPC flavour, if started.
    pub grpc: Option<GrpcSteps>,
}

/// The saga over gRPC: the coordinator's gRPC API and each service's (action, compensation)
/// method URLs (`host:port/pkg.Service/Method`), in the order the flow calls them.
#[derive(Debug, Clone)]
pub struct GrpcSteps {
    /// A client made from `grpc://…` or `etcd://…/dtmservice`.
    pub dtm: DtmClient,
    /// `(action, compensate)` per service.
    pub steps: [(String, String); 3],
}

/// `/saga`, `/tcc`, `/at`.
pub fn router(front: Front) -> Router {
    Router::new()
        .route("/saga", post(saga))
        .route("/tcc", post(tcc))
        .route("/at", post(at))
        .route("/grpc-saga", post(grpc_saga))
        .with_state(Arc::new(front))
}

type Answer = (StatusCode, Json<Placed>);

fn answer(gid: String, outcome: Outcome, message: String) -> Answer {
    let status = match outcome {
        Outcome::Committed => StatusCode::OK,
        Outcome::RolledBack => StatusCode::CONFLICT,
        Outcome::Pending => StatusCode::ACCEPTED,
    };
    (
        status,
        Json(Placed {
            gid,
            outcome,
            message,
        }),
    )
}

/// A DTM error's meaning for an order (the guide's table): FAILURE is final; ONGOING and an
/// unknown outcome leave the decision to the coordinator; a request that was never sent means
/// the transaction never started.
fn dtm_outcome(gid: String, result: Result<(), DtmError>) -> Answer {
    match result {
        Ok(()) => answer(gid, Outcome::Committed, String::new()),
        Err(e) if e.is_failure() => answer(gid, Outcome::RolledBack, e.to_string()),
        Err(e) => answer(gid, Outcome::Pending, e.to_string()),
    }
}

fn no_coordinator(what: &str) -> Answer {
    answer(
        String::new(),
        Outcome::RolledBack,
        format!("{what} is not configured"),
    )
}

// ANCHOR: saga
/// The saga: create the order, take the stock, take the money; the coordinator runs the
/// compensations in reverse if a step answers 409.
async fn saga(State(front): State<Arc<Front>>, Json(order): Json<OrderRequest>) -> Answer {
    let Some(dtm) = &front.dtm else {
        return no_coordinator("--dtm");
    };
    let gid = match dtm.new_gid().await {
        Ok(gid) => gid,
        Err(e) => return answer(String::new(), Outcome::RolledBack, e.to_string()),
    };
    let mut saga = Saga::new(dtm, gid.clone())
        .retry_interval(RETRY_INTERVAL)
        .wait_result(true); // answer after the first round: Ok means committed
    for base in &front.services {
        saga = saga.add(
            format!("{base}/saga/action"),
            format!("{base}/saga/compensate"),
            &order,
        );
    }
    let result = saga.submit().await;
    dtm_outcome(gid, result)
}
// ANCHOR_END: saga

/// The saga over gRPC: the same three steps as tonic methods, the order as a protobuf payload,
/// submitted over DTM's gRPC API.
async fn grpc_saga(State(front): State<Arc<Front>>, Json(order): Json<OrderRequest>) -> Answer {
    let Some(grpc) = &front.grpc else {
        return no_coordinator("--dtm-grpc");
    };
    let gid = match grpc.dtm.new_gid().await {
        Ok(gid) => gid,
        Err(e) => return answer(String::new(), Outcome::RolledBack, e.to_string()),
    };
    let payload = crate::grpc::pb::OrderRequest::from(&order);
    let mut saga = Saga::new(&grpc.dtm, gid.clone())
        .retry_interval(RETRY_INTERVAL)
        .wait_result(true);
    for (action, compensate) in &grpc.steps {
        saga = saga.add_message(action, compensate, &payload);
    }
    let result = saga.submit().await;
    dtm_outcome(gid, result)
}

// ANCHOR: tcc
/// TCC: try each service (register, then call its try); any error aborts, and the coordinator
/// cancels every registered branch; `Ok` submits, and it confirms them.
async fn tcc(State(front): State<Arc<Front>>, Json(order): Json<OrderRequest>) -> Answer {
    let Some(dtm) = &front.dtm else {
        return no_coordinator("--dtm");
    };
    let gid = match dtm.new_gid().await {
        Ok(gid) => gid,
        Err(e) => return answer(String::new(), Outcome::RolledBack, e.to_string()),
    };
    let options = TransOptions::new().retry_interval(RETRY_INTERVAL);
    let services = front.services.clone();
    let result = tcc_global_transaction_with(dtm, gid.clone(), options, |tcc| async move {
        for base in &services {
            tcc.call_branch(
                &order,
                &format!("{base}/tcc/try"),
                &format!("{base}/tcc/confirm"),
                &format!("{base}/tcc/cancel"),
            )
            .await?;
        }
        Ok::<_, DtmError>(())
    })
    .await;
    dtm_outcome(gid, result)
}
// ANCHOR_END: tcc

/// Why an AT step did not go through.
#[derive(Debug)]
struct StepFailed(String);

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// ANCHOR: at
/// AT over the Seata protocol: begin, call the three services with the XID in `TX_XID` (each
/// writes through its AT proxy, which registers a branch), commit on `Ok`, roll back on `Err`.
async fn at(State(front): State<Arc<Front>>, Json(order): Json<OrderRequest>) -> Answer {
    let Some(tm) = &front.tm else {
        return no_coordinator("--tc");
    };
    let xid = std::sync::OnceLock::new();
    let result = tm
        .run("place-order", Duration::from_secs(30), |_ctx| async {
            let _ = xid.set(current_xid().unwrap_or_default());
            for base in &front.services {
                let url = format!("{base}/at");
                let sent = front
                    .http
                    .post(&url)
                    .with_current_xid() // TX_XID: the service joins this transaction
                    .json(&order)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        let status = r.status();
                        let why = r.text().await.unwrap_or_default();
                        return Err(StepFailed(format!("{url}: HTTP {status}: {why}")));
                    }
                    Err(e) => return Err(StepFailed(format!("{url}: {e}"))),
                }
            }
            Ok(())
        })
        .await;
    let xid = xid.get().cloned().unwrap_or_default();
    match result {
        Ok(()) => answer(xid, Outcome::Committed, String::new()),
        Err(e @ TxError::Business(_)) => answer(xid, Outcome::RolledBack, e.to_string()),
        // Outcome unknown, or our rollback failed: the TC decides (a transaction nobody ends
        // is rolled back at its timeout) and finishes phase two without us.
        Err(e) if e.is_undetermined() || matches!(e, TxError::RollbackFailed { .. }) => {
            answer(xid, Outcome::Pending, e.to_string())
        }
        // Begin failed (nothing happened) or the TC refused the commit and rolled back.
        Err(e) => answer(xid, Outcome::RolledBack, e.to_string()),
    }
}
// ANCHOR_END: at
