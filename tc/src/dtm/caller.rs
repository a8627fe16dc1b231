//! The edge that calls branch services over HTTP (spec §4): one pooled client for the
//! process; the method rule, the four query parameters (and the legacy `branch_type`), the
//! transaction's `branch_headers` and `request_timeout`; and the answer classified per §4.2.
//!
//! On purpose unlike DTM: FAILURE/ONGOING in a body count only as the top-level JSON field
//! `dtm_result` (what every SDK sends), never as a substring anywhere in the body, so a 200
//! that merely mentions the word cannot roll a saga back.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Client, Method, StatusCode, Url};

use super::machine::Outcome;
use super::model::{Branch, Op, Trans, TransType};

/// Most of an answer's body kept for the reason and logs.
const MAX_ANSWER_TEXT: usize = 1024;

/// Calls branches. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct BranchCaller {
    client: Client,
    default_timeout: Duration,
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

/// Whether `url` is a URL the server can call: absolute http(s) with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(format!(
            "url {url:?} has scheme {:?}; branch URLs must be http:// or https:// (gRPC \
             branches are not served yet)",
            u.scheme()
        )),
        Err(e) => Err(format!("url {url:?} is not a valid URL: {e}")),
    }
}

impl BranchCaller {
    /// A caller whose calls time out after `default_timeout` unless the transaction says
    /// otherwise.
    pub fn new(default_timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(BranchCaller {
            client,
            default_timeout,
        })
    }

    /// Makes the call and classifies the answer. An empty URL is a success without a call
    /// (a saga step may have no compensation).
    pub async fn call(&self, call: Call<'_>) -> Outcome {
        if call.url.is_empty() {
            return Outcome::Success;
        }
        let mut url = match Url::parse(call.url) {
            Ok(u) => u,
            Err(e) => return Outcome::Error(format!("url {:?} is not valid: {e}", call.url)),
        };
        let trans = call.trans;
        url.query_pairs_mut()
            .append_pair("gid", &trans.gid)
            .append_pair("trans_type", trans.trans_type.as_str())
            .append_pair("branch_id", call.branch_id)
            .append_pair("op", call.op.as_str())
            // DTM before v1.5 named `op` `branch_type`; old samples still read it.
            .append_pair("branch_type", call.op.as_str());
        let timeout = match trans.options.request_timeout {
            s if s > 0 => Duration::from_secs(s.unsigned_abs()),
            _ => self.default_timeout,
        };
        let mut req = self
            .client
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
    fn only_http_urls_with_a_host_are_callable() {
        assert!(check_url("http://127.0.0.1:8080/api/a").is_ok());
        assert!(check_url("https://svc/a").is_ok());
        assert!(check_url("localhost:8080/pkg.Svc/Method").is_err());
        assert!(check_url("ftp://x/y").is_err());
        assert!(check_url("not a url").is_err());
    }
}
