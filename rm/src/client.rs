//! [`RmClient`]: the RM's connections to the TC. It registers as RM with its resource ids (and
//! again whenever a data source or TCC action is added), carries the branch register / report /
//! global lock query of every mode ([`TcLink`] for AT), and answers what the TC pushes:
//! phase-two commit and rollback, dispatched by branch type (AT, TCC by action name, XA by
//! data source), and undo-log deletion. Each pushed request runs in its own task,
//! so phase two of many branches proceeds concurrently without blocking the connection.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use seata_protocol::rpc::{
    Registration, RequestHandler, RpcConfig, RpcHandle, TcClient, TcClientConfig,
};
use seata_protocol::{
    BranchCommitResponse, BranchRegisterRequest, BranchRegisterResponse, BranchReportRequest,
    BranchReportResponse, BranchRollbackResponse, BranchStatus, BranchType, GlobalLockQueryRequest,
    GlobalLockQueryResponse, GlobalStatus, GlobalStatusRequest, GlobalStatusResponse, Message,
    TransactionExceptionCode, TxResult,
};
use tracing::{info_span, warn, Instrument};

use crate::at::{AtConfig, AtResourceManager, DataSourceProxy, TcLink};
use crate::error::RmError;
use crate::tcc::{self, TccAction, TccActionRef, TccFence, TccResource};
use crate::xa::{XaDataSource, XaInner};

/// Settings of an [`RmClient`].
#[derive(Debug, Clone)]
pub struct RmClientConfig {
    /// Seata `applicationId`.
    pub application_id: String,
    /// Seata `transactionServiceGroup`.
    pub transaction_service_group: String,
    /// TC addresses (`host:port`), all connected, requests spread over them.
    pub tc_addresses: Vec<String>,
    /// Per-connection settings (timeouts, heartbeats, batching).
    pub rpc: RpcConfig,
    /// How long [`RmClient::connect`] waits for a first TC. Default 10 s.
    pub connect_timeout: Duration,
    /// A prepared XA branch that has waited this long for phase two is looked up at the TC
    /// (then once per such period): rolled back if its global transaction ended without it or
    /// is rolling back, committed if commit was decided. Default 10 s.
    pub xa_check_after: Duration,
}

impl RmClientConfig {
    /// Defaults for an application and its TC addresses.
    pub fn new(application_id: impl Into<String>, tc_addresses: Vec<String>) -> Self {
        RmClientConfig {
            application_id: application_id.into(),
            transaction_service_group: "default_tx_group".into(),
            tc_addresses,
            rpc: RpcConfig::client(),
            connect_timeout: Duration::from_secs(10),
            xa_check_after: Duration::from_secs(10),
        }
    }
}

/// Dispatches TC-pushed requests to the resource managers by branch type.
#[derive(Debug, Default)]
struct Dispatcher {
    at: OnceLock<Weak<AtResourceManager>>,
    /// TCC actions by name (resource id).
    tcc: DashMap<String, Arc<TccResource>>,
    /// XA data sources by resource id, held weakly like AT's manager.
    xa: DashMap<String, Weak<XaInner>>,
}

/// The RM side of a service.
#[derive(Debug)]
pub struct RmClient {
    tc: TcClient,
    dispatcher: Arc<Dispatcher>,
    xa_check_after: Duration,
}

impl RmClient {
    /// Connects to the TCs and registers as RM (with no resources yet).
    pub async fn connect(config: RmClientConfig) -> Result<Arc<Self>, RmError> {
        let dispatcher = Arc::new(Dispatcher::default());
        let mut tc_config = TcClientConfig::new(
            config.tc_addresses.clone(),
            Registration::Rm {
                application_id: config.application_id.clone(),
                transaction_service_group: config.transaction_service_group.clone(),
                resource_ids: Vec::new(),
            },
        );
        tc_config.rpc = config.rpc.clone();
        let tc = TcClient::connect(tc_config, dispatcher.clone(), config.connect_timeout).await?;
        Ok(Arc::new(RmClient {
            tc,
            dispatcher,
            xa_check_after: config.xa_check_after,
        }))
    }

    /// The AT resource manager of this client (created on first call; later calls return the
    /// same one and ignore `config`). The client holds it weakly (it holds the client); the
    /// data sources made from it keep it alive, so phase two reaches it while they are in use.
    pub fn at(self: &Arc<Self>, config: AtConfig) -> Result<Arc<AtResourceManager>, RmError> {
        if let Some(existing) = self.dispatcher.at.get().and_then(Weak::upgrade) {
            return Ok(existing);
        }
        let link: Arc<dyn TcLink> = self.clone();
        let at = AtResourceManager::new(link, config)?;
        let _ = self.dispatcher.at.set(Arc::downgrade(&at));
        Ok(self
            .dispatcher
            .at
            .get()
            .and_then(Weak::upgrade)
            .unwrap_or(at))
    }

    /// Adds a MySQL database as an AT resource of `at` and announces it to the TC.
    pub async fn at_data_source(
        &self,
        at: &Arc<AtResourceManager>,
        opts: impl Into<mysql_async::Opts>,
    ) -> Result<DataSourceProxy, RmError> {
        let ds = at.data_source(opts);
        self.register_resource(ds.resource_id()).await?;
        Ok(ds)
    }

    /// Registers a TCC action under `name` (its resource id, unique in the application) and
    /// announces it to the TC. Without a fence, its phases must be idempotent and cope with a
    /// rollback whose prepare never ran (see [`crate::tcc`]). A second action under the same
    /// name replaces the first.
    pub async fn tcc<A: TccAction>(
        self: &Arc<Self>,
        name: &str,
        action: A,
    ) -> Result<TccActionRef, RmError> {
        self.add_tcc(TccResource::new(name, action, None), name)
            .await
    }

    /// [`tcc`](Self::tcc) with Seata 1.5's fence: each phase runs in a local transaction on a
    /// connection of `fence`'s pool, together with the `tcc_fence_log` row that makes phase two
    /// idempotent, turns a rollback without prepare into a no-op and refuses a prepare after
    /// its rollback. The table must exist ([`TccFence::create_table`] or
    /// [`tcc::TCC_FENCE_LOG_DDL`]).
    pub async fn tcc_fenced<A: TccAction>(
        self: &Arc<Self>,
        name: &str,
        action: A,
        fence: TccFence,
    ) -> Result<TccActionRef, RmError> {
        self.add_tcc(TccResource::new(name, action, Some(fence)), name)
            .await
    }

    async fn add_tcc(
        self: &Arc<Self>,
        resource: TccResource,
        name: &str,
    ) -> Result<TccActionRef, RmError> {
        let resource = Arc::new(resource);
        self.dispatcher
            .tcc
            .insert(name.to_string(), resource.clone());
        self.register_resource(name).await?;
        Ok(TccActionRef::new(self.clone(), resource))
    }

    /// Adds a MySQL database as an XA resource, announces it to the TC, and runs
    /// [`XaDataSource::recover`] once (failures there are logged: the TC's phase two still
    /// finishes what it knows). Keep the returned data source: the client holds it weakly.
    pub async fn xa_data_source(
        self: &Arc<Self>,
        opts: impl Into<mysql_async::Opts>,
    ) -> Result<XaDataSource, RmError> {
        let ds = XaDataSource::new(self.clone(), opts.into());
        crate::xa::spawn_orphan_check(&ds, self.xa_check_after);
        self.dispatcher
            .xa
            .insert(ds.resource_id().to_string(), Arc::downgrade(&ds.inner));
        self.register_resource(ds.resource_id()).await?;
        match ds.recover().await {
            Ok(r) if r == crate::xa::XaRecovery::default() => {}
            Ok(r) => tracing::info!(resource = ds.resource_id(), ?r, "XA recovery"),
            Err(e) => warn!(resource = ds.resource_id(), error = %e, "XA recovery failed"),
        }
        Ok(ds)
    }

    /// Registers a branch of any type; the branch id.
    pub(crate) async fn register_branch(
        &self,
        branch_type: BranchType,
        xid: &str,
        resource_id: &str,
        lock_keys: &str,
        application_data: Option<&str>,
    ) -> Result<i64, RmError> {
        let r = self
            .try_register_branch(branch_type, xid, resource_id, lock_keys, application_data)
            .await;
        crate::metrics::registered(branch_type, &r);
        r
    }

    async fn try_register_branch(
        &self,
        branch_type: BranchType,
        xid: &str,
        resource_id: &str,
        lock_keys: &str,
        application_data: Option<&str>,
    ) -> Result<i64, RmError> {
        let r: BranchRegisterResponse = self
            .tc
            .request(BranchRegisterRequest {
                xid: xid.into(),
                branch_type,
                resource_id: resource_id.into(),
                lock_key: lock_keys.into(),
                application_data: application_data.unwrap_or_default().into(),
            })
            .await?;
        if r.result.is_success() {
            return Ok(r.branch_id);
        }
        if r.result.transaction_exception_code == TransactionExceptionCode::LockKeyConflict {
            return Err(RmError::LockConflict {
                xid: xid.into(),
                lock_keys: lock_keys.into(),
                message: r.result.msg,
            });
        }
        Err(rejected("branch register", r.result))
    }

    /// Reports a branch's phase-one outcome.
    pub(crate) async fn report_branch(
        &self,
        branch_type: BranchType,
        xid: &str,
        branch_id: i64,
        resource_id: &str,
        status: BranchStatus,
    ) -> Result<(), RmError> {
        let r: BranchReportResponse = self
            .tc
            .request(BranchReportRequest {
                xid: xid.into(),
                branch_id,
                status,
                resource_id: resource_id.into(),
                application_data: String::new(),
                branch_type,
            })
            .await?;
        if r.result.is_success() {
            Ok(())
        } else {
            Err(rejected("branch report", r.result))
        }
    }

    /// The TC's status of a global transaction (`Finished` when it does not know it).
    pub async fn global_status(&self, xid: &str) -> Result<GlobalStatus, RmError> {
        let r: GlobalStatusResponse = self
            .tc
            .request(GlobalStatusRequest {
                xid: xid.into(),
                extra_data: String::new(),
            })
            .await?;
        if r.result.is_success() {
            Ok(r.global_status)
        } else {
            Err(rejected("global status", r.result))
        }
    }

    /// `ip:port` of each connected TC, as XIDs begun there start.
    pub(crate) fn tc_addresses(&self) -> Vec<String> {
        self.tc
            .connections()
            .iter()
            .map(|c| c.peer_addr().to_string())
            .collect()
    }

    /// This host's address as the TC sees it (Java's `host-name` in a TCC action context).
    pub(crate) fn local_ip(&self) -> String {
        self.tc
            .connections()
            .first()
            .map(|c| c.local_addr().ip().to_string())
            .unwrap_or_else(|| "127.0.0.1".into())
    }

    /// Announces a resource id to every TC connection (and to future ones).
    pub async fn register_resource(&self, resource_id: &str) -> Result<(), RmError> {
        self.tc.register_resource(resource_id).await?;
        Ok(())
    }

    /// The underlying TC connections.
    pub fn tc(&self) -> &TcClient {
        &self.tc
    }

    /// Closes the TC connections.
    pub fn shutdown(&self) {
        self.tc.shutdown();
    }
}

fn rejected(operation: &'static str, result: TxResult) -> RmError {
    RmError::TcRejected {
        operation,
        code: result.transaction_exception_code,
        message: result.msg,
    }
}

impl TcLink for RmClient {
    fn branch_register<'a>(
        &'a self,
        xid: &'a str,
        resource_id: &'a str,
        lock_keys: &'a str,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, RmError>> {
        Box::pin(self.register_branch(
            BranchType::At,
            xid,
            resource_id,
            lock_keys,
            application_data,
        ))
    }

    fn branch_report<'a>(
        &'a self,
        xid: &'a str,
        branch_id: i64,
        status: BranchStatus,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), RmError>> {
        Box::pin(async move {
            let r: BranchReportResponse = self
                .tc
                .request(BranchReportRequest {
                    xid: xid.into(),
                    branch_id,
                    status,
                    resource_id: String::new(),
                    application_data: application_data.unwrap_or_default().into(),
                    branch_type: BranchType::At,
                })
                .await?;
            if r.result.is_success() {
                Ok(())
            } else {
                Err(rejected("branch report", r.result))
            }
        })
    }

    fn lock_query<'a>(
        &'a self,
        xid: &'a str,
        resource_id: &'a str,
        lock_keys: &'a str,
    ) -> BoxFuture<'a, Result<bool, RmError>> {
        Box::pin(async move {
            let r: GlobalLockQueryResponse = self
                .tc
                .request(GlobalLockQueryRequest {
                    xid: xid.into(),
                    branch_type: BranchType::At,
                    resource_id: resource_id.into(),
                    lock_key: lock_keys.into(),
                    application_data: String::new(),
                })
                .await?;
            if r.result.is_success() {
                Ok(r.lockable)
            } else {
                Err(rejected("global lock query", r.result))
            }
        })
    }
}

impl Dispatcher {
    fn at(&self) -> Option<Arc<AtResourceManager>> {
        self.at.get().and_then(Weak::upgrade)
    }

    fn tcc(&self, resource_id: &str) -> Option<Arc<TccResource>> {
        self.tcc.get(resource_id).map(|e| e.value().clone())
    }

    fn xa(&self, resource_id: &str) -> Option<Arc<XaInner>> {
        self.xa.get(resource_id).and_then(|e| e.value().upgrade())
    }
}

impl Dispatcher {
    /// Runs phase two on the resource manager of the branch's type. A branch type this RM does
    /// not manage gets a Failed answer with a retryable status, which the TC retries later
    /// (perhaps on another RM holding the resource).
    async fn phase_two(
        &self,
        commit: bool,
        xid: &str,
        branch_id: i64,
        branch_type: BranchType,
        resource_id: &str,
        application_data: &str,
    ) -> (TxResult, BranchStatus) {
        if branch_type == BranchType::Tcc {
            if let Some(action) = self.tcc(resource_id) {
                let status =
                    tcc::branch_phase_two(&action, commit, xid, branch_id, application_data).await;
                return (TxResult::success(), status);
            }
        }
        if branch_type == BranchType::Xa {
            if let Some(xa) = self.xa(resource_id) {
                return (
                    TxResult::success(),
                    xa.phase_two(commit, xid, branch_id).await,
                );
            }
        }
        match (branch_type, self.at()) {
            (BranchType::At, Some(at)) if commit => {
                let span = info_span!("branch_commit", xid, branch_id);
                let status = at
                    .branch_commit(xid, branch_id, resource_id)
                    .instrument(span)
                    .await;
                (TxResult::success(), status)
            }
            (BranchType::At, Some(at)) => {
                let span = info_span!("branch_rollback", xid, branch_id);
                let answer = at
                    .branch_rollback_reported(xid, branch_id, resource_id)
                    .instrument(span)
                    .await;
                // A dirty rollback's report travels as the message, which Seata's codec
                // carries only with resultCode Failed; the unretryable status decides.
                let result = match answer.message {
                    Some(report) => TxResult::failed(
                        TransactionExceptionCode::BranchRollbackFailedUnretriable,
                        report,
                    ),
                    None => TxResult::success(),
                };
                (result, answer.status)
            }
            (t, _) => {
                // The AT manager is held weakly (it holds this client): an application that
                // dropped it and every data source made from it can no longer finish its
                // branches.
                let hint = if t == BranchType::At {
                    "; keep a data source of RmClient::at (or the manager itself) alive for as \
                     long as the service runs"
                } else {
                    "; register the resource on this RM before the TC needs it"
                };
                warn!(
                    xid,
                    branch_id, resource_id, "phase two for a resource this RM does not serve{hint}"
                );
                (
                    TxResult::failed(
                        TransactionExceptionCode::Unknown,
                        format!("no {t} resource manager in this RM for {resource_id}{hint}"),
                    ),
                    if commit {
                        BranchStatus::PhaseTwoCommitFailedRetryable
                    } else {
                        BranchStatus::PhaseTwoRollbackFailedRetryable
                    },
                )
            }
        }
    }
}

impl RequestHandler for Dispatcher {
    fn on_request(
        self: Arc<Self>,
        _conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        Box::pin(async move {
            match msg {
                Message::BranchCommitRequest(r) => {
                    let (result, branch_status) = self
                        .phase_two(
                            true,
                            &r.xid,
                            r.branch_id,
                            r.branch_type,
                            &r.resource_id,
                            &r.application_data,
                        )
                        .await;
                    crate::metrics::phase_two(r.branch_type, true, branch_status);
                    Some(
                        BranchCommitResponse {
                            result,
                            xid: r.xid,
                            branch_id: r.branch_id,
                            branch_status,
                        }
                        .into(),
                    )
                }
                Message::BranchRollbackRequest(r) => {
                    let (result, branch_status) = self
                        .phase_two(
                            false,
                            &r.xid,
                            r.branch_id,
                            r.branch_type,
                            &r.resource_id,
                            &r.application_data,
                        )
                        .await;
                    crate::metrics::phase_two(r.branch_type, false, branch_status);
                    Some(
                        BranchRollbackResponse {
                            result,
                            xid: r.xid,
                            branch_id: r.branch_id,
                            branch_status,
                        }
                        .into(),
                    )
                }
                Message::UndoLogDeleteRequest(r) => {
                    if let Some(at) = self.at() {
                        if let Err(e) = at
                            .delete_undo_logs_older_than(&r.resource_id, i32::from(r.save_days))
                            .await
                        {
                            warn!(resource = %r.resource_id, error = %e, "undo log housekeeping failed");
                        }
                    }
                    None
                }
                other => {
                    warn!(
                        message = other.name(),
                        "request an RM does not serve; ignored"
                    );
                    None
                }
            }
        })
    }
}
