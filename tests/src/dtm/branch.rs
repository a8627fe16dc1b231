//! The branch service: an axum server on `127.0.0.1:0` in the test process that records every
//! request the TC makes and answers per path as the test scripted (§4: what the TC sends,
//! and how it must read the answers).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::watch;

use super::{POLL, WAIT};

/// One request the TC made to the branch service.
#[derive(Debug, Clone)]
pub struct Call {
    /// When it arrived, on the server-wide clock shared with `answered`.
    pub seq: u64,
    /// When its answer was decided (before it was sent), on the same clock; `None` while held.
    pub answered: Option<u64>,
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, e.g. `/saga/a1`.
    pub path: String,
    /// Query parameters in order.
    pub query: Vec<(String, String)>,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

impl Call {
    /// The query parameter `name`, if given (the first one).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The header `name` (any case), if given.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `gid` parameter.
    pub fn gid(&self) -> Option<&str> {
        self.param("gid")
    }

    /// `op` parameter.
    pub fn op(&self) -> Option<&str> {
        self.param("op")
    }

    /// `branch_id` parameter.
    pub fn branch_id(&self) -> Option<&str> {
        self.param("branch_id")
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether it was answered before `other` arrived: the TC had (at most) just been told.
    pub fn answered_before(&self, other: &Call) -> bool {
        self.answered.is_some_and(|a| a < other.seq)
    }
}

/// How the branch service answers one call.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body, sent as `application/json` (it need not be JSON).
    pub body: String,
    /// Wait for [`BranchServer::release`] before answering.
    pub held: bool,
}

impl Reply {
    /// 200 `{"dtm_result":"SUCCESS"}`, what every SDK's handler answers.
    pub fn ok() -> Reply {
        Reply::json(200, r#"{"dtm_result":"SUCCESS"}"#)
    }

    /// `status` with a body that is neither FAILURE nor ONGOING (a temporary error if not 200).
    pub fn status(status: u16) -> Reply {
        Reply::json(status, &format!(r#"{{"error":"scripted {status}"}}"#))
    }

    /// 409 `{"dtm_result":"FAILURE",...}`: roll back (saga action, tcc try).
    pub fn failure() -> Reply {
        Reply::json(
            409,
            r#"{"dtm_result":"FAILURE","message":"scripted refusal"}"#,
        )
    }

    /// 425 `{"dtm_result":"ONGOING"}`: not decided yet.
    pub fn ongoing() -> Reply {
        Reply::json(425, r#"{"dtm_result":"ONGOING"}"#)
    }

    /// Any status and body.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_owned(),
            held: false,
        }
    }

    /// The same answer, given only after [`BranchServer::release`].
    pub fn held(mut self) -> Reply {
        self.held = true;
        self
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
type Handler = Arc<dyn Fn(Call) -> HandlerFuture + Send + Sync>;

/// What one path answers: scripted replies first, then the handler, else the standing reply.
#[derive(Default)]
struct Script {
    queue: VecDeque<Reply>,
    standing: Option<Reply>,
    handler: Option<Handler>,
}

struct Shared {
    clock: AtomicU64,
    calls: Mutex<Vec<Call>>,
    scripts: Mutex<HashMap<String, Script>>,
    gate: watch::Sender<bool>,
}

/// An HTTP branch service on `127.0.0.1:0` inside the test process. Every path answers
/// [`Reply::ok`] unless scripted. Stopped on drop.
pub struct BranchServer {
    base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for BranchServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchServer")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl BranchServer {
    /// Binds and starts serving on the current runtime.
    pub async fn start() -> BranchServer {
        let shared = Arc::new(Shared {
            clock: AtomicU64::new(1),
            calls: Mutex::new(Vec::new()),
            scripts: Mutex::new(HashMap::new()),
            gate: watch::channel(false).0,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the branch service");
        let addr = listener.local_addr().expect("branch service address");
        let app = Router::new()
            .fallback(record_and_answer)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        BranchServer {
            base: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// From now on `path` answers `reply` (replacing what was scripted for it).
    pub fn reply(&self, path: &str, reply: Reply) {
        self.script(path, |s| {
            s.queue.clear();
            s.handler = None;
            s.standing = Some(reply);
        });
    }

    /// The next calls to `path` answer `replies` in turn, then as before.
    pub fn replies(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.script(path, |s| s.queue.extend(replies));
    }

    /// Calls to `path` (after its queued replies) are answered by `handler`.
    pub fn handle<F, Fut>(&self, path: &str, handler: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |call| Box::pin(handler(call)));
        self.script(path, |s| s.handler = Some(handler));
    }

    /// Lets every held reply (present and future) go.
    pub fn release(&self) {
        self.shared.gate.send_replace(true);
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// The calls to `path` so far, in arrival order.
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }

    /// `path`s of every call so far, in arrival order (for failure messages and order checks).
    pub fn paths(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.path).collect()
    }

    /// Waits until `path` has been called at least `n` times; returns those calls.
    pub async fn wait_calls(&self, path: &str, n: usize) -> Vec<Call> {
        self.wait_for(&format!("{n} call(s) to {path}"), |calls| {
            calls.iter().filter(|c| c.path == path).count() >= n
        })
        .await;
        self.calls_to(path)
    }

    /// Polls the calls until `done` holds; panics after [`WAIT`] naming `what`.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Call]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let calls = self.calls();
            if done(&calls) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "waited {WAIT:?} for {what}; calls: {:?}",
                    calls.iter().map(|c| &c.path).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn script(&self, path: &str, change: impl FnOnce(&mut Script)) {
        let mut scripts = self.shared.scripts.lock().expect("scripts lock");
        change(scripts.entry(path.to_owned()).or_default());
    }
}

impl Drop for BranchServer {
    fn drop(&mut self) {
        self.release();
        self.task.abort();
    }
}

async fn record_and_answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let call = Call {
        seq: shared.clock.fetch_add(1, Ordering::SeqCst),
        answered: None,
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let index = {
        let mut calls = shared.calls.lock().expect("calls lock");
        calls.push(call.clone());
        calls.len() - 1
    };
    let (reply, handler) = {
        let mut scripts = shared.scripts.lock().expect("scripts lock");
        match scripts.get_mut(&call.path) {
            Some(s) => match s.queue.pop_front() {
                Some(r) => (Some(r), None),
                None => (s.standing.clone(), s.handler.clone()),
            },
            None => (None, None),
        }
    };
    let reply = match (reply, handler) {
        (Some(r), _) => r,
        (None, Some(h)) => h(call).await,
        (None, None) => Reply::ok(),
    };
    if reply.held {
        let mut gate = shared.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
    }
    if let Ok(mut calls) = shared.calls.lock() {
        if let Some(c) = calls.get_mut(index) {
            c.answered = Some(shared.clock.fetch_add(1, Ordering::SeqCst));
        }
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        reply.body,
    )
        .into_response()
}

/// What an initiator does itself for TCC try and the XA local part (§6.5, §6.6): `POST url`
/// with `params` and `body`; returns the status.
pub async fn call_branch(url: &str, params: &[(&str, &str)], body: &str) -> u16 {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("HTTP client")
        .post(url)
        .query(params)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .status()
        .as_u16()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn branch_server_records_calls_and_answers_as_scripted() {
        let svc = BranchServer::start().await;
        svc.replies("/a", [Reply::status(500), Reply::failure()]);
        svc.reply("/b", Reply::ongoing());
        let url = svc.url("/a");
        let params = [("gid", "g1"), ("op", "action")];
        let statuses = [
            call_branch(&url, &params, "x").await,
            call_branch(&url, &params, "y").await,
            call_branch(&url, &params, "z").await,
            call_branch(&svc.url("/b"), &[], "").await,
        ];
        assert_eq!(statuses, [500, 409, 200, 425]);
        let calls = svc.calls();
        assert_eq!(svc.paths(), ["/a", "/a", "/a", "/b"]);
        assert_eq!(calls[1].gid(), Some("g1"));
        assert_eq!(calls[1].op(), Some("action"));
        assert_eq!(calls[1].method, "POST");
        assert_eq!(calls[1].body_text(), "y");
        assert_eq!(calls[1].header("Content-Type"), Some("application/json"));
        assert!(calls[0].answered_before(&calls[1]));
    }

    #[tokio::test]
    async fn held_replies_wait_for_release() {
        let svc = BranchServer::start().await;
        svc.reply("/slow", Reply::ok().held());
        let url = svc.url("/slow");
        let pending = tokio::spawn(async move { call_branch(&url, &[], "").await });
        svc.wait_calls("/slow", 1).await;
        assert_eq!(svc.calls()[0].answered, None);
        svc.release();
        assert_eq!(pending.await.expect("call task"), 200);
        assert!(svc.calls()[0].answered.is_some());
    }
}
