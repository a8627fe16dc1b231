//! [`DtmClient`]: the coordinator's HTTP API as seen by an initiator (spec §2, §3): `newGid`,
//! `query`, and the `prepare`/`submit`/`abort`/`registerBranch` calls the initiators in
//! [`crate::saga`], [`crate::msg`] and [`crate::tcc`] make through it. It also reads answers the
//! way §2.2 and §4.2 classify them, for the coordinator's own answers and for a TCC try's.
//!
//! Nothing here knows how a coordinator works inside; any server that follows the DTM contract
//! will do.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::DtmError;
use crate::options::TransOptions;

/// Timeout of one call to the coordinator when the caller brings no `reqwest::Client` of its
/// own. Generous, because a `wait_result` submit answers after a whole processing round, which
/// the coordinator bounds by its branch request timeout plus a little (§5.6).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout of the default client: a refused or unreachable server is a
/// [`DtmError::Transport`] (nothing sent), reported quickly.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an answer body goes into an error message.
const MESSAGE_CAP: usize = 512;

/// A handle on a DTM-compatible coordinator; cheap to clone (connection pools inside).
///
/// The URL picks the transport: `http://…/api/dtmsvr` (or `https://`) is DTM's HTTP API;
/// `grpc://host:port`, or a bare `host:port` as DTM's `dtmgrpc` takes it, is its gRPC service
/// `dtmgimp.Dtm` (feature `grpc`, see [`crate::grpc`]); `etcd://host:port/dtmservice` is that
/// service found through etcd, as go-zero finds it (the address registered under
/// `dtmservice/`, round robin if there are several). Every initiator works over both. Branch
/// calls this client makes itself (a TCC try, an XA phase one) go by the branch URL instead:
/// `http(s)://` over HTTP, `host:port/pkg.Service/Method` over gRPC.
#[derive(Debug, Clone)]
pub struct DtmClient {
    http: reqwest::Client,
    base: String,
    server: Server,
    /// Channels to the gRPC branches this client calls itself.
    #[cfg(feature = "grpc")]
    branches: crate::grpc::ChannelPool,
}

/// How the coordinator is reached.
#[derive(Debug, Clone)]
enum Server {
    Http,
    #[cfg(feature = "grpc")]
    Grpc(std::sync::Arc<crate::grpc::GrpcServer>),
}

impl DtmClient {
    /// A client for the coordinator at `base_url`: `http://127.0.0.1:36789/api/dtmsvr` (a
    /// trailing `/` is ignored) or `grpc://127.0.0.1:36790` / `127.0.0.1:36790`, with
    /// [`DEFAULT_CALL_TIMEOUT`] per call, or `etcd://127.0.0.1:2379/dtmservice` (the gRPC
    /// address is looked up in etcd at the first call).
    pub fn new(base_url: impl Into<String>) -> Result<DtmClient, DtmError> {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_CALL_TIMEOUT)
            .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
            .build()
            .map_err(|e| DtmError::invalid("HTTP client", e))?;
        DtmClient::with_http(base_url, http)
    }

    /// A client of DTM's gRPC API at `addr` (`host:port`, DTM's port is 36790).
    #[cfg(feature = "grpc")]
    pub fn grpc(addr: impl AsRef<str>) -> Result<DtmClient, DtmError> {
        DtmClient::new(format!("grpc://{}", addr.as_ref()))
    }

    /// A client that sends HTTP through the caller's `reqwest::Client` (its timeouts, proxies,
    /// TLS): every call for an `http(s)://` server, and HTTP branch calls for a gRPC one.
    pub fn with_http(
        base_url: impl Into<String>,
        http: reqwest::Client,
    ) -> Result<DtmClient, DtmError> {
        let base = base_url.into().trim_end_matches('/').to_owned();
        let server = if base.starts_with("http://") || base.starts_with("https://") {
            Url::parse(&base).map_err(|e| DtmError::invalid(format!("server URL {base:?}"), e))?;
            Server::Http
        } else {
            grpc_server(&base)?
        };
        Ok(DtmClient {
            http,
            base,
            server,
            #[cfg(feature = "grpc")]
            branches: crate::grpc::ChannelPool::default(),
        })
    }

    /// The URL as given, as branch calls pass it in their `dtm` parameter.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Whether this client talks to the coordinator over gRPC.
    pub fn is_grpc(&self) -> bool {
        !matches!(self.server, Server::Http)
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET newGid` (§3.1): a fresh global transaction id.
    pub async fn new_gid(&self) -> Result<String, DtmError> {
        #[cfg(feature = "grpc")]
        if let Server::Grpc(server) = &self.server {
            return server.new_gid().await;
        }
        #[derive(Deserialize)]
        struct Gid {
            #[serde(default, deserialize_with = "null_as_empty")]
            gid: String,
        }
        let url = self.endpoint("newGid")?;
        let body = self
            .send("newGid", "", &url, self.http.get(url.as_str()))
            .await?;
        let gid: Gid = read_json("newGid", &body)?;
        if gid.gid.is_empty() {
            return Err(DtmError::BadAnswer {
                what: "newGid".into(),
                reason: "no gid in the answer".into(),
            });
        }
        Ok(gid.gid)
    }

    /// `GET query?gid=` (§3.6): the stored transaction and its branch rows, or `None` when the
    /// server has no transaction with this gid.
    pub async fn query(&self, gid: &str) -> Result<Option<TransQuery>, DtmError> {
        #[derive(Deserialize)]
        struct Answer {
            transaction: Option<TransGlobal>,
            #[serde(default)]
            branches: Option<Vec<TransBranch>>,
        }
        if self.is_grpc() {
            return Err(DtmError::invalid(
                "query",
                "DTM's gRPC API has no query; ask the server's HTTP API \
                 (DtmClient::new(\"http://host:36789/api/dtmsvr\"))",
            ));
        }
        let mut url = self.endpoint("query")?;
        url.query_pairs_mut().append_pair("gid", gid);
        let body = self
            .send("query", gid, &url, self.http.get(url.as_str()))
            .await?;
        let answer: Answer = read_json("query", &body)?;
        Ok(answer.transaction.map(|transaction| TransQuery {
            transaction,
            branches: answer.branches.unwrap_or_default(),
        }))
    }

    /// The global status of `gid`, or `None` if the server does not know it.
    pub async fn status(&self, gid: &str) -> Result<Option<GlobalStatus>, DtmError> {
        Ok(self.query(gid).await?.map(|q| q.transaction.status))
    }

    /// `prepare`, `submit` or `abort` (§3.2–§3.4) with `body`, over the client's transport.
    pub(crate) async fn trans(&self, name: &str, body: &TransBody<'_>) -> Result<(), DtmError> {
        match &self.server {
            Server::Http => self.post_json(name, body.gid, body).await.map(drop),
            #[cfg(feature = "grpc")]
            Server::Grpc(server) => server.trans(name, body).await,
        }
    }

    /// `registerBranch` (§3.5) over the client's transport.
    pub(crate) async fn register_branch(&self, r: &Registration<'_>) -> Result<(), DtmError> {
        match &self.server {
            Server::Http => {
                let mut body = serde_json::Map::new();
                let mut put = |k: &str, v: &str| {
                    body.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
                };
                put("gid", r.gid);
                put("trans_type", r.trans_type);
                put("branch_id", r.branch_id);
                for (k, v) in r.urls {
                    put(k, v);
                }
                if let Some(payload) = r.payload {
                    let text = std::str::from_utf8(payload).map_err(|_| {
                        DtmError::invalid(
                            format!("body of branch {}", r.branch_id),
                            "it is not UTF-8 text, which the HTTP API needs; send binary \
                             bodies through a gRPC server (grpc://host:port)",
                        )
                    })?;
                    put("data", text);
                }
                self.post_json("registerBranch", r.gid, &body)
                    .await
                    .map(drop)
            }
            #[cfg(feature = "grpc")]
            Server::Grpc(server) => server.register(r).await,
        }
    }

    /// The `dtm` parameter (HTTP) or `dtm-dtm` metadata (gRPC) of a branch call: the base URL
    /// of an HTTP server, the `host:port` of a gRPC one (what DTM's gRPC branches dial), the
    /// `etcd://` URL of one found through etcd (as go-zero's branches get it).
    pub(crate) fn dtm_param(&self) -> &str {
        match &self.server {
            Server::Http => &self.base,
            #[cfg(feature = "grpc")]
            Server::Grpc(server) => server.authority(),
        }
    }

    /// The gRPC branch channels.
    #[cfg(feature = "grpc")]
    pub(crate) fn branch_channels(&self) -> &crate::grpc::ChannelPool {
        &self.branches
    }

    /// POSTs `body` as JSON to the endpoint `name` (`prepare`, `submit`, `abort`,
    /// `registerBranch`) and checks the answer (§2.2).
    pub(crate) async fn post_json(
        &self,
        name: &str,
        gid: &str,
        body: &impl Serialize,
    ) -> Result<Bytes, DtmError> {
        let json = serde_json::to_vec(body).map_err(|e| DtmError::invalid(name, e))?;
        let url = self.endpoint(name)?;
        let req = self
            .http
            .post(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json);
        self.send(name, gid, &url, req).await
    }

    /// `base/name` as a URL (the base was checked in the constructor).
    fn endpoint(&self, name: &str) -> Result<Url, DtmError> {
        let raw = format!("{}/{name}", self.base);
        Url::parse(&raw).map_err(|e| DtmError::invalid(format!("URL {raw:?}"), e))
    }

    /// Sends `req` and classifies the answer (§2.2/§4.2).
    pub(crate) async fn send(
        &self,
        what: &str,
        gid: &str,
        url: &Url,
        req: RequestBuilder,
    ) -> Result<Bytes, DtmError> {
        let response = req
            .send()
            .await
            .map_err(|e| request_error(what, gid, url, e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| request_error(what, gid, url, e))?;
        match classify(status, &body) {
            Answer::Success => Ok(body),
            Answer::Failure => Err(DtmError::Failure {
                what: what.into(),
                gid: gid.into(),
                message: message_of(&body),
            }),
            Answer::Ongoing => Err(DtmError::Ongoing {
                what: what.into(),
                gid: gid.into(),
                message: message_of(&body),
            }),
            Answer::Other => Err(DtmError::Status {
                what: what.into(),
                gid: gid.into(),
                status,
                message: message_of(&body),
            }),
        }
    }
}

/// A gRPC server from `grpc://host:port`, a bare `host:port` or `etcd://host:port/key`.
#[cfg(feature = "grpc")]
fn grpc_server(base: &str) -> Result<Server, DtmError> {
    let authority = match base.split_once("://") {
        Some(("grpc", rest)) => rest,
        Some(("etcd", rest)) => {
            let server = crate::grpc::GrpcServer::etcd(rest, DEFAULT_CALL_TIMEOUT)?;
            return Ok(Server::Grpc(std::sync::Arc::new(server)));
        }
        None => base,
        Some(_) => return Err(unknown_scheme(base)),
    };
    let server = crate::grpc::GrpcServer::new(authority, DEFAULT_CALL_TIMEOUT)?;
    Ok(Server::Grpc(std::sync::Arc::new(server)))
}

#[cfg(not(feature = "grpc"))]
fn grpc_server(base: &str) -> Result<Server, DtmError> {
    if base.starts_with("grpc://") || base.starts_with("etcd://") || !base.contains("://") {
        return Err(DtmError::invalid(
            format!("server URL {base:?}"),
            "a gRPC server needs seata-dtm's `grpc` feature",
        ));
    }
    Err(unknown_scheme(base))
}

fn unknown_scheme(base: &str) -> DtmError {
    DtmError::invalid(
        format!("server URL {base:?}"),
        "expected http(s)://host:port/api/dtmsvr, grpc://host:port, host:port or \
         etcd://host:port/dtmservice",
    )
}

/// A connect error (or a request that could not even be built) was not sent; anything after
/// that is an unknown outcome.
fn request_error(what: &str, gid: &str, url: &Url, e: reqwest::Error) -> DtmError {
    if e.is_connect() || e.is_builder() {
        DtmError::Transport {
            what: what.into(),
            url: url.to_string(),
            source: e,
        }
    } else {
        DtmError::OutcomeUnknown {
            what: what.into(),
            gid: gid.into(),
            source: e,
        }
    }
}

/// The four classes of §4.2 (the same rules read the coordinator's own answers, §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Success,
    Failure,
    Ongoing,
    Other,
}

/// §4.2 in order: 425 or `dtm_result: ONGOING` → ongoing; 409 or `dtm_result: FAILURE` →
/// failure; any other status but 200 → error; 200 → success. Unlike DTM's substring test, only
/// a top-level JSON field `dtm_result` counts (§4.2 "Our server"), so a body that merely
/// mentions the word does not turn a success into a rollback.
pub(crate) fn classify(status: StatusCode, body: &[u8]) -> Answer {
    let dtm_result = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("dtm_result")
                .and_then(|r| r.as_str())
                .map(str::to_owned)
        });
    if status == StatusCode::TOO_EARLY || dtm_result.as_deref() == Some("ONGOING") {
        Answer::Ongoing
    } else if status == StatusCode::CONFLICT || dtm_result.as_deref() == Some("FAILURE") {
        Answer::Failure
    } else if status != StatusCode::OK {
        Answer::Other
    } else {
        Answer::Success
    }
}

/// The `message` of a JSON answer, else the body as text, capped for error messages.
pub(crate) fn message_of(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned));
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    if text.chars().count() > MESSAGE_CAP {
        let cut: String = text.chars().take(MESSAGE_CAP).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(what: &str, body: &[u8]) -> Result<T, DtmError> {
    serde_json::from_slice(body).map_err(|e| DtmError::BadAnswer {
        what: what.into(),
        reason: e.to_string(),
    })
}

/// JSON `null` for a string means "" (§2.1).
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// The body of prepare / submit / abort (§2.3)

/// One saga or msg step (§2.3 `steps`): `compensate` only for sagas.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    pub(crate) action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) compensate: Option<String>,
}

/// The transaction body shared by prepare, submit and abort (§2.3).
#[derive(Debug, Serialize)]
pub(crate) struct TransBody<'a> {
    pub(crate) gid: &'a str,
    pub(crate) trans_type: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(crate) steps: &'a [Step],
    /// Raw bytes; the HTTP API carries each as a JSON string, so there they must be UTF-8.
    #[serde(
        skip_serializing_if = "<[_]>::is_empty",
        serialize_with = "payloads_as_text"
    )]
    pub(crate) payloads: &'a [Vec<u8>],
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) custom_data: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) query_prepared: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) rollback_reason: &'a str,
    /// `""` is HTTP, as the Go client sends it.
    pub(crate) protocol: &'static str,
    /// Top-level flag: msg only (saga reads `custom_data`, §2.3).
    pub(crate) concurrent: bool,
    #[serde(flatten)]
    pub(crate) options: &'a TransOptions,
}

fn payloads_as_text<S: serde::Serializer>(p: &&[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error, SerializeSeq};
    let mut seq = s.serialize_seq(Some(p.len()))?;
    for (i, bytes) in p.iter().enumerate() {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            S::Error::custom(format!(
                "the payload of step {i} is not UTF-8 text, which the HTTP API needs (payloads \
                 travel as JSON strings); send binary payloads through a gRPC server"
            ))
        })?;
        seq.serialize_element(text)?;
    }
    seq.end()
}

/// A `registerBranch` (§3.5): `urls` are `confirm`/`cancel` (tcc) or `url` (xa), `payload` the
/// body of the server's calls of them (tcc).
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    pub(crate) gid: &'a str,
    pub(crate) trans_type: &'static str,
    pub(crate) branch_id: &'a str,
    /// The first phase's op (gRPC `Op`).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) op: &'static str,
    pub(crate) urls: &'a [(&'static str, &'a str)],
    pub(crate) payload: Option<&'a [u8]>,
}

impl<'a> TransBody<'a> {
    /// A body with only gid, type and options (TCC, and msg/saga before their extras).
    pub(crate) fn new(
        gid: &'a str,
        trans_type: &'static str,
        options: &'a TransOptions,
    ) -> TransBody<'a> {
        TransBody {
            gid,
            trans_type,
            steps: &[],
            payloads: &[],
            custom_data: "",
            query_prepared: "",
            rollback_reason: "",
            protocol: "",
            concurrent: false,
            options,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// query (§3.6)

/// Answer of [`DtmClient::query`] for a known gid.
#[derive(Debug, Clone)]
pub struct TransQuery {
    /// The global row.
    pub transaction: TransGlobal,
    /// One row per branch op, in creation order.
    pub branches: Vec<TransBranch>,
}

impl TransQuery {
    /// The branch row (`branch_id`, `op`), if any.
    pub fn branch(&self, branch_id: &str, op: &str) -> Option<&TransBranch> {
        self.branches
            .iter()
            .find(|b| b.branch_id == branch_id && b.op == op)
    }
}

/// The fields of the stored global row (§3.6) an application reads; times stay RFC 3339 text.
#[derive(Debug, Clone, Deserialize)]
pub struct TransGlobal {
    /// The gid.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub gid: String,
    /// `saga`, `msg`, `tcc`, `xa`, `workflow`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub trans_type: String,
    /// The global status.
    pub status: GlobalStatus,
    /// Why it rolled back, if it did.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub rollback_reason: String,
    /// `result` (workflow).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub result: String,
    /// `custom_data` as sent.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub custom_data: String,
    /// `query_prepared` URL (msg).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub query_prepared: String,
    /// Creation time.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub create_time: String,
    /// Last update.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub update_time: String,
    /// When it reached `succeed`/`failed`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub finish_time: String,
}

/// One branch row (§3.6).
#[derive(Debug, Clone, Deserialize)]
pub struct TransBranch {
    /// `01`, `02`, …
    #[serde(default, deserialize_with = "null_as_empty")]
    pub branch_id: String,
    /// `action`, `compensate`, `confirm`, `cancel`, `commit`, `rollback`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub op: String,
    /// The branch status.
    pub status: BranchStatus,
    /// The URL the server calls.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub url: String,
    /// The body, base64 (as Go encodes bytes).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub bin_data: String,
}

/// Global status (§6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlobalStatus {
    /// Created, not submitted (msg, tcc, xa).
    Prepared,
    /// Submitted: the forward work runs.
    Submitted,
    /// Rolling back.
    Aborting,
    /// Committed (final).
    Succeed,
    /// Rolled back (final).
    Failed,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

impl GlobalStatus {
    /// `succeed` or `failed`.
    pub fn is_final(self) -> bool {
        matches!(self, GlobalStatus::Succeed | GlobalStatus::Failed)
    }
}

/// Branch status (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BranchStatus {
    /// Not done yet.
    Prepared,
    /// Done.
    Succeed,
    /// A saga action that answered FAILURE.
    Failed,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_status_then_dtm_result() {
        assert_eq!(classify(StatusCode::OK, b"{}"), Answer::Success);
        assert_eq!(classify(StatusCode::OK, b""), Answer::Success);
        assert_eq!(classify(StatusCode::CONFLICT, b""), Answer::Failure);
        assert_eq!(classify(StatusCode::TOO_EARLY, b""), Answer::Ongoing);
        assert_eq!(
            classify(StatusCode::OK, br#"{"dtm_result":"FAILURE"}"#),
            Answer::Failure
        );
        assert_eq!(
            classify(StatusCode::OK, br#"{"dtm_result":"ONGOING"}"#),
            Answer::Ongoing
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, b"x"),
            Answer::Other
        );
        assert_eq!(classify(StatusCode::NO_CONTENT, b""), Answer::Other);
    }

    #[test]
    fn a_mention_of_failure_is_not_a_failure() {
        assert_eq!(
            classify(StatusCode::OK, br#"{"msg":"no FAILURE here"}"#),
            Answer::Success
        );
    }

    #[test]
    fn message_prefers_the_json_field_and_is_capped() {
        assert_eq!(message_of(br#"{"message":"m","x":1}"#), "m");
        assert_eq!(message_of(b"plain"), "plain");
        let long = "é".repeat(MESSAGE_CAP + 10);
        assert_eq!(message_of(long.as_bytes()).chars().count(), MESSAGE_CAP + 1);
    }

    #[test]
    fn body_has_dtm_field_names_and_skips_empty_ones() {
        let options = TransOptions::default();
        let steps = [Step {
            action: "http://a/x".into(),
            compensate: Some(String::new()),
        }];
        let payloads = [br#"{"n":1}"#.to_vec()];
        let body = TransBody {
            steps: &steps,
            payloads: &payloads,
            ..TransBody::new("g1", "saga", &options)
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "gid": "g1", "trans_type": "saga", "protocol": "", "concurrent": false,
                "steps": [{"action": "http://a/x", "compensate": ""}],
                "payloads": ["{\"n\":1}"],
            })
        );
    }

    #[test]
    fn query_answer_reads_nulls_and_unknown_statuses() {
        let t: TransGlobal = serde_json::from_str(
            r#"{"gid":"g","trans_type":"saga","status":"weird","rollback_reason":null,"id":3}"#,
        )
        .unwrap();
        assert_eq!(t.status, GlobalStatus::Unknown);
        assert_eq!(t.rollback_reason, "");
    }
}
