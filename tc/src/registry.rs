//! Who is connected: every registered TM and RM connection, and for each resource id the RM
//! connections that manage it. Implements [`BranchGateway`]: phase-two requests go to the
//! connection that registered the branch while it is connected (as Seata, tc-semantics 4.2).
//! Otherwise Seata takes the first holder it finds in its preference order (same application
//! on the same host, same application anywhere, any holder), so one instance of a scaled-out
//! service gets every orphaned branch; here phase two is spread over the holders of the best
//! such tier instead: the one with the fewest phase-two requests in flight, ties taken in
//! turn (round robin). XA branches stay pinned to the connection that prepared them while it
//! is connected, with no fallback: only that instance's held session can finish a prepared
//! branch still attached to it (tcc-xa-saga.md §3.3). When that connection is gone, an XA
//! phase two answered "retry" goes on to the next holder at once: the process holding the
//! branch's session is one of them.
//!
//! Concurrency: one `DashMap` shard lock per lookup, never across an `.await`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use seata_protocol::rpc::{RpcError, RpcHandle};
use seata_protocol::{
    BranchCommitRequest, BranchRollbackRequest, BranchStatus, BranchType, Message,
    UndoLogDeleteRequest,
};
use tracing::{debug, info, warn};

use crate::coordinator::ClientInfo;
use crate::gateway::{BranchGateway, BranchTarget, GatewayError};

/// TM or RM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Transaction manager connection.
    Tm,
    /// Resource manager connection.
    Rm,
}

/// One registered connection.
#[derive(Debug)]
pub struct Registered {
    /// TM or RM.
    pub role: Role,
    /// applicationId, transactionServiceGroup and `applicationId:ip:port`.
    pub client: ClientInfo,
    /// The peer's IP as text (for the same-host preference).
    pub ip: String,
    /// Client-sent version string (stored, not checked: Seata 1.2 accepts any).
    pub version: String,
    /// The connection.
    pub conn: RpcHandle,
    /// Phase-two requests sent on it and not yet answered.
    in_flight: AtomicUsize,
}

impl Registered {
    /// Phase-two requests this TC is waiting on from this connection.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts one phase-two request in flight on a connection until dropped.
struct InFlight(Arc<Registered>);

impl InFlight {
    fn new(r: Arc<Registered>) -> Self {
        r.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(r)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection registry.
#[derive(Debug)]
pub struct Registry {
    /// Connection id → registration.
    conns: DashMap<u64, Arc<Registered>>,
    /// Resource id → RM connections holding it.
    resources: DashMap<String, Vec<Arc<Registered>>>,
    rpc_timeout: Duration,
    /// Turn counter for breaking in-flight ties (round robin).
    turn: AtomicUsize,
}

impl Registry {
    /// An empty registry; phase-two requests wait at most `rpc_timeout` for the RM.
    pub fn new(rpc_timeout: Duration) -> Self {
        Registry {
            conns: DashMap::new(),
            resources: DashMap::new(),
            rpc_timeout,
            turn: AtomicUsize::new(0),
        }
    }

    fn client_of(conn: &RpcHandle, application_id: &str, group: &str) -> (ClientInfo, String) {
        let peer = conn.peer_addr();
        let ip = peer.ip().to_string();
        let client = ClientInfo {
            application_id: application_id.to_owned(),
            transaction_service_group: group.to_owned(),
            client_id: format!("{application_id}:{ip}:{}", peer.port()),
        };
        (client, ip)
    }

    /// Records a TM registration.
    pub fn register_tm(
        &self,
        conn: &RpcHandle,
        application_id: &str,
        group: &str,
        version: &str,
    ) -> Arc<Registered> {
        let (client, ip) = Registry::client_of(conn, application_id, group);
        let entry = Arc::new(Registered {
            role: Role::Tm,
            client,
            ip,
            version: version.to_owned(),
            conn: conn.clone(),
            in_flight: AtomicUsize::new(0),
        });
        info!(client_id = %entry.client.client_id, version, "TM registered");
        self.conns.insert(conn.id(), entry.clone());
        entry
    }

    /// Records an RM registration (first, or a later one adding resources). Like Seata, the
    /// application's other connections from the same host become eligible for the resources
    /// too.
    pub fn register_rm<'a>(
        &self,
        conn: &RpcHandle,
        application_id: &str,
        group: &str,
        version: &str,
        resource_ids: impl Iterator<Item = &'a str>,
    ) -> Arc<Registered> {
        let entry = match self.conns.get(&conn.id()).map(|e| e.clone()) {
            Some(existing) if existing.role == Role::Rm => existing,
            _ => {
                let (client, ip) = Registry::client_of(conn, application_id, group);
                let entry = Arc::new(Registered {
                    role: Role::Rm,
                    client,
                    ip,
                    version: version.to_owned(),
                    conn: conn.clone(),
                    in_flight: AtomicUsize::new(0),
                });
                self.conns.insert(conn.id(), entry.clone());
                entry
            }
        };
        let siblings: Vec<Arc<Registered>> = self
            .conns
            .iter()
            .filter(|e| {
                e.role == Role::Rm
                    && e.client.application_id == entry.client.application_id
                    && e.ip == entry.ip
            })
            .map(|e| e.clone())
            .collect();
        // One line per registration, not per resource: an RM may list thousands.
        let mut count = 0usize;
        let mut first = None;
        for resource in resource_ids {
            let mut holders = self.resources.entry(resource.to_owned()).or_default();
            holders.retain(|h| !h.conn.is_closed());
            for s in &siblings {
                if !holders.iter().any(|h| h.conn.id() == s.conn.id()) {
                    holders.push(s.clone());
                }
            }
            debug!(client_id = %entry.client.client_id, resource, "RM resource registered");
            count += 1;
            first.get_or_insert(resource);
        }
        info!(client_id = %entry.client.client_id, version, resources = count,
            first = first.unwrap_or_default(), "RM registered");
        entry
    }

    /// The registration of a connection, if it registered.
    pub fn get(&self, conn_id: u64) -> Option<Arc<Registered>> {
        self.conns.get(&conn_id).map(|e| e.clone())
    }

    /// Forgets a closed connection everywhere.
    pub fn remove(&self, conn_id: u64) {
        if let Some((_, entry)) = self.conns.remove(&conn_id) {
            // The RPC layer has logged the close and its cause at INFO already.
            debug!(client_id = %entry.client.client_id, role = ?entry.role, "connection closed");
            if entry.role == Role::Rm {
                self.resources.retain(|_, holders| {
                    holders.retain(|h| h.conn.id() != conn_id);
                    !holders.is_empty()
                });
            }
        }
    }

    /// Registered connections now.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Live RM connections for `resource_id`, in the order phase two of an AT or TCC branch
    /// registered by `client_id` (`applicationId:ip:port`) tries them.
    pub fn candidates(&self, resource_id: &str, client_id: &str) -> Vec<RpcHandle> {
        self.route(resource_id, client_id, BranchType::At)
            .into_iter()
            .map(|r| r.conn.clone())
            .collect()
    }

    /// The order in which phase two tries the holders of `resource_id`: the branch's own
    /// connection first; XA stops there while it is connected. Then the other holders by tier
    /// (same application and host, same application, any), each tier spread by fewest
    /// requests in flight, ties in turn.
    fn route(
        &self,
        resource_id: &str,
        client_id: &str,
        branch_type: BranchType,
    ) -> Vec<Arc<Registered>> {
        let Some(holders) = self.resources.get(resource_id) else {
            return Vec::new();
        };
        // IPv6 addresses contain ':' too: the application id is before the first ':', the
        // port after the last one (Seata 1.2 fails on IPv6 client ids; we do not).
        let (app, rest) = client_id.split_once(':').unwrap_or((client_id, ""));
        let ip = rest.rsplit_once(':').map_or(rest, |(ip, _)| ip);
        let live: Vec<Arc<Registered>> = holders
            .iter()
            .filter(|h| !h.conn.is_closed())
            .cloned()
            .collect();
        drop(holders);
        if let Some(own) = live.iter().find(|h| h.client.client_id == client_id) {
            if branch_type == BranchType::Xa {
                return vec![own.clone()];
            }
        }
        let len = live.len().max(1);
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % len;
        let mut ranked: Vec<(u8, usize, usize, Arc<Registered>)> = live
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let tier = if h.client.client_id == client_id {
                    0
                } else if h.client.application_id == app && h.ip == ip {
                    1
                } else if h.client.application_id == app {
                    2
                } else {
                    3
                };
                let rotation = (i + len - turn) % len;
                (tier, h.in_flight(), rotation, h)
            })
            .collect();
        ranked.sort_by_key(|(tier, in_flight, rotation, _)| (*tier, *in_flight, *rotation));
        ranked.into_iter().map(|(.., h)| h).collect()
    }

    async fn send_phase_two(
        &self,
        target: &BranchTarget,
        msg: Message,
    ) -> Result<Message, GatewayError> {
        let candidates = self.route(&target.resource_id, &target.client_id, target.branch_type);
        if candidates.is_empty() {
            return Err(GatewayError::NotConnected {
                resource_id: target.resource_id.clone(),
                client_id: target.client_id.clone(),
            });
        }
        let mut last = GatewayError::Closed;
        let mut retryable = None;
        for holder in candidates {
            let conn = holder.conn.clone();
            let _counted = InFlight::new(holder);
            match conn.call_timeout(msg.clone(), self.rpc_timeout).await {
                // An XA branch whose registering connection is gone (a TC restart moves every
                // RM to a new port) may be held by any process of the service; one that does
                // not hold it answers "retry". XA phase two is idempotent by XID, so ask the
                // others now rather than after a backed-off retry.
                Ok(reply) if target.branch_type == BranchType::Xa && answers_retry(&reply) => {
                    debug!("XA phase two not held by this RM; asking the next holder");
                    retryable = Some(reply);
                }
                Ok(reply) => return Ok(reply),
                // Never written: safe to try the next holder of the resource.
                Err(e) if e.is_not_sent() => {
                    debug!(error = %e, "RM connection closed before sending; trying the next");
                    last = GatewayError::Closed;
                }
                Err(RpcError::Timeout { .. }) => return Err(GatewayError::Timeout),
                Err(e) => {
                    warn!(error = %e, "phase-two request failed");
                    return Err(GatewayError::Closed);
                }
            }
        }
        retryable.ok_or(last)
    }
}

/// A phase-two answer that asks to be retried.
fn answers_retry(reply: &Message) -> bool {
    let status = match reply {
        Message::BranchCommitResponse(r) => r.branch_status,
        Message::BranchRollbackResponse(r) => r.branch_status,
        _ => return false,
    };
    matches!(
        status,
        BranchStatus::PhaseTwoCommitFailedRetryable | BranchStatus::PhaseTwoRollbackFailedRetryable
    )
}

/// Which half of phase two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Commit,
    Rollback,
}

impl Registry {
    /// Sends the branch's phase-two request and reads the status the RM reports. A `Failed`
    /// answer or a response of the wrong type is a (retryable) gateway failure.
    async fn phase_two(
        &self,
        target: BranchTarget,
        phase: Phase,
    ) -> Result<BranchStatus, GatewayError> {
        self.phase_two_reported(target, phase).await.map(|(s, _)| s)
    }

    /// [`phase_two`](Self::phase_two) with the RM's message. An unretryable status is taken
    /// whatever the result code (Seata's TC reads the status alone), so an RM may send its
    /// dirty-rollback report with either.
    async fn phase_two_reported(
        &self,
        target: BranchTarget,
        phase: Phase,
    ) -> Result<(BranchStatus, String), GatewayError> {
        let BranchTarget {
            xid,
            branch_id,
            branch_type,
            resource_id,
            application_data,
            ..
        } = target.clone();
        let msg: Message = match phase {
            Phase::Commit => BranchCommitRequest {
                xid,
                branch_id,
                branch_type,
                resource_id,
                application_data,
            }
            .into(),
            Phase::Rollback => BranchRollbackRequest {
                xid,
                branch_id,
                branch_type,
                resource_id,
                application_data,
            }
            .into(),
        };
        let (result, status) = match (phase, self.send_phase_two(&target, msg).await?) {
            (Phase::Commit, Message::BranchCommitResponse(r)) => (r.result, r.branch_status),
            (Phase::Rollback, Message::BranchRollbackResponse(r)) => (r.result, r.branch_status),
            (_, other) => {
                return Err(GatewayError::Failed(format!(
                    "RM answered phase two ({phase:?}) with {}",
                    other.name()
                )))
            }
        };
        let unretryable = matches!(
            status,
            BranchStatus::PhaseTwoRollbackFailedUnretryable
                | BranchStatus::PhaseTwoCommitFailedUnretryable
        );
        if result.is_success() || unretryable {
            Ok((status, result.msg))
        } else {
            Err(GatewayError::Failed(result.msg))
        }
    }
}

impl crate::metrics::ConnectionGauges for Registry {
    fn connections_by_role(&self) -> (u64, u64) {
        let (mut tm, mut rm) = (0u64, 0u64);
        for entry in self.conns.iter() {
            match entry.role {
                Role::Tm => tm += 1,
                Role::Rm => rm += 1,
            }
        }
        (tm, rm)
    }
}

/// One registered connection as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientView {
    /// Application id from the registration.
    pub application_id: String,
    /// Transaction service group from the registration.
    pub transaction_service_group: String,
    /// Peer IP.
    pub ip: String,
    /// Peer port.
    pub port: u16,
    /// `TM` or `RM`.
    pub role: &'static str,
    /// Client-sent version.
    pub version: String,
    /// Resources this connection may be sent phase two for (RM).
    pub resources: Vec<String>,
    /// Phase-two requests waiting on it.
    pub in_flight: usize,
}

impl Registry {
    /// Every registered connection, sorted by application, IP and port.
    pub fn clients(&self) -> Vec<ClientView> {
        let mut by_conn: std::collections::HashMap<u64, Vec<String>> =
            std::collections::HashMap::new();
        for entry in self.resources.iter() {
            for h in entry.value() {
                by_conn
                    .entry(h.conn.id())
                    .or_default()
                    .push(entry.key().clone());
            }
        }
        let mut out: Vec<ClientView> = self
            .conns
            .iter()
            .map(|e| {
                let mut resources = by_conn.remove(&e.conn.id()).unwrap_or_default();
                resources.sort();
                ClientView {
                    application_id: e.client.application_id.clone(),
                    transaction_service_group: e.client.transaction_service_group.clone(),
                    ip: e.ip.clone(),
                    port: e.conn.peer_addr().port(),
                    role: match e.role {
                        Role::Tm => "TM",
                        Role::Rm => "RM",
                    },
                    version: e.version.clone(),
                    resources,
                    in_flight: e.in_flight(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.application_id, &a.ip, a.port).cmp(&(&b.application_id, &b.ip, b.port))
        });
        out
    }
}

impl BranchGateway for Registry {
    fn branch_commit(
        &self,
        target: BranchTarget,
    ) -> BoxFuture<'_, Result<BranchStatus, GatewayError>> {
        Box::pin(self.phase_two(target, Phase::Commit))
    }

    fn branch_rollback(
        &self,
        target: BranchTarget,
    ) -> BoxFuture<'_, Result<BranchStatus, GatewayError>> {
        Box::pin(self.phase_two(target, Phase::Rollback))
    }

    fn branch_rollback_reported(
        &self,
        target: BranchTarget,
    ) -> BoxFuture<'_, Result<(BranchStatus, String), GatewayError>> {
        Box::pin(self.phase_two_reported(target, Phase::Rollback))
    }

    fn broadcast_undo_log_delete(&self, save_days: i16) {
        let targets: Vec<(String, RpcHandle)> = self
            .resources
            .iter()
            .filter_map(|e| {
                e.value()
                    .iter()
                    .find(|h| !h.conn.is_closed())
                    .map(|h| (e.key().clone(), h.conn.clone()))
            })
            .collect();
        for (resource_id, conn) in targets {
            let req = UndoLogDeleteRequest {
                branch_type: BranchType::At,
                resource_id,
                save_days,
            };
            tokio::spawn(async move {
                if let Err(e) = conn.send_oneway(req).await {
                    debug!(error = %e, "undo log delete not sent");
                }
            });
        }
    }
}
