//! DTM's HTTP API (spec §3) as an axum [`Router`]: each handler parses its request
//! (`body.rs`), makes one [`DtmEngine`] call and shapes the answer (`view.rs`, `error.rs`).
//! No state lives here.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::dtm::engine::DtmEngine;
use crate::store::dtm::ListQuery;

pub(crate) mod body;
mod error;
mod view;

use body::{GidBody, TransBody};
use error::{success, ApiError};

/// Rows `all` returns when the caller gives no `limit`, and the most it returns.
const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 1000;

/// What the handlers share: the engine, and the body limit for the 413 message.
#[derive(Debug, Clone)]
struct ApiState {
    engine: Arc<DtmEngine>,
    max_body_bytes: usize,
}

type Api = State<ApiState>;
type Answer = Result<Response, ApiError>;

/// `/api/dtmsvr/*` and `/api/ping`, with bodies capped at `max_body_bytes`.
pub fn router(engine: Arc<DtmEngine>, max_body_bytes: usize) -> Router {
    let dtmsvr = Router::new()
        .route("/newGid", get(new_gid))
        .route("/prepare", post(prepare))
        .route("/submit", post(submit))
        .route("/abort", post(abort))
        .route("/registerBranch", post(register_branch))
        .route("/registerTccBranch", post(register_branch))
        .route("/registerXaBranch", post(register_branch))
        .route("/query", get(query))
        .route("/all", get(all))
        .route("/version", get(version))
        .route("/forceStop", post(force_stop))
        .route("/resetNextCronTime", post(reset_next_cron_time))
        .route("/resetCronTime", get(reset_cron_time))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(ApiState {
            engine,
            max_body_bytes,
        });
    Router::new()
        .nest("/api/dtmsvr", dtmsvr)
        .route("/api/ping", any(|| async { Json(json!({"msg": "pong"})) }))
}

/// The body, or the error that explains why it could not be read.
fn bytes(api: &ApiState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(inner)
            if inner.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::too_large(api.max_body_bytes)
        }
        other => ApiError::invalid(format!(
            "cannot read the request body: {}",
            other.body_text()
        )),
    })
}

fn params(
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<BTreeMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))
}

async fn new_gid(State(api): Api) -> Json<Value> {
    Json(json!({"gid": api.engine.new_gid(), "dtm_result": "SUCCESS"}))
}

async fn prepare(State(api): Api, body: Result<Bytes, BytesRejection>) -> Answer {
    let record = TransBody::parse(&bytes(&api, body)?)?.into_record(true)?;
    api.engine.prepare(record).await?;
    Ok(success())
}

async fn submit(State(api): Api, body: Result<Bytes, BytesRejection>) -> Answer {
    let parsed = TransBody::parse(&bytes(&api, body)?)?;
    let wait = parsed.wait_result();
    let record = parsed.into_record(false)?;
    api.engine.submit(record, wait).await?;
    Ok(success())
}

async fn abort(State(api): Api, body: Result<Bytes, BytesRejection>) -> Answer {
    let parsed = TransBody::parse(&bytes(&api, body)?)?;
    let gid = parsed.gid()?;
    api.engine
        .abort(&gid, parsed.rollback_reason(), parsed.wait_result())
        .await?;
    Ok(success())
}

async fn register_branch(State(api): Api, body: Result<Bytes, BytesRejection>) -> Answer {
    let (gid, reg) = body::registration(&bytes(&api, body)?)?;
    api.engine.register(&gid, &reg).await?;
    Ok(success())
}

async fn query(
    State(api): Api,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Answer {
    let q = params(q)?;
    let gid = q.get("gid").map(String::as_str).unwrap_or("");
    if gid.is_empty() {
        return Err(ApiError::invalid("no gid specified"));
    }
    let answer = match api.engine.query(gid).await? {
        None => json!({"transaction": null, "branches": []}),
        Some(r) => {
            let branches: Vec<Value> = r
                .branches
                .iter()
                .enumerate()
                .map(|(i, b)| view::branch(&r.trans.gid, i + 1, b))
                .collect();
            json!({"transaction": view::trans(&r.trans), "branches": branches})
        }
    };
    Ok(Json(answer).into_response())
}

async fn all(
    State(api): Api,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Answer {
    let q = params(q)?;
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if let Some(gid) = get("gid") {
        let rows: Vec<Value> = api
            .engine
            .query(gid)
            .await?
            .map(|r| view::trans(&r.trans))
            .into_iter()
            .collect();
        return Ok(Json(json!({"transactions": rows, "next_position": ""})).into_response());
    }
    let number = |k: &str| -> Result<Option<i64>, ApiError> {
        get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::invalid(format!("{k} must be an integer")))
            })
            .transpose()
    };
    let status = get("status")
        .map(|s| {
            s.parse()
                .map_err(|e| ApiError::invalid(format!("status: {e}")))
        })
        .transpose()?;
    let trans_type = get("transType")
        .map(|s| {
            s.parse()
                .map_err(|e| ApiError::invalid(format!("transType: {e}")))
        })
        .transpose()?;
    let limit = number("limit")?
        .map_or(DEFAULT_LIST_LIMIT, |l| usize::try_from(l).unwrap_or(0))
        .clamp(1, MAX_LIST_LIMIT);
    let page = api
        .engine
        .list(&ListQuery {
            status,
            trans_type,
            create_time_start: number("createTimeStart")?,
            create_time_end: number("createTimeEnd")?,
            limit,
            before_id: number("position")?,
        })
        .await?;
    let rows: Vec<Value> = page.transactions.iter().map(view::trans).collect();
    let next = page
        .next_before_id
        .map(|id| id.to_string())
        .unwrap_or_default();
    Ok(Json(json!({"transactions": rows, "next_position": next})).into_response())
}

async fn version() -> Json<Value> {
    Json(json!({"version": concat!("seata-tc ", env!("CARGO_PKG_VERSION"))}))
}

async fn force_stop(State(api): Api, body: Result<Bytes, BytesRejection>) -> Answer {
    let gid = GidBody::gid(&bytes(&api, body)?)?;
    api.engine.force_stop(&gid).await?;
    Ok(success())
}

async fn reset_next_cron_time(State(api): Api, body: Result<Bytes, BytesRejection>) -> Answer {
    let gid = GidBody::gid(&bytes(&api, body)?)?;
    api.engine.reset_next_cron_time(&gid).await?;
    Ok(success())
}

/// `resetCronTime?timeout=S&limit=N` (§3.8): brings forward up to N transactions whose next
/// look is more than S seconds away (default 3 × the server's `timeout_to_fail`).
async fn reset_cron_time(
    State(api): Api,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Answer {
    let q = params(q)?;
    let number =
        |k: &str, default: i64| -> Result<i64, ApiError> {
            match q.get(k).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::invalid(format!("{k} must be a non-negative integer"))
                }),
            }
        };
    let timeout = number("timeout", 3 * api.engine.defaults().timeout_to_fail_s)?;
    let limit = number("limit", DEFAULT_LIST_LIMIT as i64)?;
    let limit = usize::try_from(limit)
        .unwrap_or(MAX_LIST_LIMIT)
        .min(MAX_LIST_LIMIT);
    let (done, has_remaining) = api.engine.reset_cron_time(timeout, limit).await?;
    Ok(Json(json!({"has_remaining": has_remaining, "succeed_count": done})).into_response())
}
