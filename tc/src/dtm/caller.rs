//! The edge that calls branch services (spec §4): [`BranchCaller`] reads a branch URL as a
//! [`Target`] and makes the call over HTTP (this file) or gRPC (`grpc/branch.rs`), with the
//! transaction's `request_timeout`, and classifies the answer into one [`Outcome`] (§4.2).
//!
//! - `http://` / `https://` URLs: one pooled HTTP client for the process; the method rule,
//!   the four query parameters (and the legacy `branch_type`), the transaction's
//!   `branch_headers`.
//! - `host:port/pkg.Service/Method` (no scheme, what DTM sends when `protocol` is `grpc`) and
//!   `etcd://host:port/service/pkg.Service/Method` (go-zero style, the address looked up in
//!   etcd): a unary gRPC call with the raw body, the four values as `dtm-*` metadata.
//!
//! On purpose unlike DTM: FAILURE/ONGOING in an HTTP body count only as the top-level JSON
//! field `dtm_result` (what every SDK sends), never as a substring anywhere in the body, so a
//! 200 that merely mentions the word cannot roll a saga back.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Client, Method, StatusCode, Url};

use super::grpc::branch::GrpcCaller;
use super::machine::Outcome;
use super::model::{Branch, Op, Trans, TransType};

/// Most of an answer's body kept for the reason and logs.
const MAX_ANSWER_TEXT: usize = 1024;

/// Calls branches over HTTP or gRPC, as each URL says. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct BranchCaller {
    http: Client,
    grpc: GrpcCaller,
    default_timeout: Duration,
}

/// Where a branch URL points, and so which edge calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `http://…` or `https://…`: an HTTP call (§4.1).
    Http(Url),
    /// `host:port/pkg.Service/Method`: a unary gRPC call to `authority`.
    Grpc {
        /// `host:port`.
        authority: &'a str,
        /// `/pkg.Service/Method`.
        method: &'a str,
    },
    /// `etcd://host:port/service/pkg.Service/Method`: a unary gRPC call to an address that
    /// the etcd at `etcd` lists under the prefix `service/` (go-zero's publisher layout).
    Etcd {
        /// `host:port` of the etcd server.
        etcd: &'a str,
        /// The key prefix the service registers under (without the trailing `/`).
        service: &'a str,
        /// `/pkg.Service/Method`.
        method: &'a str,
    },
}

impl<'a> Target<'a> {
    /// Reads a branch URL; the error says what a callable URL looks like.
    pub fn parse(url: &'a str) -> Result<Self, String> {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return match Url::parse(url) {
                Ok(u) if u.host().is_some() => Ok(Target::Http(u)),
                Ok(_) => Err(format!("url {url:?} has no host")),
                Err(e) => Err(format!("url {url:?} is not a valid URL: {e}")),
            };
        }
        let grpc_shape = "host:port/pkg.Service/Method";
        if let Some(rest) = url.strip_prefix("etcd://") {
            let shape = "etcd://host:port/service/pkg.Service/Method";
            let (etcd, path) = split_authority(rest)
                .ok_or_else(|| format!("url {url:?} is not of the form {shape}"))?;
            // The last two segments are the gRPC method; what is before them is the service key.
            let method_at = path
                .match_indices('/')
                .map(|(i, _)| i)
                .rev()
                .nth(1)
                .filter(|&i| i > 0)
                .ok_or_else(|| format!("url {url:?} is not of the form {shape}"))?;
            let service = path.get(1..method_at).unwrap_or_default();
            let method = path.get(method_at..).unwrap_or_default();
            if service.is_empty() || !is_method(method) {
                return Err(format!("url {url:?} is not of the form {shape}"));
            }
            return Ok(Target::Etcd {
                etcd,
                service,
                method,
            });
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(format!(
                "url {url:?} has scheme {scheme:?}; branch URLs are http(s)://…, {grpc_shape} \
                 (gRPC) or etcd://host:port/service/pkg.Service/Method"
            ));
        }
        match split_authority(url) {
            Some((authority, method)) if is_method(method) => {
                Ok(Target::Grpc { authority, method })
            }
            _ => Err(format!(
                "url {url:?} is neither http(s)://… nor a gRPC method {grpc_shape}"
            )),
        }
    }
}

/// `host:port` and the rest (starting with `/`) of `host:port/…`; `None` without a port.
fn split_authority(s: &str) -> Option<(&str, &str)> {
    let slash = s.find('/')?;
    let (authority, path) = s.split_at(slash);
    let (host, port) = authority.rsplit_once(':')?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c));
    (host_ok && port.parse::<u16>().is_ok()).then_some((authority, path))
}

/// `/pkg.Service/Method`: two non-empty segments of URL-safe characters.
fn is_method(path: &str) -> bool {
    let ok = |seg: &str| {
        !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    match path.strip_prefix('/').and_then(|p| p.split_once('/')) {
        Some((service, method)) => ok(service) && ok(method),
        None => false,
    }
}

/// One call to make.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The transaction (gid, type, headers, timeout).
    pub trans: &'a Trans,
    /// `branch_id` parameter.
    pub branch_id: &'a str,
    /// `op` parameter.
    pub op: Op,
    /// Where.
    pub url: &'a str,
    /// Body, byte for byte.
    pub body: &'a [u8],
}

impl<'a> Call<'a> {
    /// The call of a stored branch op.
    pub fn branch(trans: &'a Trans, branch: &'a Branch) -> Self {
        Call {
            trans,
            branch_id: &branch.branch_id,
            op: branch.op,
            url: &branch.url,
            body: &branch.bin_data,
        }
    }

    /// A msg's queryPrepared: GET, `branch_id=00`, `op=msg`, no body (§4.1).
    pub fn query_prepared(trans: &'a Trans) -> Self {
        Call {
            trans,
            branch_id: "00",
            op: Op::Msg,
            url: &trans.query_prepared,
            body: &[],
        }
    }

    /// POST when there is a body or for XA (its phase two is a POST with no body); else GET.
    fn method(&self) -> Method {
        if !self.body.is_empty() || self.trans.trans_type == TransType::Xa {
            Method::POST
        } else {
            Method::GET
        }
    }
}

/// Whether `url` is a URL the server can call (a [`Target`]).
pub fn check_url(url: &str) -> Result<(), String> {
    Target::parse(url).map(|_| ())
}

impl BranchCaller {
    /// A caller whose calls time out after `default_timeout` unless the transaction says
    /// otherwise.
    pub fn new(default_timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            // Branch services are called directly; the proxy matcher costs every call.
            .no_proxy()
            .build()?;
        Ok(BranchCaller {
            http,
            grpc: GrpcCaller::default(),
            default_timeout,
        })
    }

    /// Makes the call and classifies the answer. An empty URL is a success without a call
    /// (a saga step may have no compensation).
    pub async fn call(&self, call: Call<'_>) -> Outcome {
        if call.url.is_empty() {
            return Outcome::Success;
        }
        let timeout = match call.trans.options.request_timeout {
            s if s > 0 => Duration::from_secs(s.unsigned_abs()),
            _ => self.default_timeout,
        };
        match Target::parse(call.url) {
            Err(e) => Outcome::Error(e),
            Ok(Target::Http(url)) => self.call_http(call, url, timeout).await,
            Ok(Target::Grpc { authority, method }) => {
                self.grpc.call(call, authority, method, timeout).await
            }
            Ok(Target::Etcd {
                etcd,
                service,
                method,
            }) => {
                self.grpc
                    .call_via_etcd(call, etcd, service, method, timeout)
                    .await
            }
        }
    }

    /// The HTTP edge (§4.1).
    async fn call_http(&self, call: Call<'_>, mut url: Url, timeout: Duration) -> Outcome {
        let trans = call.trans;
        url.query_pairs_mut()
            .append_pair("gid", &trans.gid)
            .append_pair("trans_type", trans.trans_type.as_str())
            .append_pair("branch_id", call.branch_id)
            .append_pair("op", call.op.as_str())
            // DTM before v1.5 named `op` `branch_type`; old samples still read it.
            .append_pair("branch_type", call.op.as_str());
        let mut req = self
            .http
            .request(call.method(), url)
            .timeout(timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &trans.options.branch_headers {
            // Validated when the transaction was accepted; a header that no longer parses
            // is skipped rather than failing every call.
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                req = req.header(k, v);
            }
        }
        if !call.body.is_empty() {
            req = req.body(call.body.to_vec());
        }
        match req.send().await {
            Err(e) => Outcome::Error(describe(&e, call.url)),
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(body) => classify(status, &body),
                    Err(e) => Outcome::Error(describe(&e, call.url)),
                }
            }
        }
    }
}

fn describe(e: &reqwest::Error, url: &str) -> String {
    if e.is_timeout() {
        format!("call to {url} timed out")
    } else if e.is_connect() {
        format!("cannot connect to {url}")
    } else {
        format!("call to {url} failed: {e}")
    }
}

/// The top-level `dtm_result` of a JSON object body, if any.
fn dtm_result(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        dtm_result: Option<String>,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice::<Answer>(body)
        .ok()
        .and_then(|a| a.dtm_result)
}

/// §4.2, in its order: ongoing, failure, other non-200 = error, 200 = success.
pub fn classify(status: StatusCode, body: &[u8]) -> Outcome {
    let result = dtm_result(body);
    let text = || {
        let end = body.len().min(MAX_ANSWER_TEXT);
        let t = String::from_utf8_lossy(body.get(..end).unwrap_or_default());
        format!("{} {}", status.as_u16(), t.trim())
    };
    if status.as_u16() == 425 || result.as_deref() == Some("ONGOING") {
        Outcome::Ongoing(text())
    } else if status == StatusCode::CONFLICT || result.as_deref() == Some("FAILURE") {
        Outcome::Failure(text())
    } else if status != StatusCode::OK {
        Outcome::Error(text())
    } else {
        Outcome::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, body: &str) -> &'static str {
        match classify(StatusCode::from_u16(status).unwrap(), body.as_bytes()) {
            Outcome::Success => "success",
            Outcome::Failure(_) => "failure",
            Outcome::Ongoing(_) => "ongoing",
            Outcome::Error(_) => "error",
        }
    }

    #[test]
    fn answers_are_classified_on_status_and_the_dtm_result_field() {
        assert_eq!(class(200, ""), "success");
        assert_eq!(class(200, r#"{"dtm_result":"SUCCESS"}"#), "success");
        assert_eq!(class(200, r#"{"msg":"no FAILURE here"}"#), "success");
        assert_eq!(
            class(200, "FAILURE"),
            "success",
            "plain text decides on the status"
        );
        assert_eq!(class(200, r#"{"dtm_result":"FAILURE"}"#), "failure");
        assert_eq!(class(200, r#" {"dtm_result":"ONGOING"}"#), "ongoing");
        assert_eq!(class(409, ""), "failure");
        assert_eq!(class(425, ""), "ongoing");
        assert_eq!(class(409, r#"{"dtm_result":"ONGOING"}"#), "ongoing");
        assert_eq!(class(500, "FAILURE"), "error");
        assert_eq!(class(404, ""), "error");
    }

    #[test]
    fn http_grpc_and_etcd_urls_are_callable() {
        assert!(check_url("http://127.0.0.1:8080/api/a").is_ok());
        assert!(check_url("https://svc/a").is_ok());
        assert_eq!(
            Target::parse("localhost:8080/pkg.Svc/Method"),
            Ok(Target::Grpc {
                authority: "localhost:8080",
                method: "/pkg.Svc/Method"
            })
        );
        assert_eq!(
            Target::parse("etcd://127.0.0.1:2379/trans.rpc/busi.Busi/TransOut"),
            Ok(Target::Etcd {
                etcd: "127.0.0.1:2379",
                service: "trans.rpc",
                method: "/busi.Busi/TransOut"
            })
        );
        assert!(check_url("etcd://127.0.0.1:2379/busi.Busi/TransOut").is_err());
        assert!(check_url("localhost/pkg.Svc/Method").is_err(), "no port");
        assert!(check_url("localhost:8080/pkg.Svc").is_err(), "no method");
        assert!(check_url("localhost:8080/pkg.Svc/Method/x").is_err());
        assert!(check_url("ftp://x/y").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url("http://").is_err());
    }
}
