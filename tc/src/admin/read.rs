//! The read endpoints: overview, transaction list and detail, row locks, clients, audit.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::views::{dtm_open, ListParams, TxSummary};
use super::AdminState;
use crate::coordinator::Refusal;
use crate::id;
use crate::store::dtm::ListQuery;

/// How many DTM transactions (newest first) the list and overview look at.
const DTM_SCAN: usize = 1000;

async fn dtm_rows(state: &AdminState, now: i64) -> Result<Vec<TxSummary>, ApiError> {
    let Some(engine) = &state.dtm else {
        return Ok(Vec::new());
    };
    let page = engine
        .list(&ListQuery {
            limit: DTM_SCAN,
            ..ListQuery::default()
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot list DTM transactions: {e}")))?;
    Ok(page
        .transactions
        .iter()
        .map(|t| TxSummary::dtm(t, 0, now))
        .collect())
}

fn all_seata(state: &AdminState, now: i64) -> Vec<TxSummary> {
    state
        .coord
        .admin_sessions()
        .iter()
        .map(|v| TxSummary::seata(v, now))
        .collect()
}

/// `GET /admin/v1/overview`: counts for the console's header and `admin list` footers.
pub async fn overview(State(state): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let now = id::now_ms();
    let seata = all_seata(&state, now);
    let dtm = dtm_rows(&state, now).await?;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for t in seata.iter().chain(&dtm) {
        *by_status
            .entry(format!("{}:{}", t.kind, t.status))
            .or_default() += 1;
    }
    let clients = state.registry.clients();
    let stats = state.coord.stats();
    let dtm_open_count = state
        .dtm
        .as_ref()
        .map(|_| {
            dtm.iter()
                .filter(|t| {
                    t.status
                        .parse::<crate::dtm::model::TransStatus>()
                        .is_ok_and(dtm_open)
                })
                .count()
        })
        .unwrap_or(0);
    Ok(Json(json!({
        "now_ms": now,
        "seata_sessions": seata.len(),
        "dtm_transactions": dtm.len(),
        "dtm_open": dtm_open_count,
        "row_locks": stats.row_locks,
        "retrying": seata.iter().filter(|t| t.retrying_since_ms.is_some() || t.status.ends_with("Retrying")).count(),
        "needs_operator": seata.iter().filter(|t| t.needs_operator).count(),
        "clients_tm": clients.iter().filter(|c| c.role == "TM").count(),
        "clients_rm": clients.iter().filter(|c| c.role == "RM").count(),
        "by_status": by_status,
        "actions_enabled": state.auth.actions_enabled(),
    })))
}

/// `GET /admin/v1/transactions`: Seata sessions and DTM transactions, newest first.
pub async fn list(
    State(state): State<AdminState>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let now = id::now_ms();
    let mut rows = Vec::new();
    if params
        .kind
        .as_deref()
        .is_none_or(|k| k.eq_ignore_ascii_case("seata"))
    {
        rows.extend(all_seata(&state, now));
    }
    if params
        .kind
        .as_deref()
        .is_none_or(|k| k.eq_ignore_ascii_case("dtm"))
    {
        rows.extend(dtm_rows(&state, now).await?);
    }
    rows.retain(|t| params.matches(t, now));
    rows.sort_by(|a, b| b.begin_time_ms.cmp(&a.begin_time_ms).then(b.id.cmp(&a.id)));
    let total = rows.len();
    let offset = params.offset.unwrap_or(0);
    let limit = params.limit();
    let items: Vec<TxSummary> = rows.into_iter().skip(offset).take(limit).collect();
    Ok(Json(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "items": items,
    })))
}

/// `GET /admin/v1/transactions/{id}`: a Seata session (XID) with its branches, history and
/// audit records, or a DTM transaction (gid) with its branch ops.
pub async fn show(
    State(state): State<AdminState>,
    Path(tx): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = id::now_ms();
    let found = state
        .coord
        .admin_session(&tx)
        .await
        .map_err(|e| ApiError::Refused(Refusal::Store(e)))?;
    if let Some((view, history, audits)) = found {
        let summary = TxSummary::seata(&view, now);
        return Ok(Json(json!({
            "kind": "seata",
            "summary": summary,
            "transaction": view,
            "history": history,
            "audit": audits,
        })));
    }
    if let Some(engine) = &state.dtm {
        let record = engine
            .query(&tx)
            .await
            .map_err(|e| ApiError::Unavailable(format!("cannot read DTM transaction {tx}: {e}")))?;
        if let Some(r) = record {
            let summary = TxSummary::dtm(&r.trans, r.branches.len(), now);
            let branches: Vec<Value> = r
                .branches
                .iter()
                .map(|b| {
                    json!({
                        "branch_id": b.branch_id,
                        "op": b.op.as_str(),
                        "url": b.url,
                        "status": b.status.as_str(),
                        "create_time_ms": b.create_time,
                        "update_time_ms": b.update_time,
                        "finish_time_ms": b.finish_time,
                    })
                })
                .collect();
            let audits = state
                .coord
                .admin_audits(Some(&tx), 0)
                .await
                .map_err(|e| ApiError::Refused(Refusal::Store(e)))?;
            return Ok(Json(json!({
                "kind": "dtm",
                "summary": summary,
                "transaction": {
                    "gid": r.trans.gid,
                    "trans_type": r.trans.trans_type.as_str(),
                    "status": r.trans.status.as_str(),
                    "protocol": r.trans.protocol,
                    "rollback_reason": r.trans.rollback_reason,
                    "create_time_ms": r.trans.create_time,
                    "update_time_ms": r.trans.update_time,
                    "finish_time_ms": r.trans.finish_time,
                    "next_cron_time_ms": r.trans.next_cron_time,
                    "retry_count": r.trans.retry_count,
                    "branches": branches,
                },
                "history": [],
                "audit": audits,
            })));
        }
    }
    Err(ApiError::Refused(Refusal::NotFound {
        what: "transaction",
        detail: format!(
            "{tx} is neither a Seata session held by this TC nor a stored DTM transaction \
             (finished Seata transactions are not kept); `admin list` shows what is, \
             `admin audit --xid {tx}` what operators did"
        ),
    }))
}

/// Filters of `GET /admin/v1/locks`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LockParams {
    /// Only this resource id.
    pub resource: Option<String>,
    /// Only rows held by this XID.
    pub xid: Option<String>,
    /// Only this table.
    pub table: Option<String>,
}

/// `GET /admin/v1/locks`: held row locks, with per-resource and per-transaction counts.
pub async fn locks(State(state): State<AdminState>, Query(p): Query<LockParams>) -> Json<Value> {
    let mut rows = state.coord.admin_locks();
    rows.retain(|l| {
        p.resource.as_deref().is_none_or(|r| l.resource_id == r)
            && p.xid.as_deref().is_none_or(|x| l.xid == x)
            && p.table
                .as_deref()
                .is_none_or(|t| l.table.eq_ignore_ascii_case(t))
    });
    let mut by_resource: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_xid: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &rows {
        *by_resource.entry(&l.resource_id).or_default() += 1;
        *by_xid.entry(&l.xid).or_default() += 1;
    }
    Json(json!({
        "total": rows.len(),
        "by_resource": by_resource,
        "by_transaction": by_xid,
        "items": rows,
    }))
}

/// `GET /admin/v1/clients`: application → ip → port, with role and resources.
pub async fn clients(State(state): State<AdminState>) -> Json<Value> {
    let list = state.registry.clients();
    let mut tree: BTreeMap<String, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
    for c in &list {
        tree.entry(c.application_id.clone())
            .or_default()
            .entry(c.ip.clone())
            .or_default()
            .push(json!({
                "port": c.port,
                "role": c.role,
                "group": c.transaction_service_group,
                "version": c.version,
                "resources": c.resources,
                "in_flight": c.in_flight,
            }));
    }
    Json(json!({ "total": list.len(), "applications": tree, "items": list }))
}

/// Filters of `GET /admin/v1/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditParams {
    /// Only this transaction.
    pub xid: Option<String>,
    /// Newest rows to return without `xid`, default 100.
    pub limit: Option<usize>,
}

/// `GET /admin/v1/audit`: audit records, oldest first.
pub async fn audit(
    State(state): State<AdminState>,
    Query(p): Query<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let items = state
        .coord
        .admin_audits(p.xid.as_deref(), p.limit.unwrap_or(100).min(10_000))
        .await
        .map_err(|e| ApiError::Refused(Refusal::Store(e)))?;
    Ok(Json(json!({ "total": items.len(), "items": items })))
}
