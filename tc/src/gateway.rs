//! The coordinator's view of the RMs: "send this branch's phase two to whichever RM
//! connection can take it". The coordinator depends only on this trait; the connection
//! registry (`registry.rs`) implements it over live RPC connections, and unit tests implement
//! it with scripted answers.

use futures::future::BoxFuture;
use seata_protocol::{BranchStatus, BranchType};
use thiserror::Error;

/// Everything the TC needs to address one branch's phase two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchTarget {
    /// Global transaction id.
    pub xid: String,
    /// Branch id.
    pub branch_id: i64,
    /// AT, TCC, SAGA or XA.
    pub branch_type: BranchType,
    /// Resource the branch registered (a database URL for AT).
    pub resource_id: String,
    /// `applicationId:ip:port` of the RM connection that registered the branch.
    pub client_id: String,
    /// Opaque data the RM attached at register time.
    pub application_data: String,
}

/// Why a phase-two request got no usable answer. Every variant is retryable: the branch stays
/// and the retry job tries again (spec tc-semantics 4.4: a Failed response or unknown status is
/// a retryable failure).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GatewayError {
    /// No live RM connection holds the resource.
    #[error("no RM connected for resource {resource_id} (branch registered by {client_id}); will retry when one registers")]
    NotConnected {
        /// The resource asked for.
        resource_id: String,
        /// The client that registered the branch.
        client_id: String,
    },
    /// The RM did not answer in time; the outcome is unknown.
    #[error("RM did not answer within the request timeout; outcome unknown, will retry")]
    Timeout,
    /// The connection closed before the answer came.
    #[error("RM connection closed before answering; will retry")]
    Closed,
    /// The RM answered with resultCode Failed.
    #[error("RM reported failure: {0}")]
    Failed(String),
}

/// Sends phase-two requests to RMs.
pub trait BranchGateway: Send + Sync + 'static {
    /// Asks an RM to commit the branch; returns the status it reports.
    fn branch_commit(
        &self,
        target: BranchTarget,
    ) -> BoxFuture<'_, Result<BranchStatus, GatewayError>>;
    /// Asks an RM to roll the branch back; returns the status it reports.
    fn branch_rollback(
        &self,
        target: BranchTarget,
    ) -> BoxFuture<'_, Result<BranchStatus, GatewayError>>;
    /// Like [`branch_rollback`](Self::branch_rollback), with the message the RM put in its
    /// answer (an AT RM explains an unretryable dirty rollback there). The default has no
    /// message.
    fn branch_rollback_reported(
        &self,
        target: BranchTarget,
    ) -> BoxFuture<'_, Result<(BranchStatus, String), GatewayError>> {
        let call = self.branch_rollback(target);
        Box::pin(async move { call.await.map(|s| (s, String::new())) })
    }
    /// Tells one live RM of every AT resource to delete undo logs older than `save_days`
    /// (one-way; nothing to wait for).
    fn broadcast_undo_log_delete(&self, save_days: i16);
}
