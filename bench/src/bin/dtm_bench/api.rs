//! The two request shapes the benchmark speaks.
//!
//! - `dtm`: DTM's HTTP API (and seata-tc's DTM mode): saga bodies go in the top-level
//!   `payloads` array (JSON texts as strings), `wait_result` makes `submit` answer when the saga
//!   is done, `query` answers `{"transaction": {...,"status"}, "branches": [...]}` and an unknown
//!   gid is `200 {"transaction": null}`.
//! - `dtmrs`: the `dtmrs` crate's server. Same paths, but a saga step carries its own body in
//!   `steps[i].payload` (top-level `payloads` is not read for sagas), `wait_result` is ignored
//!   (submit answers once the saga is stored), and `query` answers the transaction flat
//!   (`{"gid","status",...,"branches":[...]}`), 404 for an unknown gid.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::branches::PAYLOAD;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// Tell from the answer to `query` of an unknown gid.
    Auto,
    Dtm,
    Dtmrs,
}

/// How a worker learns that its saga is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wait {
    /// `wait_result` for `dtm`, `poll` for `dtmrs`.
    Auto,
    /// `submit` with `wait_result: true`; its 200 means done.
    Result,
    /// `submit` without `wait_result`, then `query` until `succeed` (first query once the
    /// branch server saw the last action, then every 1-16 ms).
    Poll,
}

/// One saga's submit body.
pub fn submit_body(api: Api, gid: &str, busi: &str, steps: usize, wait_result: bool) -> Value {
    let step = |i: usize| {
        let mut s = json!({
            "action": format!("{busi}/Step{i}Action"),
            "compensate": format!("{busi}/Step{i}Compensate"),
        });
        if api == Api::Dtmrs {
            s["payload"] = json!(PAYLOAD);
        }
        s
    };
    let steps_json: Vec<Value> = (1..=steps).map(step).collect();
    match api {
        Api::Dtmrs => json!({ "gid": gid, "trans_type": "saga", "steps": steps_json }),
        _ => json!({
            "gid": gid,
            "trans_type": "saga",
            "steps": steps_json,
            "payloads": vec![PAYLOAD; steps],
            "protocol": "",
            "concurrent": false,
            "wait_result": wait_result,
        }),
    }
}

/// What `query` said about one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: String,
    /// (branch_id, op, status) of each branch row.
    pub branches: Vec<(String, String, String)>,
}

impl Outcome {
    /// Succeeded, every action succeeded, no compensation ran.
    pub fn is_clean_success(&self, steps: usize) -> bool {
        let done = |op: &str| {
            self.branches
                .iter()
                .filter(|(_, o, s)| o == op && s == "succeed")
                .count()
        };
        self.status == "succeed" && done("action") == steps && done("compensate") == 0
    }
}

/// Parses a `query` answer; `Ok(None)` for an unknown gid.
pub fn parse_query(api: Api, code: u16, body: &[u8]) -> anyhow::Result<Option<Outcome>> {
    if api == Api::Dtmrs && code == 404 {
        return Ok(None);
    }
    if code != 200 {
        bail!("query answered {code}: {}", String::from_utf8_lossy(body));
    }
    let v: Value = serde_json::from_slice(body).context("query answer is not JSON")?;
    let trans = match api {
        Api::Dtmrs => &v,
        _ => &v["transaction"],
    };
    if trans.is_null() {
        return Ok(None);
    }
    let status = trans["status"]
        .as_str()
        .context("query answer has no status")?
        .to_string();
    let field = |b: &Value, k: &str| b[k].as_str().unwrap_or_default().to_string();
    let branches = trans
        .get("branches")
        .or_else(|| v.get("branches"))
        .and_then(Value::as_array)
        .map(|bs| {
            bs.iter()
                .map(|b| (field(b, "branch_id"), field(b, "op"), field(b, "status")))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Outcome { status, branches }))
}

/// `Api::Auto` → the shape the server speaks, from its answer to `query` of a gid that does
/// not exist.
pub fn detect(code: u16, body: &[u8]) -> anyhow::Result<Api> {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    match (code, v) {
        (200, Some(v)) if v.get("transaction").is_some() => Ok(Api::Dtm),
        (404, _) => Ok(Api::Dtmrs),
        (c, _) => bail!(
            "cannot tell the server's API from query of an unknown gid ({c}: {}); pass --api",
            String::from_utf8_lossy(body)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtm_shape_has_payloads_and_wait_result() {
        let b = submit_body(Api::Dtm, "g1", "http://h/busi", 2, true);
        assert_eq!(b["payloads"][1], PAYLOAD);
        assert_eq!(b["wait_result"], true);
        assert_eq!(b["steps"][0]["action"], "http://h/busi/Step1Action");
        assert!(b["steps"][0].get("payload").is_none());
    }

    #[test]
    fn dtmrs_shape_puts_the_body_in_the_step() {
        let b = submit_body(Api::Dtmrs, "g1", "http://h/busi", 2, true);
        assert_eq!(b["steps"][1]["payload"], PAYLOAD);
        assert!(b.get("payloads").is_none());
    }

    #[test]
    fn parses_both_query_shapes() {
        let dtm = br#"{"transaction":{"gid":"g","status":"succeed"},"branches":[
            {"branch_id":"01","op":"compensate","status":"prepared"},
            {"branch_id":"01","op":"action","status":"succeed"}]}"#;
        let o = parse_query(Api::Dtm, 200, dtm).unwrap().unwrap();
        assert_eq!(o.status, "succeed");
        assert!(o.is_clean_success(1));
        let flat = br#"{"gid":"g","status":"submitted","branches":[
            {"branch_id":"01","op":"action","status":"succeed"}]}"#;
        let o = parse_query(Api::Dtmrs, 200, flat).unwrap().unwrap();
        assert!(!o.is_clean_success(1));
        assert_eq!(parse_query(Api::Dtmrs, 404, b"{}").unwrap(), None);
        let none = br#"{"transaction":null,"branches":[]}"#;
        assert_eq!(parse_query(Api::Dtm, 200, none).unwrap(), None);
        assert_eq!(detect(200, none).unwrap(), Api::Dtm);
        assert_eq!(detect(404, b"").unwrap(), Api::Dtmrs);
    }
}
