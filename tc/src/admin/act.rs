//! The action endpoints (bearer token required, see `auth.rs`): retry, rollback, commit,
//! delete, and give-up of one branch. Bodies are optional JSON `{"reason": "...", "actor":
//! "..."}`; give-up requires the reason.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AdminState;
use crate::coordinator::{AdminAction, AdminDone, Refusal};

/// Optional body of an action.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActBody {
    /// Why (kept in the audit record; required by give-up).
    pub reason: String,
    /// Who, as the operator names themself (audit records say `admin:<actor>`).
    pub actor: String,
}

fn body_of(bytes: &Bytes) -> Result<ActBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActBody::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "body must be JSON like {{\"reason\": \"...\", \"actor\": \"...\"}}: {e}"
        ))
    })
}

fn actor(body: &ActBody) -> String {
    let name = body.actor.trim();
    if name.is_empty() {
        "admin".into()
    } else {
        format!("admin:{}", name.chars().take(64).collect::<String>())
    }
}

fn answer(done: AdminDone) -> Json<Value> {
    Json(json!(done))
}

/// `POST /admin/v1/transactions/{id}/{action}` with action retry, rollback, commit or delete.
pub async fn act(
    State(state): State<AdminState>,
    Path((tx, action)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&bytes)?;
    let who = actor(&body);
    let action = match action.as_str() {
        "retry" => AdminAction::Retry,
        "rollback" => AdminAction::Rollback,
        "commit" => AdminAction::Commit,
        "delete" => {
            if state.coord.is_seata_xid(&tx) || state.dtm.is_none() {
                return Ok(answer(state.coord.admin_delete(&tx, &body.reason, &who).await?));
            }
            return dtm_delete(&state, &tx, &body.reason, &who).await;
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "unknown action `{other}`: use retry, rollback, commit, delete, or branches/<id>/give-up"
            )))
        }
    };
    match state.coord.admin_act(&tx, action, &who).await {
        Err(Refusal::NotFound { .. }) if state.dtm.is_some() && !state.coord.is_seata_xid(&tx) => {
            let name = match action {
                AdminAction::Retry => "retry",
                AdminAction::Rollback => "rollback",
                AdminAction::Commit => "commit",
            };
            dtm_act(&state, &tx, name).await
        }
        other => Ok(answer(other?)),
    }
}

/// DTM transactions: `retry` looks at it now (DTM's resetNextCronTime); the rest are DTM's
/// own decisions and are refused with where to go instead.
async fn dtm_act(state: &AdminState, gid: &str, action: &str) -> Result<Json<Value>, ApiError> {
    let Some(engine) = &state.dtm else {
        return Err(ApiError::NotFound(format!("no transaction {gid}")));
    };
    let record = engine
        .query(gid)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot read DTM transaction {gid}: {e}")))?
        .ok_or_else(|| {
            ApiError::Refused(Refusal::NotFound {
                what: "transaction",
                detail: format!("{gid} is neither a Seata session held here nor a DTM transaction"),
            })
        })?;
    let status = record.trans.status.as_str().to_owned();
    if action != "retry" {
        return Err(ApiError::Conflict {
            why: format!("DTM transaction {gid} ({status}) decides its own outcome; `{action}` is for Seata transactions"),
            next: "use `admin retry` to run it now, or DTM's forceStop (POST /api/dtmsvr/forceStop) to stop it without compensation; finished ones are purged after dtm.finished-keep-s".into(),
            status,
        });
    }
    if record.trans.status.is_finished() {
        return Ok(Json(json!({
            "xid": gid, "action": "retry", "status": status, "changed": false,
            "message": "already finished; nothing to retry",
        })));
    }
    engine
        .reset_next_cron_time(gid)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot reschedule {gid}: {e}")))?;
    Ok(Json(json!({
        "xid": gid, "action": "retry", "status": status, "changed": true,
        "message": "scheduled now",
    })))
}

/// Deletes a finished DTM transaction (audited); unknown gids are a no-op.
async fn dtm_delete(
    state: &AdminState,
    gid: &str,
    reason: &str,
    actor: &str,
) -> Result<Json<Value>, ApiError> {
    let Some(engine) = &state.dtm else {
        return Err(ApiError::NotFound(format!("no transaction {gid}")));
    };
    let record = engine
        .query(gid)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot read {gid}: {e}")))?;
    let Some(record) = record else {
        return Ok(Json(json!({
            "xid": gid, "action": "delete", "status": "", "changed": false,
            "message": "not stored: already deleted or purged",
        })));
    };
    let status = record.trans.status.as_str().to_owned();
    if !record.trans.status.is_finished() {
        return Err(ApiError::Conflict {
            why: format!("DTM transaction {gid} is not finished ({status})"),
            next: "wait for it to finish, or stop it with DTM's forceStop first".into(),
            status,
        });
    }
    // The audit record first: no delete without its record.
    state
        .coord
        .admin_record(&crate::store::AuditRecord {
            at_ms: crate::id::now_ms(),
            actor: actor.to_owned(),
            action: "delete".into(),
            xid: gid.to_owned(),
            branch_id: None,
            reason: reason.to_owned(),
            status: status.clone(),
        })
        .await?;
    let changed = engine
        .delete_finished(gid)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot delete {gid}: {e}")))?;
    Ok(Json(json!({
        "xid": gid, "action": "delete", "status": status, "changed": changed,
        "message": if changed { "deleted" } else { "not stored: already deleted or purged" },
    })))
}

/// `POST /admin/v1/transactions/{xid}/branches/{branch_id}/give-up` with `{"reason": ...}`.
pub async fn give_up(
    State(state): State<AdminState>,
    Path((xid, branch_id)): Path<(String, i64)>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&bytes)?;
    let who = actor(&body);
    Ok(answer(
        state
            .coord
            .admin_give_up(&xid, branch_id, &body.reason, &who)
            .await?,
    ))
}
