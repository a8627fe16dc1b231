//! The branch services of the benchmark saga, in process: an axum server on 127.0.0.1:0 that
//! answers 200 to every call, checks what the coordinator sent (the payload, byte for byte, and
//! the four query parameters), and tells a waiting worker when the last action of its saga
//! arrived (used in poll mode, so that a worker does not hammer `query` while its saga runs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use serde::Deserialize;
use tokio::sync::oneshot;

/// The body every branch must receive: the step's payload, as the client gave it.
pub const PAYLOAD: &str = r#"{"amount":30}"#;

/// Counters of what the coordinator called. All of them are read after the run.
#[derive(Debug, Default)]
pub struct Calls {
    pub actions: AtomicU64,
    pub compensations: AtomicU64,
    /// A call whose body was not [`PAYLOAD`] or that lacked gid/branch_id/op.
    pub malformed: AtomicU64,
    /// Calls made with GET (DTM uses POST when the body is non-empty).
    pub gets: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Branches {
    pub calls: Calls,
    /// gid → the worker waiting for its saga's last action.
    waiters: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// branch_id of the last step ("02" for two steps).
    last_branch: String,
}

#[derive(Debug, Deserialize)]
struct BranchQuery {
    #[serde(default)]
    gid: String,
    #[serde(default)]
    branch_id: String,
    #[serde(default)]
    op: String,
}

impl Branches {
    /// Registers interest in `gid`'s last action; the receiver fires when it is called.
    pub fn wait_for(&self, gid: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(gid.to_string(), tx);
        }
        rx
    }

    pub fn forget(&self, gid: &str) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(gid);
        }
    }
}

async fn branch(
    State(st): State<Arc<Branches>>,
    Path(name): Path<String>,
    method: axum::http::Method,
    Query(q): Query<BranchQuery>,
    body: Bytes,
) -> StatusCode {
    if method == axum::http::Method::GET {
        st.calls.gets.fetch_add(1, Ordering::Relaxed);
    }
    st.record(&name, &body, &q.gid, &q.branch_id, &q.op);
    StatusCode::OK
}

impl Branches {
    /// Counts one call of the endpoint `name` (over HTTP or gRPC) and wakes the worker waiting
    /// for the last action of `gid`.
    pub fn record(&self, name: &str, body: &[u8], gid: &str, branch_id: &str, op: &str) {
        let c = &self.calls;
        if body != PAYLOAD.as_bytes() || gid.is_empty() || branch_id.is_empty() {
            c.malformed.fetch_add(1, Ordering::Relaxed);
        }
        if name.ends_with("Compensate") {
            c.compensations.fetch_add(1, Ordering::Relaxed);
        } else {
            c.actions.fetch_add(1, Ordering::Relaxed);
            if branch_id == self.last_branch && (op.is_empty() || op == "action") {
                let waiter = self.waiters.lock().ok().and_then(|mut w| w.remove(gid));
                if let Some(tx) = waiter {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// The state for `steps` steps, not serving yet.
    pub fn new(steps: usize) -> Arc<Branches> {
        Arc::new(Branches {
            last_branch: format!("{steps:02}"),
            ..Branches::default()
        })
    }
}

/// Starts the branch server; returns its state and the base URL of the branch endpoints
/// (`http://127.0.0.1:PORT/busi`).
pub async fn start(steps: usize) -> anyhow::Result<(Arc<Branches>, String)> {
    let st = Branches::new(steps);
    let app = Router::new()
        .route("/busi/{name}", any(branch))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((st, format!("http://{addr}/busi")))
}
