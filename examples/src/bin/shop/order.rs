//! The `order` service: one row per order in `orders`, keyed by the order id.
//!
//! | mode | first phase | second phase |
//! |---|---|---|
//! | saga | `action`: insert it `paid` | `compensate`: mark it `cancelled` |
//! | TCC | `try`: insert it `pending` | `confirm`: `paid`; `cancel`: `cancelled` |
//! | AT | `POST /at`: insert it `paid` through the AT proxy | the TC's commit or rollback |

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use mysql_async::prelude::Queryable;
use seata_dtm::branch::op;
use seata_dtm::{BranchBarrier, BranchError, BranchParams, BranchResult, BranchSuccess};
use seata_tm::propagation::XidLayer;

use crate::db::Backend;
use crate::fault::Step;
use crate::request::OrderRequest;

/// The orders table.
pub const DDL: &str = "CREATE TABLE orders (id BIGINT UNSIGNED PRIMARY KEY, \
     user_id INT NOT NULL, sku INT NOT NULL, qty BIGINT NOT NULL, amount BIGINT NOT NULL, \
     status VARCHAR(16) NOT NULL)";

/// An order that went through.
pub const PAID: &str = "paid";
/// An order rolled back after its row was written.
pub const CANCELLED: &str = "cancelled";
/// A TCC order between try and confirm/cancel.
pub const PENDING: &str = "pending";

const INSERT: &str =
    "INSERT INTO orders (id, user_id, sku, qty, amount, status) VALUES (?, ?, ?, ?, ?, ?)";
const SET_STATUS: &str = "UPDATE orders SET status = ? WHERE id = ?";

/// `/saga/action`, `/saga/compensate`, `/tcc/{try,confirm,cancel}` and, with AT, `/at`.
pub fn router(db: Backend) -> Router {
    let has_at = db.at.is_some();
    let db = Arc::new(db);
    let dtm = Router::new()
        .route("/saga/action", post(saga))
        .route("/saga/compensate", post(saga))
        .route("/tcc/try", post(tcc))
        .route("/tcc/confirm", post(tcc))
        .route("/tcc/cancel", post(tcc))
        .with_state(db.clone());
    if !has_at {
        return dtm;
    }
    let at = Router::new()
        .route("/at", post(at))
        .layer(XidLayer::new())
        .with_state(db);
    dtm.merge(at)
}

fn row(o: &OrderRequest, status: &str) -> (u64, u32, u32, i64, i64, String) {
    (
        o.order_id,
        o.user_id,
        o.sku,
        o.qty,
        o.amount,
        status.to_owned(),
    )
}

fn refused() -> BranchError {
    BranchError::failure("order refused")
}

/// The saga step: `action` writes the order `paid`, `compensate` cancels it.
async fn saga(
    State(db): State<Arc<Backend>>,
    params: BranchParams,
    Json(order): Json<OrderRequest>,
) -> BranchResult {
    db.faults.slow_down().await;
    let refuse = db.faults.refuses(Step::Order, order.order_id);
    let compensate = params.op == op::COMPENSATE;
    let barrier = BranchBarrier::new(params).with_table(db.barrier.clone());
    barrier
        .call_with_pool(&db.pool, |tx| {
            Box::pin(async move {
                if compensate {
                    tx.exec_drop(SET_STATUS, (CANCELLED, order.order_id))
                        .await?;
                } else if refuse {
                    return Err(refused());
                } else {
                    tx.exec_drop(INSERT, row(&order, PAID)).await?;
                }
                Ok(())
            })
        })
        .await?;
    Ok(BranchSuccess)
}

/// The saga step for the gRPC flavour (`grpc.rs`): the same handler, barrier and all.
pub async fn saga_step(
    db: Arc<Backend>,
    params: BranchParams,
    order: OrderRequest,
) -> BranchResult {
    saga(State(db), params, Json(order)).await
}

/// The TCC branch: `try` writes the order `pending`; `confirm` and `cancel` settle it.
async fn tcc(
    State(db): State<Arc<Backend>>,
    params: BranchParams,
    Json(order): Json<OrderRequest>,
) -> BranchResult {
    db.faults.slow_down().await;
    let refuse = db.faults.refuses(Step::Order, order.order_id);
    let op = params.op.clone();
    let barrier = BranchBarrier::new(params).with_table(db.barrier.clone());
    barrier
        .call_with_pool(&db.pool, |tx| {
            Box::pin(async move {
                match op.as_str() {
                    op::TRY if refuse => return Err(refused()),
                    op::TRY => tx.exec_drop(INSERT, row(&order, PENDING)).await?,
                    op::CONFIRM => tx.exec_drop(SET_STATUS, (PAID, order.order_id)).await?,
                    op::CANCEL => {
                        tx.exec_drop(SET_STATUS, (CANCELLED, order.order_id))
                            .await?
                    }
                    other => return Err(BranchError::internal(format!("unknown op {other}"))),
                }
                Ok(())
            })
        })
        .await?;
    Ok(BranchSuccess)
}

/// The AT branch: the INSERT through the AT proxy joins the caller's global transaction; its
/// rollback deletes the row again (the undo log's after image).
async fn at(
    State(db): State<Arc<Backend>>,
    Json(order): Json<OrderRequest>,
) -> Result<StatusCode, (StatusCode, String)> {
    db.faults.slow_down().await;
    if db.faults.refuses(Step::Order, order.order_id) {
        return Err((StatusCode::CONFLICT, "order refused".into()));
    }
    let Some(ds) = &db.at else {
        return Err((StatusCode::NOT_FOUND, "AT mode is off".into()));
    };
    let internal = |e: seata_rm::error::RmError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut conn = ds.get_conn().await.map_err(internal)?;
    conn.exec_drop(INSERT, row(&order, PAID))
        .await
        .map_err(internal)?;
    Ok(StatusCode::CREATED)
}
