//! [`TcClient`]: a TM's or RM's connections to a list of TCs. One supervisor task per address
//! connects, registers (RegisterTM/RegisterRM with Seata 1.2's version string), and reconnects
//! with back-off when the connection dies. Requests are spread round-robin over the live
//! connections and move to another one when a connection turns out to be closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::RpcConfig;
use super::connection::{connect, RequestHandler};
use super::error::RpcError;
use super::handle::RpcHandle;
use crate::message::{
    Message, RegisterRmRequest, RegisterRmResponse, RegisterTmRequest, RegisterTmResponse,
    SEATA_VERSION,
};

/// Who the client registers as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A transaction manager.
    Tm {
        /// The application's id (Seata `applicationId`).
        application_id: String,
        /// Seata `transactionServiceGroup`.
        transaction_service_group: String,
    },
    /// A resource manager, with the resources it manages now (more can be added later).
    Rm {
        /// The application's id.
        application_id: String,
        /// Seata `transactionServiceGroup`.
        transaction_service_group: String,
        /// Resource ids (for AT, `jdbc:mysql://host:port/db`).
        resource_ids: Vec<String>,
    },
}

/// Settings of a [`TcClient`].
#[derive(Debug, Clone)]
pub struct TcClientConfig {
    /// TC addresses (`host:port`); every one is connected.
    pub addresses: Vec<String>,
    /// TM or RM registration.
    pub registration: Registration,
    /// Per-connection settings.
    pub rpc: RpcConfig,
    /// First reconnect delay; doubles up to `reconnect_max`. Default 200 ms.
    pub reconnect_min: Duration,
    /// Longest reconnect delay. Default 10 s (Seata re-checks every 10 s).
    pub reconnect_max: Duration,
}

impl TcClientConfig {
    /// Defaults for the given addresses and registration.
    pub fn new(addresses: Vec<String>, registration: Registration) -> Self {
        TcClientConfig {
            addresses,
            registration,
            rpc: RpcConfig::client(),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: TcClientConfig,
    slots: Vec<Mutex<Option<RpcHandle>>>,
    resources: Mutex<Vec<String>>,
    next: AtomicUsize,
    changed: Notify,
    token: CancellationToken,
}

/// Connections to the TCs of one client. Cloning shares them; the supervisors stop when the
/// last clone is dropped or [`TcClient::shutdown`] is called.
#[derive(Debug, Clone)]
pub struct TcClient {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

#[derive(Debug)]
struct DropGuard(CancellationToken);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl TcClient {
    /// Starts connecting to every address in the background and returns at once.
    pub fn start(config: TcClientConfig, handler: Arc<dyn RequestHandler>) -> Self {
        let token = CancellationToken::new();
        let resources = match &config.registration {
            Registration::Rm { resource_ids, .. } => resource_ids.clone(),
            Registration::Tm { .. } => Vec::new(),
        };
        let inner = Arc::new(Inner {
            slots: config.addresses.iter().map(|_| Mutex::new(None)).collect(),
            config,
            resources: Mutex::new(resources),
            next: AtomicUsize::new(0),
            changed: Notify::new(),
            token: token.clone(),
        });
        for index in 0..inner.slots.len() {
            tokio::spawn(supervise(inner.clone(), index, handler.clone()));
        }
        TcClient {
            inner,
            _guard: Arc::new(DropGuard(token)),
        }
    }

    /// Starts the client and waits until at least one TC accepted the registration.
    pub async fn connect(
        config: TcClientConfig,
        handler: Arc<dyn RequestHandler>,
        timeout: Duration,
    ) -> Result<Self, RpcError> {
        let addrs = config.addresses.join(",");
        if config.addresses.is_empty() {
            return Err(RpcError::Connect {
                addr: String::new(),
                reason: "no TC address configured".into(),
            });
        }
        let client = TcClient::start(config, handler);
        if client.wait_connected(timeout).await {
            Ok(client)
        } else {
            Err(RpcError::Connect {
                addr: addrs,
                reason: format!(
                    "no TC accepted a connection within {} ms; is seata-tc running there?",
                    timeout.as_millis()
                ),
            })
        }
    }

    /// Waits until some connection is live; false after `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            if self.live().next().is_some() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.live().next().is_some();
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = RpcHandle> + '_ {
        self.inner.slots.iter().filter_map(|slot| {
            slot.lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .filter(|h| !h.is_closed())
                .cloned()
        })
    }

    /// The live connections now.
    pub fn connections(&self) -> Vec<RpcHandle> {
        self.live().collect()
    }

    /// A live connection, round-robin; waits up to the request timeout for one to come back.
    pub async fn pick(&self) -> Result<RpcHandle, RpcError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.rpc.request_timeout;
        loop {
            let notified = self.inner.changed.notified();
            let live: Vec<RpcHandle> = self.live().collect();
            if !live.is_empty() {
                let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % live.len();
                if let Some(h) = live.into_iter().nth(i) {
                    return Ok(h);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(RpcError::NotSent {
                    peer: self.inner.config.addresses.join(","),
                });
            }
        }
    }

    /// Sends a request on a live connection and waits for the response. A connection found
    /// closed before the request was written is skipped for another one; an outcome-unknown
    /// error is returned as is (the request may have been carried out).
    pub async fn call(&self, msg: impl Into<Message>) -> Result<Message, RpcError> {
        let msg = msg.into();
        let mut last = None;
        for _ in 0..=self.inner.slots.len() {
            let conn = self.pick().await?;
            match conn.call(msg.clone()).await {
                Err(e) if e.is_not_sent() => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(RpcError::NotSent {
            peer: self.inner.config.addresses.join(","),
        }))
    }

    /// [`TcClient::call`] with the response converted to the expected type.
    pub async fn request<T>(&self, msg: impl Into<Message>) -> Result<T, RpcError>
    where
        T: TryFrom<Message, Error = Message>,
    {
        let msg = msg.into();
        let sent = msg.name();
        let reply = self.call(msg).await?;
        super::error::expect_reply(sent, reply)
    }

    /// RM: starts managing `resource_id`: registers it on every live connection now and on
    /// every future one.
    pub async fn register_resource(&self, resource_id: &str) -> Result<(), RpcError> {
        {
            let mut res = self
                .inner
                .resources
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if res.iter().any(|r| r == resource_id) {
                return Ok(());
            }
            res.push(resource_id.to_owned());
        }
        // A connection not yet in place gets it from its supervisor's catch-up (`supervise`).
        // One failing connection does not keep the others from learning the resource.
        let mut first_error = None;
        for conn in self.connections() {
            if let Err(e) = register(&self.inner, &conn, resource_id.to_owned()).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Resource ids registered so far.
    pub fn resources(&self) -> Vec<String> {
        resources_of(&self.inner)
    }

    /// Stops reconnecting and closes every connection.
    pub fn shutdown(&self) {
        self.inner.token.cancel();
        for conn in self.connections() {
            conn.close();
        }
    }
}

async fn supervise(inner: Arc<Inner>, index: usize, handler: Arc<dyn RequestHandler>) {
    let Some(addr) = inner.config.addresses.get(index).cloned() else {
        return;
    };
    let mut delay = inner.config.reconnect_min;
    loop {
        if inner.token.is_cancelled() {
            return;
        }
        let attempt = async {
            let conn = connect(&addr, inner.config.rpc.clone(), handler.clone()).await?;
            let sent = resources_of(&inner);
            if let Err(e) = register(&inner, &conn, sent.join(",")).await {
                conn.close();
                return Err(e);
            }
            Ok((conn, sent))
        };
        let outcome = tokio::select! {
            _ = inner.token.cancelled() => return,
            r = attempt => r,
        };
        match outcome {
            Ok((conn, sent)) => {
                info!(tc = %addr, "connected and registered");
                delay = inner.config.reconnect_min;
                set_slot(&inner, index, Some(conn.clone()));
                // A resource added while this connection registered went only to the
                // connections in place then (`register_resource`); it is in the list by now,
                // since the slot is set. Without this a TC could never learn of it, and its
                // phase two for that resource would wait for a reconnect.
                for missed in resources_of(&inner)
                    .into_iter()
                    .filter(|r| !sent.contains(r))
                {
                    if let Err(e) = register(&inner, &conn, missed).await {
                        warn!(tc = %addr, error = %e, "registering a resource added meanwhile failed");
                    }
                }
                tokio::select! {
                    // A deliberate shutdown also closes the connection: check it first so it
                    // is not reported as a lost connection.
                    biased;
                    _ = inner.token.cancelled() => { conn.close(); return; }
                    _ = conn.closed() => {}
                }
                if inner.token.is_cancelled() {
                    return;
                }
                set_slot(&inner, index, None);
                warn!(tc = %addr, "connection lost; reconnecting");
            }
            Err(e) => debug!(tc = %addr, error = %e, "connect failed; retrying in {:?}", delay),
        }
        tokio::select! {
            _ = inner.token.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(inner.config.reconnect_max);
    }
}

fn set_slot(inner: &Inner, index: usize, conn: Option<RpcHandle>) {
    if let Some(slot) = inner.slots.get(index) {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }
    inner.changed.notify_waiters();
}

/// The resources an RM manages now (none for a TM).
fn resources_of(inner: &Inner) -> Vec<String> {
    inner
        .resources
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Sends the registration for this client on `conn`; an RM registers `resource_ids` (Seata's
/// comma-separated list), a TM ignores it.
async fn register(inner: &Inner, conn: &RpcHandle, resource_ids: String) -> Result<(), RpcError> {
    let addr = conn.peer_addr().to_string();
    let identified = match &inner.config.registration {
        Registration::Tm {
            application_id,
            transaction_service_group,
        } => {
            let req = RegisterTmRequest {
                version: SEATA_VERSION.into(),
                application_id: application_id.clone(),
                transaction_service_group: transaction_service_group.clone(),
                extra_data: String::new(),
            };
            conn.request::<RegisterTmResponse>(req).await?.identified
        }
        Registration::Rm {
            application_id,
            transaction_service_group,
            ..
        } => {
            let req = RegisterRmRequest {
                version: SEATA_VERSION.into(),
                application_id: application_id.clone(),
                transaction_service_group: transaction_service_group.clone(),
                extra_data: String::new(),
                resource_ids,
            };
            conn.request::<RegisterRmResponse>(req).await?.identified
        }
    };
    if identified {
        Ok(())
    } else {
        Err(RpcError::Rejected {
            addr,
            reason: "the TC answered identified = false; check its log".into(),
        })
    }
}
