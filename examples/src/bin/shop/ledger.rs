//! The branch handlers `stock` and `account` share: both hold a quantity per key (items per
//! sku, cents per user) that an order takes. `stock.rs` and `account.rs` only bring their
//! table, their SQL and which field of the order they use.
//!
//! | mode | first phase | second phase |
//! |---|---|---|
//! | saga | `action`: take (409 if short) | `compensate`: give back |
//! | TCC | `try`: move to reserved (409 if short) | `confirm`: drop the reservation; `cancel`: give it back |
//! | AT | `POST /at` through the AT proxy: take (409 if short) | the TC's commit or rollback (undo log) |
//!
//! Every saga and TCC handler runs inside the sub-transaction barrier, so a repeated call, a
//! compensation whose action never ran, and an action arriving after its compensation all skip
//! the business. The AT handler needs no barrier: the Seata protocol gives each branch its own
//! id and undo log.

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

/// A ledger's statements; `?` are bound as the comments say (`n` the quantity, `k` the key).
#[derive(Debug)]
pub struct LedgerSql {
    /// `(n, k, n)`: available -= n where at least n is available.
    pub take: &'static str,
    /// `(n, k)`: available += n.
    pub give_back: &'static str,
    /// `(n, n, k, n)`: move n from available to reserved where at least n is available.
    pub reserve: &'static str,
    /// `(n, k)`: reserved -= n (the reservation is spent).
    pub settle: &'static str,
    /// `(n, n, k)`: move n from reserved back to available.
    pub release: &'static str,
}

/// One ledger service: stock or account.
#[derive(Debug)]
pub struct Ledger {
    step: Step,
    sql: &'static LedgerSql,
    /// The key and the quantity an order takes.
    take_of: fn(&OrderRequest) -> (u32, i64),
    db: Backend,
}

impl Ledger {
    /// The `step` service over `db`.
    pub fn new(
        db: Backend,
        step: Step,
        sql: &'static LedgerSql,
        take_of: fn(&OrderRequest) -> (u32, i64),
    ) -> Ledger {
        Ledger {
            step,
            sql,
            take_of,
            db,
        }
    }

    /// `/saga/action`, `/saga/compensate`, `/tcc/{try,confirm,cancel}` and, with AT, `/at`.
    pub fn router(self) -> Router {
        let has_at = self.db.at.is_some();
        let ledger = Arc::new(self);
        let dtm = Router::new()
            .route("/saga/action", post(saga))
            .route("/saga/compensate", post(saga))
            .route("/tcc/try", post(tcc))
            .route("/tcc/confirm", post(tcc))
            .route("/tcc/cancel", post(tcc))
            .with_state(ledger.clone());
        if !has_at {
            return dtm;
        }
        // The layer binds the caller's TX_XID for the handler: the AT proxy joins that global
        // transaction (registers a branch) on its own.
        let at = Router::new()
            .route("/at", post(at))
            .layer(XidLayer::new())
            .with_state(ledger);
        dtm.merge(at)
    }

    fn barrier(&self, params: BranchParams) -> BranchBarrier {
        BranchBarrier::new(params).with_table(self.db.barrier.clone())
    }

    fn short(&self) -> BranchError {
        BranchError::failure(format!("{}: not enough left", self.step.name()))
    }
}

// ANCHOR: saga_handler
/// The saga step: `op=action` takes, `op=compensate` gives back; both behind the barrier.
async fn saga(
    State(l): State<Arc<Ledger>>,
    params: BranchParams,
    Json(order): Json<OrderRequest>,
) -> BranchResult {
    l.db.faults.slow_down().await;
    let (key, n) = (l.take_of)(&order);
    let refuse = l.db.faults.refuses(l.step, order.order_id);
    let compensate = params.op == op::COMPENSATE;
    let (barrier, pool) = (l.barrier(params), l.db.pool.clone());
    barrier
        .call_with_pool(&pool, |tx| {
            Box::pin(async move {
                if compensate {
                    tx.exec_drop(l.sql.give_back, (n, key)).await?;
                    return Ok(());
                }
                if refuse {
                    // 409 FAILURE: the server compensates the steps before this one.
                    return Err(BranchError::failure(format!("{} refused", l.step.name())));
                }
                tx.exec_drop(l.sql.take, (n, key, n)).await?;
                if tx.affected_rows() == 0 {
                    return Err(l.short());
                }
                Ok(())
            })
        })
        .await?;
    Ok(BranchSuccess)
}
// ANCHOR_END: saga_handler

/// The saga step for the gRPC flavour (`grpc.rs`): the same handler, barrier and all.
pub async fn saga_step(l: Arc<Ledger>, params: BranchParams, order: OrderRequest) -> BranchResult {
    saga(State(l), params, Json(order)).await
}

// ANCHOR: tcc_handler
/// The TCC branch: `try` reserves, `confirm` spends the reservation, `cancel` releases it.
async fn tcc(
    State(l): State<Arc<Ledger>>,
    params: BranchParams,
    Json(order): Json<OrderRequest>,
) -> BranchResult {
    l.db.faults.slow_down().await;
    let (key, n) = (l.take_of)(&order);
    let refuse = l.db.faults.refuses(l.step, order.order_id);
    let op = params.op.clone();
    let (barrier, pool) = (l.barrier(params), l.db.pool.clone());
    barrier
        .call_with_pool(&pool, |tx| {
            Box::pin(async move {
                match op.as_str() {
                    op::TRY => {
                        if refuse {
                            return Err(BranchError::failure(format!("{} refused", l.step.name())));
                        }
                        tx.exec_drop(l.sql.reserve, (n, n, key, n)).await?;
                        if tx.affected_rows() == 0 {
                            return Err(l.short());
                        }
                    }
                    op::CONFIRM => tx.exec_drop(l.sql.settle, (n, key)).await?,
                    op::CANCEL => tx.exec_drop(l.sql.release, (n, n, key)).await?,
                    other => return Err(BranchError::internal(format!("unknown op {other}"))),
                }
                Ok(())
            })
        })
        .await?;
    Ok(BranchSuccess)
}
// ANCHOR_END: tcc_handler

// ANCHOR: at_handler
/// The AT branch: a plain UPDATE through the AT proxy, inside the caller's global transaction
/// (its XID came in the `TX_XID` header). A 409 makes the caller roll the whole order back.
async fn at(
    State(l): State<Arc<Ledger>>,
    Json(order): Json<OrderRequest>,
) -> Result<StatusCode, (StatusCode, String)> {
    l.db.faults.slow_down().await;
    if l.db.faults.refuses(l.step, order.order_id) {
        return Err((StatusCode::CONFLICT, format!("{} refused", l.step.name())));
    }
    let (key, n) = (l.take_of)(&order);
    let Some(ds) = &l.db.at else {
        return Err((StatusCode::NOT_FOUND, "AT mode is off".into()));
    };
    let internal = |e: seata_rm::error::RmError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut conn = ds.get_conn().await.map_err(internal)?;
    conn.exec_drop(l.sql.take, (n, key, n))
        .await
        .map_err(internal)?;
    if conn.affected_rows() == 0 {
        return Err((StatusCode::CONFLICT, l.short().to_string()));
    }
    Ok(StatusCode::OK)
}
// ANCHOR_END: at_handler
