//! Kit for the DTM-mode tests (`shared/spec/dtm-http-api.md`): a branch service in the test
//! process ([`BranchServer`]) that records every call the TC makes and answers as scripted per
//! path, and a small client of the TC's DTM HTTP API ([`Dtm`]) that checks every answer against
//! the result envelope of §2.2 before handing it over; plus builders of request bodies and
//! readers of `query` answers.
//!
//! Nothing here knows how the TC works inside: it speaks HTTP on both sides.

mod branch;
mod client;

use std::time::Duration;

use serde_json::{json, Value};

pub use branch::{call_branch, BranchServer, Call, Reply};
pub use client::{Answer, Dtm};

/// Deadline of every wait on the TC (a status, a call): generous, since a retry schedule of
/// `retry_interval: 1` doubles (1 s, 2 s, 4 s, …) and the TC looks at due work once a second.
pub const WAIT: Duration = Duration::from_secs(40);
/// Pause between two polls of a wait.
const POLL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------------------------------------
// Reading `query` answers

/// `(branch_id, op, status)` of every branch row of a `query` answer, in its order.
pub fn branch_rows(query: &Value) -> Vec<(String, String, String)> {
    query["branches"]
        .as_array()
        .map(|bs| {
            bs.iter()
                .map(|b| {
                    let s = |k: &str| b[k].as_str().unwrap_or("<missing>").to_owned();
                    (s("branch_id"), s("op"), s("status"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The rows `[(branch_id, op, status)]` written compactly, for comparisons.
pub fn rows(expected: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    expected
        .iter()
        .map(|(b, o, s)| (b.to_string(), o.to_string(), s.to_string()))
        .collect()
}

/// A saga body (§2.3): `steps` from `(action, compensate)` URLs, `payloads` as given, plus
/// the `extra` top-level fields (options, `custom_data`).
pub fn saga(gid: &str, steps: &[(&str, &str)], payloads: &[&str], extra: Value) -> Value {
    let mut body = json!({
        "gid": gid,
        "trans_type": "saga",
        "steps": steps
            .iter()
            .map(|(a, c)| json!({"action": a, "compensate": c}))
            .collect::<Vec<_>>(),
        "payloads": payloads,
        "protocol": "",
        "concurrent": false,
    });
    merge(&mut body, extra);
    body
}

/// A msg body (§2.3): `steps` with `action` URLs, `payloads`, `query_prepared`, plus `extra`.
pub fn msg(
    gid: &str,
    actions: &[&str],
    payloads: &[&str],
    query_prepared: &str,
    extra: Value,
) -> Value {
    let mut body = json!({
        "gid": gid,
        "trans_type": "msg",
        "steps": actions.iter().map(|a| json!({"action": a})).collect::<Vec<_>>(),
        "payloads": payloads,
        "query_prepared": query_prepared,
        "protocol": "",
    });
    merge(&mut body, extra);
    body
}

/// `{"gid", "trans_type"}` plus `extra` (tcc/xa prepare, submit, abort).
pub fn trans(gid: &str, trans_type: &str, extra: Value) -> Value {
    let mut body = json!({"gid": gid, "trans_type": trans_type});
    merge(&mut body, extra);
    body
}

/// Adds `extra`'s fields (an object, or `null` for none) to `body`.
pub fn merge(body: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
}
