//! The TC's network side: a listener that accepts connections (at most `max-connections` at
//! once, per-IP cap and registration deadline in [`admission`]), one [`ConnectionHandler`] per
//! connection, and the process lifecycle in [`run`]: recover, start jobs, serve until
//! shutdown, then stop accepting, let in-flight requests finish, stop the jobs.

pub mod admission;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use seata_protocol::codec::FrameBudget;
use seata_protocol::rpc::{self, RequestHandler, RpcConfig, RpcHandle};
use seata_protocol::{Message, RegisterRmResponse, SEATA_VERSION};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{LimitsConfig, TcConfig};
use crate::coordinator::Coordinator;
use crate::dispatch::{self, Outcome};
use crate::dtm::engine::DtmEngine;
use crate::dtm::grpc::etcd;
use crate::error::TcError;
use crate::registry::Registry;
use crate::store::SessionStore;
use admission::Admission;

/// Serves one connection's requests.
#[derive(Debug)]
pub struct ConnectionHandler {
    coord: Arc<Coordinator>,
    registry: Arc<Registry>,
    admission: Arc<Admission>,
    limits: LimitsConfig,
}

impl RequestHandler for ConnectionHandler {
    fn on_request(
        self: Arc<Self>,
        conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        Box::pin(async move {
            match msg {
                Message::RegisterTmRequest(r) => {
                    self.admission.registered(conn.id());
                    self.registry.register_tm(
                        &conn,
                        &r.application_id,
                        &r.transaction_service_group,
                        &r.version,
                    );
                    return Some(dispatch::register_tm_ok());
                }
                Message::RegisterRmRequest(r) => {
                    let count = r.resource_id_list().count();
                    let max = self.limits.max_resource_ids_per_register;
                    if count > max {
                        warn!(peer = %conn.peer_addr(), application_id = %r.application_id,
                            resources = count, max,
                            "RegisterRM refused: more resource ids than limits.max-resource-ids-per-register");
                        return Some(
                            RegisterRmResponse {
                                identified: false,
                                version: SEATA_VERSION.into(),
                            }
                            .into(),
                        );
                    }
                    self.admission.registered(conn.id());
                    self.registry.register_rm(
                        &conn,
                        &r.application_id,
                        &r.transaction_service_group,
                        &r.version,
                        r.resource_id_list(),
                    );
                    for resource in r.resource_id_list() {
                        self.coord.resource_available(resource);
                    }
                    return Some(dispatch::register_rm_ok());
                }
                _ => {}
            }
            let Some(reg) = self.registry.get(conn.id()) else {
                if conn.is_closed() {
                    // Its registration went with the close (e.g. the write timeout of a peer
                    // that reads nothing): a request from before the close, not a violation.
                    debug!(peer = %conn.peer_addr(), message = msg.name(),
                        "request of a closed connection dropped");
                    return None;
                }
                warn!(peer = %conn.peer_addr(), message = msg.name(),
                    "request before registration; closing (clients must send RegisterTM/RegisterRM first)");
                conn.close();
                return None;
            };
            match dispatch::dispatch(&self.coord, &reg.client, &self.limits, msg).await {
                Outcome::Reply(m) => Some(m),
                Outcome::NoReply => None,
                Outcome::Close(why) => {
                    warn!(peer = %conn.peer_addr(), why, "closing connection");
                    conn.close();
                    None
                }
            }
        })
    }

    fn on_closed(self: Arc<Self>, conn: &RpcHandle) {
        self.admission.closed(conn.id());
        self.registry.remove(conn.id());
    }
}

/// The listeners of DTM's APIs; either may be off.
#[derive(Debug, Default)]
pub struct DtmListeners {
    /// DTM's HTTP API (`http-listen`).
    pub http: Option<TcpListener>,
    /// DTM's gRPC API (`grpc-listen`).
    pub grpc: Option<TcpListener>,
}

/// Starts the DTM engine, its jobs and the HTTP and gRPC listeners (both front-ends over the
/// one engine) on `tracker`, and the etcd registration of the gRPC listener when configured.
// One call site; the arguments are the process-wide handles the front-ends share.
#[allow(clippy::too_many_arguments)]
fn start_dtm(
    listeners: DtmListeners,
    config: &TcConfig,
    store: Arc<dyn SessionStore>,
    tracker: &TaskTracker,
    token: &CancellationToken,
    front_token: &CancellationToken,
    metrics: Arc<crate::metrics::Metrics>,
    admin: impl FnOnce(Option<Arc<DtmEngine>>) -> axum::Router,
) {
    let node = store.server_node().unwrap_or(config.server_node);
    let engine = match DtmEngine::new(
        store,
        config.dtm.defaults(),
        node,
        metrics.dtm.clone(),
        tracker.clone(),
        token.child_token(),
    ) {
        Ok(engine) => {
            crate::jobs::spawn_dtm(engine.clone(), &config.dtm, tracker, token.child_token());
            Some(engine)
        }
        Err(e) => {
            warn!(error = %e, "DTM API not served");
            None
        }
    };
    if let Some(http) = listeners.http {
        let dtm_api = engine
            .clone()
            .map(|e| crate::dtm::api::router(e, config.dtm.max_body_bytes));
        let parts = std::iter::once(crate::metrics::router(metrics))
            .chain(dtm_api)
            .chain(std::iter::once(admin(engine.clone())));
        tracker.spawn(crate::http::serve(
            http,
            crate::http::router(parts),
            front_token.child_token(),
        ));
    }
    let (Some(grpc), Some(engine)) = (listeners.grpc, engine) else {
        return;
    };
    if !config.etcd.is_empty() {
        match grpc.local_addr() {
            Ok(bound) => {
                let publication = etcd::Publication {
                    endpoints: config.etcd.clone(),
                    key: config.etcd_key.clone(),
                    value: SocketAddr::new(xid_ip(config, bound), bound.port()).to_string(),
                };
                // Its own token, cancelled with the listeners: the lease is revoked (and the
                // key gone) as the TC stops accepting.
                tracker.spawn(etcd::keep_registered(
                    publication,
                    front_token.child_token(),
                ));
            }
            Err(e) => warn!(error = %e, "gRPC listener has no address; not registered in etcd"),
        }
    }
    tracker.spawn(crate::dtm::grpc::serve(
        grpc,
        engine,
        config.dtm.max_body_bytes,
        front_token.child_token(),
    ));
}

/// The IP written into XIDs: configured `host`, else the listen IP, else (listening on every
/// interface) loopback, with a hint to set `host` for multi-host deployments.
pub fn xid_ip(config: &TcConfig, bound: SocketAddr) -> IpAddr {
    if let Some(ip) = config.host {
        return ip;
    }
    if !bound.ip().is_unspecified() {
        return bound.ip();
    }
    info!(
        "listening on all interfaces; XIDs name 127.0.0.1 (set --host to the address clients use)"
    );
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Runs the TC on `listener` (Seata's protocol) and, when given, `dtm`'s listeners (DTM's
/// HTTP and gRPC APIs) until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    dtm: DtmListeners,
    config: TcConfig,
    store: Arc<dyn SessionStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TcError> {
    let bound = listener.local_addr().map_err(TcError::io)?;
    crate::metrics::seata::set_enabled(config.metrics.enabled);
    let registry = Arc::new(Registry::new(Duration::from_millis(config.rpc_timeout_ms)));
    let coord = Coordinator::new(
        &config,
        xid_ip(&config, bound),
        bound.port(),
        store.clone(),
        registry.clone(),
    )
    .await?;

    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    crate::jobs::spawn_all(coord.clone(), &config, &tracker, token.child_token());
    let front_token = CancellationToken::new();
    if dtm.http.is_some() || dtm.grpc.is_some() {
        let open = crate::metrics::OpenState::new(coord.clone(), registry.clone());
        let metrics = Arc::new(crate::metrics::Metrics::new(Some(open)));
        let admin = {
            let (coord, registry) = (coord.clone(), registry.clone());
            let auth = crate::admin::Auth::from_config(&config.admin);
            move |dtm| {
                crate::admin::router(crate::admin::AdminState {
                    coord,
                    registry,
                    dtm,
                    auth,
                })
            }
        };
        start_dtm(
            dtm,
            &config,
            store,
            &tracker,
            &token,
            &front_token,
            metrics,
            admin,
        );
    }

    let rpc_config = RpcConfig {
        read_idle_timeout: Some(Duration::from_millis(config.read_idle_timeout_ms)),
        max_frame_len: config.max_frame_len,
        request_timeout: Duration::from_millis(config.rpc_timeout_ms),
        shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
        write_timeout: Duration::from_millis(config.limits.write_timeout_ms),
        max_inflight: config.limits.max_inflight_per_connection,
        frame_budget: Some(Arc::new(FrameBudget::new(
            config.limits.frame_memory_budget,
        ))),
        ..RpcConfig::server()
    };
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let conn_token = CancellationToken::new();
    let admission = Admission::new(config.limits.max_connections_per_ip);
    let register_timeout = Duration::from_millis(config.limits.register_timeout_ms);
    let handler = Arc::new(ConnectionHandler {
        coord: coord.clone(),
        registry,
        admission: admission.clone(),
        limits: config.limits.clone(),
    });

    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let Some(ip_slot) = admission.admit(peer.ip()) else {
                    // Debug only: a flood from one address must not flood the log too.
                    debug!(%peer, "connection refused: limits.max-connections-per-ip reached");
                    drop(stream);
                    continue;
                };
                // Full: make room by closing the oldest connection that has not registered
                // (see `admission`); with none, wait for a registered client to leave.
                let permit = match limit.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        if let Some(victim) = admission.evict_oldest_unregistered() {
                            info!(peer = %victim.peer_addr(), "closing an unregistered connection: max-connections reached");
                        }
                        tokio::select! {
                            _ = &mut shutdown => break,
                            p = limit.clone().acquire_owned() => match p {
                                Ok(p) => p,
                                Err(_) => break,
                            },
                        }
                    }
                };
                match rpc::spawn_tcp(
                    stream,
                    rpc_config.clone(),
                    handler.clone(),
                    conn_token.child_token(),
                ) {
                    Ok(conn) => {
                        admission.accepted(&conn);
                        let admission = admission.clone();
                        tracker.spawn(async move {
                            tokio::select! {
                                _ = conn.closed() => {}
                                _ = tokio::time::sleep(register_timeout) => {
                                    if admission.is_unregistered(conn.id()) {
                                        info!(peer = %conn.peer_addr(),
                                            "closing connection: not registered within limits.register-timeout-ms");
                                        conn.close();
                                    }
                                }
                            }
                            conn.closed().await;
                            admission.closed(conn.id());
                            drop(permit);
                            drop(ip_slot);
                            // Shutdown waits (on `tracker`) for the answers of the grace.
                            conn.finished().await;
                        });
                    }
                    Err(e) => warn!(%peer, error = %e, "could not set up connection"),
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                error!(error = %e, "accept failed; backing off {:?}", backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }

    info!("shutting down: no new connections; finishing in-flight requests");
    drop(listener);
    front_token.cancel();
    conn_token.cancel();
    token.cancel();
    tracker.close();
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            "shutdown grace of {:?} elapsed with tasks still running",
            grace
        );
    }
    coord.shutdown().await;
    info!("stopped");
    Ok(())
}
