//! A client of one TC's DTM HTTP API (`/api/dtmsvr/*`) that checks every answer against the
//! result envelope of §2.2 (never 200 with FAILURE; 409/425/500 bodies) before returning it.

use serde_json::Value;

use super::{POLL, WAIT};

/// One answer of the TC's DTM API.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What was asked (`POST submit {...}`), for failure messages.
    pub request: String,
    /// HTTP status.
    pub status: u16,
    /// The body as text.
    pub text: String,
    /// The body, if it is JSON.
    pub json: Option<Value>,
}

impl Answer {
    /// Top-level `dtm_result`, if any.
    pub fn dtm_result(&self) -> Option<&str> {
        self.json.as_ref()?.get("dtm_result")?.as_str()
    }

    /// Top-level `message`, if any.
    pub fn message(&self) -> Option<&str> {
        self.json.as_ref()?.get("message")?.as_str()
    }

    /// Panics unless 200 `{"dtm_result":"SUCCESS"}` (§2.2, "handler returned nothing").
    #[track_caller]
    pub fn expect_success(&self) -> &Answer {
        assert!(
            self.status == 200 && self.dtm_result() == Some("SUCCESS"),
            "{} → {} {}; expected 200 {{\"dtm_result\":\"SUCCESS\"}} (§2.2)",
            self.request,
            self.status,
            self.text
        );
        self
    }

    /// Panics unless 409 FAILURE (§2.2: a state conflict).
    #[track_caller]
    pub fn expect_conflict(&self, why: &str) -> &Answer {
        assert!(
            self.status == 409 && self.dtm_result() == Some("FAILURE"),
            "{} → {} {}; expected 409 FAILURE: {why}",
            self.request,
            self.status,
            self.text
        );
        self
    }

    /// Panics unless a plain error (500, or 400 for malformed input; §2.2 "Our server").
    #[track_caller]
    pub fn expect_error(&self, why: &str) -> &Answer {
        assert!(
            matches!(self.status, 400 | 500) && self.dtm_result().is_none(),
            "{} → {} {}; expected 400/500 without dtm_result: {why}",
            self.request,
            self.status,
            self.text
        );
        self
    }

    /// Panics unless `status`.
    #[track_caller]
    pub fn expect_status(&self, status: u16, why: &str) -> &Answer {
        assert_eq!(
            self.status, status,
            "{} → {} {}: {why}",
            self.request, self.status, self.text
        );
        self
    }

    /// The JSON body; panics if there is none.
    #[track_caller]
    pub fn body(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| {
            panic!(
                "{} → {} {:?}: not JSON",
                self.request, self.status, self.text
            )
        })
    }

    /// §2.2: every answer is one row of the envelope table. Applied to all answers.
    #[track_caller]
    fn check_envelope(&self) {
        let fail = |rule: &str| -> ! {
            panic!(
                "{} → {} {}: violates §2.2 ({rule})",
                self.request, self.status, self.text
            )
        };
        match (self.status, self.dtm_result()) {
            (200, Some("FAILURE" | "ONGOING")) => fail("never 200 with a FAILURE/ONGOING body"),
            (409, r) if r != Some("FAILURE") || self.message().is_none() => {
                fail("409 is {\"dtm_result\":\"FAILURE\",\"message\":...}")
            }
            (425, r) if r != Some("ONGOING") || self.message().is_none() => {
                fail("425 is {\"dtm_result\":\"ONGOING\",\"message\":...}")
            }
            (500, r) if r.is_some() || self.message().is_none() => {
                fail("500 is {\"message\":...} without dtm_result")
            }
            (s, Some(_)) if s != 200 && s != 409 && s != 425 => {
                fail("only 200/409/425 carry dtm_result")
            }
            _ => {}
        }
    }
}

/// A client of one TC's DTM API (`http://IP:PORT/api/dtmsvr`).
#[derive(Debug, Clone)]
pub struct Dtm {
    base: String,
    http: reqwest::Client,
}

impl Dtm {
    /// A client of `base` (e.g. [`crate::tc::TcProcess::dtm_url`]).
    pub fn new(base: &str) -> Dtm {
        let http = reqwest::Client::builder()
            .no_proxy()
            // wait_result answers after a whole processing round (§5.6).
            .timeout(WAIT)
            .build()
            .expect("HTTP client");
        Dtm {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// `/api/dtmsvr`'s base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `http://IP:PORT` (for endpoints outside `/api/dtmsvr`, like `/api/ping`).
    pub fn origin(&self) -> &str {
        self.base.trim_end_matches("/api/dtmsvr")
    }

    /// `POST <endpoint>` with a JSON body.
    pub async fn post(&self, endpoint: &str, body: &Value) -> Answer {
        let text = body.to_string();
        let request = format!("POST {endpoint} {}", shorten(&text));
        self.send(request, self.http.post(self.url(endpoint)), Some(text))
            .await
    }

    /// `POST <endpoint>` with any body bytes, sent as `application/json`.
    pub async fn post_raw(&self, endpoint: &str, body: impl Into<Vec<u8>>) -> Answer {
        let body: Vec<u8> = body.into();
        let request = format!(
            "POST {endpoint} {}",
            shorten(&String::from_utf8_lossy(&body))
        );
        let builder = self
            .http
            .post(self.url(endpoint))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(request, builder, None).await
    }

    /// `GET <endpoint>?<params>`.
    pub async fn get(&self, endpoint: &str, params: &[(&str, &str)]) -> Answer {
        let request = format!("GET {endpoint} {params:?}");
        self.send(
            request,
            self.http.get(self.url(endpoint)).query(params),
            None,
        )
        .await
    }

    /// `GET newGid` → the gid.
    pub async fn new_gid(&self) -> String {
        let a = self.get("newGid", &[]).await;
        a.expect_status(200, "§3.1 newGid");
        a.body()["gid"]
            .as_str()
            .unwrap_or_else(|| panic!("newGid answered {}", a.text))
            .to_owned()
    }

    /// `POST prepare`.
    pub async fn prepare(&self, body: &Value) -> Answer {
        self.post("prepare", body).await
    }

    /// `POST submit`.
    pub async fn submit(&self, body: &Value) -> Answer {
        self.post("submit", body).await
    }

    /// `POST abort`.
    pub async fn abort(&self, body: &Value) -> Answer {
        self.post("abort", body).await
    }

    /// `POST registerBranch`.
    pub async fn register_branch(&self, body: &Value) -> Answer {
        self.post("registerBranch", body).await
    }

    /// `GET query?gid=` → the whole answer (asserted 200).
    pub async fn query(&self, gid: &str) -> Value {
        let a = self.get("query", &[("gid", gid)]).await;
        a.expect_status(200, "§3.6 query");
        a.body().clone()
    }

    /// `transaction.status` of `gid`, `None` if unknown.
    pub async fn status(&self, gid: &str) -> Option<String> {
        self.query(gid).await["transaction"]["status"]
            .as_str()
            .map(str::to_owned)
    }

    /// Polls `query` until `transaction.status` is `status`; returns that query. Panics after
    /// [`WAIT`], or at once if the transaction finished with another status.
    pub async fn wait_status(&self, gid: &str, status: &str) -> Value {
        self.wait_until(gid, &format!("status {status}"), |q| {
            let now = q["transaction"]["status"].as_str();
            if matches!(now, Some("succeed" | "failed")) && now != Some(status) {
                panic!("{gid} finished {now:?}, expected {status}; query: {q:#}");
            }
            now == Some(status)
        })
        .await
    }

    /// Polls `query` until `done` holds; returns that query. Panics after [`WAIT`].
    pub async fn wait_until(&self, gid: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let q = self.query(gid).await;
            if done(&q) {
                return q;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("waited {WAIT:?} for {gid} to reach {what}; last query: {q:#}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/{}", self.base, endpoint.trim_start_matches('/'))
    }

    async fn send(
        &self,
        request: String,
        builder: reqwest::RequestBuilder,
        json_text: Option<String>,
    ) -> Answer {
        let builder = match json_text {
            Some(text) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(text),
            None => builder,
        };
        let resp = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("{request}: no answer from the TC ({e})"));
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{request}: body not read ({e})"));
        let json = serde_json::from_str(&text).ok();
        let answer = Answer {
            request,
            status,
            text,
            json,
        };
        answer.check_envelope();
        answer
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…({} bytes)", &text[..i], text.len()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    #[should_panic(expected = "never 200 with a FAILURE")]
    fn a_200_failure_answer_breaks_the_envelope() {
        Answer {
            request: "POST submit".into(),
            status: 200,
            text: r#"{"dtm_result":"FAILURE"}"#.into(),
            json: Some(json!({"dtm_result": "FAILURE"})),
        }
        .check_envelope();
    }

    #[test]
    #[should_panic(expected = "500 is")]
    fn a_500_with_dtm_result_breaks_the_envelope() {
        Answer {
            request: "POST abort".into(),
            status: 500,
            text: r#"{"dtm_result":"FAILURE","message":"x"}"#.into(),
            json: Some(json!({"dtm_result": "FAILURE", "message": "x"})),
        }
        .check_envelope();
    }
}
