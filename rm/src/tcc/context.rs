//! TCC `applicationData` in Seata 1.2's layout (tcc-xa-saga.md §1.2 step 2, §1.3 step 2):
//! `{"actionContext": {...}}`, where the action context holds the caller's parameters plus the
//! keys a Java interceptor adds (`action-start-time`, `sys::prepare`, `sys::commit`,
//! `sys::rollback`, `actionName`, `host-name`). A Java TC or RM reading the branch sees what
//! its own interceptor would have written; phase two rebuilds the context from it.

use serde_json::{Map, Value};

/// The top-level key Java's `TCCResourceManager` reads.
pub const ACTION_CONTEXT_KEY: &str = "actionContext";
/// Phase-one start, ms since the epoch.
pub const ACTION_START_TIME: &str = "action-start-time";
/// The action (resource id).
pub const ACTION_NAME: &str = "actionName";
/// The local IP of the RM that ran phase one.
pub const HOST_NAME: &str = "host-name";
/// Method-name keys; a Rust action has fixed phase names.
pub const PREPARE_METHOD: &str = "sys::prepare";
/// See [`PREPARE_METHOD`].
pub const COMMIT_METHOD: &str = "sys::commit";
/// See [`PREPARE_METHOD`].
pub const ROLLBACK_METHOD: &str = "sys::rollback";

/// The action context a branch registers: the caller's parameters, then the system keys (which
/// win over a parameter of the same name, as in Java where they are put last).
pub(crate) fn build_action_context(
    params: Map<String, Value>,
    action_name: &str,
    host: &str,
    now_ms: i64,
) -> Map<String, Value> {
    let mut ctx = params;
    ctx.insert(ACTION_START_TIME.into(), Value::from(now_ms));
    ctx.insert(PREPARE_METHOD.into(), Value::from("prepare"));
    ctx.insert(COMMIT_METHOD.into(), Value::from("commit"));
    ctx.insert(ROLLBACK_METHOD.into(), Value::from("rollback"));
    ctx.insert(ACTION_NAME.into(), Value::from(action_name));
    ctx.insert(HOST_NAME.into(), Value::from(host));
    ctx
}

/// `{"actionContext": ctx}` as JSON text.
pub(crate) fn encode_application_data(ctx: &Map<String, Value>) -> String {
    let mut top = Map::new();
    top.insert(ACTION_CONTEXT_KEY.into(), Value::Object(ctx.clone()));
    Value::Object(top).to_string()
}

/// The action context of a branch's `applicationData`. Blank data is an empty context, as in
/// Java; data that is not a JSON object (or whose `actionContext` is not one) is an error,
/// since calling phase two with a wrong context could do the wrong thing.
pub(crate) fn decode_application_data(data: &str) -> Result<Map<String, Value>, String> {
    if data.trim().is_empty() {
        return Ok(Map::new());
    }
    let value: Value =
        serde_json::from_str(data).map_err(|e| format!("applicationData is not JSON: {e}"))?;
    let Value::Object(mut top) = value else {
        return Err("applicationData is not a JSON object".into());
    };
    match top.remove(ACTION_CONTEXT_KEY) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(ctx)) => Ok(ctx),
        Some(_) => Err(format!("`{ACTION_CONTEXT_KEY}` is not a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_java_layout_and_reads_it_back() {
        let mut params = Map::new();
        params.insert("amount".into(), json!(30));
        params.insert("actionName".into(), json!("spoofed"));
        let ctx = build_action_context(params, "TccActionOne", "192.168.0.2", 1_589_000_000_000);
        let data = encode_application_data(&ctx);
        let parsed: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(
            parsed,
            json!({"actionContext": {
                "action-start-time": 1_589_000_000_000_i64,
                "sys::prepare": "prepare",
                "sys::commit": "commit",
                "sys::rollback": "rollback",
                "actionName": "TccActionOne",
                "host-name": "192.168.0.2",
                "amount": 30
            }})
        );
        assert_eq!(decode_application_data(&data).unwrap(), ctx);
    }

    #[test]
    fn reads_what_a_java_interceptor_writes() {
        // The example of tcc-xa-saga.md §1.2 (fastjson, key order unspecified).
        let data = r#"{"actionContext":{"action-start-time":1589000000000,"sys::prepare":"prepare","sys::commit":"commit","sys::rollback":"rollback","actionName":"TccActionOne","host-name":"192.168.0.2","a":1}}"#;
        let ctx = decode_application_data(data).unwrap();
        assert_eq!(ctx.get("a"), Some(&json!(1)));
        assert_eq!(ctx.get(ACTION_NAME), Some(&json!("TccActionOne")));
    }

    #[test]
    fn blank_is_empty_and_garbage_is_an_error() {
        assert!(decode_application_data("").unwrap().is_empty());
        assert!(decode_application_data("{}").unwrap().is_empty());
        assert!(decode_application_data("not json").is_err());
        assert!(decode_application_data("[1]").is_err());
        assert!(decode_application_data(r#"{"actionContext":3}"#).is_err());
    }
}
