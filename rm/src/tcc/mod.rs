//! TCC mode (tcc-xa-saga.md §1, §2): actions with a prepare ("try"), a commit ("confirm") and
//! a rollback ("cancel") phase, registered on the [`RmClient`] under their action name, which
//! is the TCC resource id the TC routes phase two by.
//!
//! ```text
//! let pay = rm.tcc("pay", PayAction { .. }).await?;              // plain, Seata 1.2
//! let pay = rm.tcc_fenced("pay", PayAction { .. }, fence).await?; // with the 1.5 fence
//! // inside a global transaction (XID bound):
//! let branch_id = pay.call(json!({"account": 7, "amount": 30})).await?;
//! ```
//!
//! [`TccActionRef::call`] registers a TCC branch (no lock key, `applicationData` in Seata 1.2's
//! `{"actionContext": ..}` layout, see [`context`]) *before* running prepare, as Java does; an
//! error from prepare fails the call and the TM then rolls back, so rollback is called for a
//! branch whose prepare may not have run. Phase two rebuilds the [`BusinessActionContext`] from
//! the registered `applicationData` and calls commit or rollback: `Ok` answers
//! `PhaseTwo_Committed`/`PhaseTwo_Rollbacked`, an error the retryable failure, so the TC
//! retries (every second, by default forever).
//!
//! Without a fence, commit and rollback must be idempotent, tolerate a rollback without
//! prepare, and prepare must refuse to run after rollback: Seata 1.2 leaves that to the user.
//! With a [`TccFence`] (opt-in per action) the fence does it (see [`fence`]): each phase runs
//! in one MySQL local transaction on a connection from the fence's pool, together with the
//! fence row, and the action gets that connection from
//! [`BusinessActionContext::connection`] for its business SQL.

pub mod context;
pub mod fence;

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use mysql_async::Conn;
use seata_protocol::BranchStatus;
use seata_tm::context::{await_current_xid, without_xid};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{info, instrument, warn};

use crate::client::RmClient;
use crate::error::RmError;
use fence::{end_local, FenceStatus};

pub use fence::{FenceCleaner, TccFence, TCC_FENCE_LOG_DDL};

/// The error an action's phase returns. Any error converts into it with `?` (including
/// `mysql_async::Error`, [`RmError`] and `anyhow::Error`): what went wrong in the user's
/// business logic is the user's type, carried as the source of [`RmError::TccPrepare`] or
/// logged when phase two fails.
pub type ActionError = Box<dyn std::error::Error + Send + Sync>;

/// What an action's phase is given (Java's `BusinessActionContext`).
#[derive(Debug)]
pub struct BusinessActionContext {
    /// The global transaction (empty when prepare runs outside one).
    pub xid: String,
    /// The TCC branch (0 when prepare runs outside a global transaction).
    pub branch_id: i64,
    /// The action name, which is the branch's resource id.
    pub action_name: String,
    /// The parameters given to [`TccActionRef::call`] plus Seata's system keys
    /// (`actionName`, `action-start-time`, ..., see [`context`]), as registered with the
    /// branch and read back from its `applicationData` in phase two.
    pub action_context: Map<String, Value>,
    /// The fenced phase's connection, inside its local transaction.
    conn: Option<Conn>,
}

impl BusinessActionContext {
    fn new(
        xid: &str,
        branch_id: i64,
        action_name: &str,
        action_context: Map<String, Value>,
    ) -> Self {
        BusinessActionContext {
            xid: xid.into(),
            branch_id,
            action_name: action_name.into(),
            action_context,
            conn: None,
        }
    }

    /// The parameter `key` of the action context, converted from JSON.
    pub fn param<T: DeserializeOwned>(&self, key: &str) -> Result<T, RmError> {
        let value = self.action_context.get(key).cloned().unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|e| RmError::TccParams {
            action: self.action_name.clone(),
            reason: format!("parameter `{key}`: {e}"),
        })
    }

    /// The connection of a fenced action: its local transaction also holds the fence row and
    /// commits (or rolls back) with it after the phase returns. Do not commit it yourself.
    /// An action without a fence has none.
    pub fn connection(&mut self) -> Result<&mut Conn, RmError> {
        let action = &self.action_name;
        self.conn.as_mut().ok_or_else(|| {
            RmError::TxState(format!(
                "TCC action `{action}` has no fence, so no connection; register it with \
                 `RmClient::tcc_fenced` to run its SQL in the fence's local transaction"
            ))
        })
    }
}

impl Drop for BusinessActionContext {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            // Dropped mid-phase (cancelled): the pool's session reset rolls the local
            // transaction back.
            conn.reset_connection(true);
        }
    }
}

/// A TCC participant. Register it with [`RmClient::tcc`] or [`RmClient::tcc_fenced`]; write
/// the phases as `async fn`s.
pub trait TccAction: Send + Sync + 'static {
    /// Phase one ("try"): reserve. An error fails [`TccActionRef::call`].
    fn prepare(
        &self,
        ctx: &mut BusinessActionContext,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Phase two commit ("confirm"). An error is retried by the TC.
    fn commit(
        &self,
        ctx: &mut BusinessActionContext,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Phase two rollback ("cancel"). An error is retried by the TC. Without a fence it must
    /// also cope with a prepare that never ran.
    fn rollback(
        &self,
        ctx: &mut BusinessActionContext,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;
}

/// The three phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Prepare,
    Commit,
    Rollback,
}

/// [`TccAction`] behind a pointer (its `impl Future`s boxed).
trait ErasedAction: Send + Sync {
    fn run<'a>(
        &'a self,
        phase: Phase,
        ctx: &'a mut BusinessActionContext,
    ) -> BoxFuture<'a, Result<(), ActionError>>;
}

impl<A: TccAction> ErasedAction for A {
    fn run<'a>(
        &'a self,
        phase: Phase,
        ctx: &'a mut BusinessActionContext,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        match phase {
            Phase::Prepare => Box::pin(self.prepare(ctx)),
            Phase::Commit => Box::pin(self.commit(ctx)),
            Phase::Rollback => Box::pin(self.rollback(ctx)),
        }
    }
}

/// A registered action.
pub(crate) struct TccResource {
    name: String,
    action: Box<dyn ErasedAction>,
    fence: Option<TccFence>,
}

impl std::fmt::Debug for TccResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TccResource")
            .field("name", &self.name)
            .field("fenced", &self.fence.is_some())
            .finish_non_exhaustive()
    }
}

impl TccResource {
    pub(crate) fn new<A: TccAction>(name: &str, action: A, fence: Option<TccFence>) -> Self {
        TccResource {
            name: name.into(),
            action: Box::new(action),
            fence,
        }
    }

    /// Runs prepare; with a fence, inside a local transaction that first inserts the `Tried`
    /// row (a row already there refuses the prepare: its rollback came first). Outside a
    /// global transaction (`branch_id` 0) no fence row is written.
    async fn prepare(&self, ctx: &mut BusinessActionContext) -> Result<(), RmError> {
        let (xid, branch_id) = (ctx.xid.clone(), ctx.branch_id);
        let failed = |source: ActionError| RmError::TccPrepare {
            xid,
            branch_id,
            action: self.name.clone(),
            source,
        };
        let Some(fence) = &self.fence else {
            return self.action.run(Phase::Prepare, ctx).await.map_err(failed);
        };
        let mut conn = fence.begin().await?;
        if !ctx.xid.is_empty() {
            let fresh = fence
                .insert(
                    &mut conn,
                    &ctx.xid,
                    ctx.branch_id,
                    &self.name,
                    FenceStatus::Tried,
                )
                .await;
            match fresh {
                Ok(true) => {}
                Ok(false) => {
                    end_local(conn, false).await?;
                    return Err(RmError::FenceRefused {
                        xid: ctx.xid.clone(),
                        branch_id: ctx.branch_id,
                        action: self.name.clone(),
                    });
                }
                Err(e) => {
                    end_local(conn, false).await?;
                    return Err(e);
                }
            }
        }
        ctx.conn = Some(conn);
        let result = self.action.run(Phase::Prepare, ctx).await;
        if let Some(conn) = ctx.conn.take() {
            end_local(conn, result.is_ok()).await?;
        }
        result.map_err(failed)
    }

    /// Phase two; `Ok(())` means done (`PhaseTwo_Committed`/`_Rollbacked`), an error is a
    /// retryable failure.
    async fn phase_two(
        &self,
        phase: Phase,
        ctx: &mut BusinessActionContext,
    ) -> Result<(), RmError> {
        let Some(fence) = &self.fence else {
            return self.run_two(phase, ctx).await;
        };
        let commit = phase == Phase::Commit;
        let mut conn = fence.begin().await?;
        let row = match fence.lock(&mut conn, &ctx.xid, ctx.branch_id).await {
            Ok(row) => row,
            Err(e) => {
                end_local(conn, false).await?;
                return Err(e);
            }
        };
        match row {
            None if commit => {
                Self::refuse(
                    conn,
                    "commit without a fence row: prepare never ran on this fence; the TC retries",
                )
                .await
            }
            None => {
                // Null rollback: record it (which also refuses a late prepare) and succeed
                // without running the business rollback.
                let inserted = fence
                    .insert(
                        &mut conn,
                        &ctx.xid,
                        ctx.branch_id,
                        &self.name,
                        FenceStatus::Suspended,
                    )
                    .await;
                match inserted {
                    Ok(true) => {
                        end_local(conn, true).await?;
                        info!(xid = %ctx.xid, branch_id = ctx.branch_id, "null rollback: fence row suspended");
                        Ok(())
                    }
                    // A prepare inserted its row meanwhile: decide again on the retry.
                    Ok(false) => {
                        Self::refuse(conn, "a prepare raced the null rollback; retrying").await
                    }
                    Err(e) => {
                        end_local(conn, false).await?;
                        Err(e)
                    }
                }
            }
            Some(FenceStatus::Committed) if commit => end_local(conn, true).await,
            Some(FenceStatus::Rollbacked | FenceStatus::Suspended) if !commit => {
                end_local(conn, true).await
            }
            Some(
                done @ (FenceStatus::Committed | FenceStatus::Rollbacked | FenceStatus::Suspended),
            ) => {
                warn!(xid = %ctx.xid, branch_id = ctx.branch_id, ?done, ?phase, "phase two contradicts the fence row");
                Self::refuse(
                    conn,
                    "phase two contradicts the fence row (Seata answers a retryable failure)",
                )
                .await
            }
            Some(FenceStatus::Tried) => {
                let to = if commit {
                    FenceStatus::Committed
                } else {
                    FenceStatus::Rollbacked
                };
                match fence.finish(&mut conn, &ctx.xid, ctx.branch_id, to).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return Self::refuse(conn, "fence row changed under its lock").await
                    }
                    Err(e) => {
                        end_local(conn, false).await?;
                        return Err(e);
                    }
                }
                ctx.conn = Some(conn);
                let result = self.run_two(phase, ctx).await;
                if let Some(conn) = ctx.conn.take() {
                    end_local(conn, result.is_ok()).await?;
                }
                result
            }
        }
    }

    /// The phase's local transaction rolls back and the TC is told to retry.
    async fn refuse(conn: Conn, why: &'static str) -> Result<(), RmError> {
        end_local(conn, false).await?;
        Err(RmError::TxState(why.into()))
    }

    async fn run_two(&self, phase: Phase, ctx: &mut BusinessActionContext) -> Result<(), RmError> {
        self.action
            .run(phase, ctx)
            .await
            .map_err(|source| RmError::TccPhaseTwo {
                xid: ctx.xid.clone(),
                branch_id: ctx.branch_id,
                action: self.name.clone(),
                source,
            })
    }
}

/// Runs TC-pushed phase two of a TCC branch and maps the outcome to the status to report.
#[instrument(skip_all, fields(xid = %xid, branch_id = branch_id, action = %resource.name))]
pub(crate) async fn branch_phase_two(
    resource: &TccResource,
    commit: bool,
    xid: &str,
    branch_id: i64,
    application_data: &str,
) -> BranchStatus {
    let (phase, done, failed) = if commit {
        (
            Phase::Commit,
            BranchStatus::PhaseTwoCommitted,
            BranchStatus::PhaseTwoCommitFailedRetryable,
        )
    } else {
        (
            Phase::Rollback,
            BranchStatus::PhaseTwoRollbacked,
            BranchStatus::PhaseTwoRollbackFailedRetryable,
        )
    };
    let action_context = match context::decode_application_data(application_data) {
        Ok(c) => c,
        Err(reason) => {
            warn!(reason, "TCC applicationData unreadable; the TC will retry");
            return failed;
        }
    };
    let mut ctx = BusinessActionContext::new(xid, branch_id, &resource.name, action_context);
    match resource.phase_two(phase, &mut ctx).await {
        Ok(()) => {
            info!(?phase, "TCC branch done");
            done
        }
        Err(e) => {
            warn!(error = %e, ?phase, "TCC phase two failed; the TC will retry");
            failed
        }
    }
}

/// A handle on a registered action; cheap to clone.
#[derive(Debug, Clone)]
pub struct TccActionRef {
    rm: Arc<RmClient>,
    resource: Arc<TccResource>,
}

impl TccActionRef {
    pub(crate) fn new(rm: Arc<RmClient>, resource: Arc<TccResource>) -> Self {
        TccActionRef { rm, resource }
    }

    /// The action name (resource id).
    pub fn name(&self) -> &str {
        &self.resource.name
    }

    /// Runs prepare for a branch registered elsewhere (a gateway registering for a backend,
    /// a redelivered request): no branch is registered; the fence, if any, applies as usual,
    /// so a prepare arriving after its branch's rollback is refused.
    pub async fn prepare_branch(
        &self,
        xid: &str,
        branch_id: i64,
        params: impl Serialize,
    ) -> Result<(), RmError> {
        let action_context = self.action_context(params)?;
        let mut ctx = BusinessActionContext::new(xid, branch_id, self.name(), action_context);
        without_xid(self.resource.prepare(&mut ctx)).await
    }

    /// Runs phase two as the RM does when the TC asks (for repair tools and tests):
    /// `application_data` is the branch's registered data; the answer is the status the RM
    /// would report.
    pub async fn phase_two(
        &self,
        commit: bool,
        xid: &str,
        branch_id: i64,
        application_data: &str,
    ) -> BranchStatus {
        branch_phase_two(&self.resource, commit, xid, branch_id, application_data).await
    }

    /// The action context of a call: `params` plus Seata's system keys.
    fn action_context(&self, params: impl Serialize) -> Result<Map<String, Value>, RmError> {
        let name = &self.resource.name;
        let params = match serde_json::to_value(params) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => Map::new(),
            Ok(other) => {
                return Err(RmError::TccParams {
                    action: name.clone(),
                    reason: format!("parameters must serialize to a JSON object, not {other}"),
                })
            }
            Err(e) => {
                return Err(RmError::TccParams {
                    action: name.clone(),
                    reason: e.to_string(),
                })
            }
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        Ok(context::build_action_context(
            params,
            name,
            &self.rm.local_ip(),
            now_ms,
        ))
    }

    /// Calls the action with `params` (anything serializing to a JSON object, or `()` for
    /// none). Inside a global transaction this registers a TCC branch and runs prepare,
    /// returning the branch id; outside one it only runs prepare (in a local transaction if
    /// fenced) and returns 0. Prepare runs with no XID bound, so AT data sources used inside
    /// it do not register AT branches of their own (as in Java).
    #[instrument(skip_all, fields(action = %self.resource.name, xid = tracing::field::Empty, branch_id = tracing::field::Empty))]
    pub async fn call(&self, params: impl Serialize) -> Result<i64, RmError> {
        let name = &self.resource.name;
        let action_context = self.action_context(params)?;
        let Some(xid) = await_current_xid().await? else {
            let mut ctx = BusinessActionContext::new("", 0, name, action_context);
            self.resource.prepare(&mut ctx).await?;
            return Ok(0);
        };
        tracing::Span::current().record("xid", xid.as_str());
        let data = context::encode_application_data(&action_context);
        let branch_id = self
            .rm
            .register_branch(seata_protocol::BranchType::Tcc, &xid, name, "", Some(&data))
            .await?;
        tracing::Span::current().record("branch_id", branch_id);
        let mut ctx = BusinessActionContext::new(&xid, branch_id, name, action_context);
        without_xid(self.resource.prepare(&mut ctx)).await?;
        Ok(branch_id)
    }
}
