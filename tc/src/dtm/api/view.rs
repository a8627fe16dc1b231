//! How `query` and `all` show transactions (spec §3.6): DTM's field names, empty and zero
//! fields omitted except `id`, `create_time`, `update_time` and `concurrent`, times as RFC
//! 3339 strings, bodies as base64 (Go's encoding of `[]byte`). Our additions: `retry_count`
//! and `next_cron_time` are always shown, so an operator sees how often a transaction was
//! retried and when it is looked at next.

use base64::Engine as _;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::dtm::model::{Branch, Trans, TransOptions};

/// ms since the epoch as RFC 3339 (UTC, ms precision).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn put_str(m: &mut Map<String, Value>, k: &str, v: &str) {
    if !v.is_empty() {
        m.insert(k.into(), Value::from(v));
    }
}

fn put_time(m: &mut Map<String, Value>, k: &str, ms: i64) {
    if ms != 0 {
        m.insert(k.into(), Value::from(rfc3339(ms)));
    }
}

fn put_int(m: &mut Map<String, Value>, k: &str, v: i64) {
    if v != 0 {
        m.insert(k.into(), Value::from(v));
    }
}

/// The options as DTM keeps them in its `options` column: JSON without the empty fields.
pub fn options_text(o: &TransOptions) -> String {
    let mut m = Map::new();
    option_fields(&mut m, o);
    Value::Object(m).to_string()
}

fn option_fields(m: &mut Map<String, Value>, o: &TransOptions) {
    if o.wait_result {
        m.insert("wait_result".into(), Value::from(true));
    }
    put_int(m, "timeout_to_fail", o.timeout_to_fail);
    put_int(m, "request_timeout", o.request_timeout);
    put_int(m, "retry_interval", o.retry_interval);
    put_int(m, "retry_limit", o.retry_limit);
    if !o.branch_headers.is_empty() {
        m.insert("branch_headers".into(), json!(o.branch_headers));
    }
}

/// One global row.
pub fn trans(t: &Trans) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::from(t.id));
    m.insert("create_time".into(), Value::from(rfc3339(t.create_time)));
    m.insert("update_time".into(), Value::from(rfc3339(t.update_time)));
    m.insert("gid".into(), Value::from(t.gid.as_str()));
    m.insert("trans_type".into(), Value::from(t.trans_type.as_str()));
    m.insert("status".into(), Value::from(t.status.as_str()));
    put_str(&mut m, "query_prepared", &t.query_prepared);
    put_str(&mut m, "protocol", &t.protocol);
    put_time(&mut m, "finish_time", t.finish_time);
    put_time(&mut m, "rollback_time", t.rollback_time);
    put_str(&mut m, "result", &t.result);
    put_str(&mut m, "rollback_reason", &t.rollback_reason);
    let options = options_text(&t.options);
    if options != "{}" {
        m.insert("options".into(), Value::from(options));
    }
    put_str(&mut m, "custom_data", &t.custom_data);
    if !t.status.is_finished() {
        put_int(&mut m, "next_cron_interval", t.next_cron_interval);
        m.insert(
            "next_cron_time".into(),
            Value::from(rfc3339(t.next_cron_time)),
        );
    }
    put_str(&mut m, "owner", &t.owner);
    put_str(&mut m, "ext_data", &t.ext_data);
    option_fields(&mut m, &t.options);
    m.insert("concurrent".into(), Value::from(t.options.concurrent));
    m.insert("retry_count".into(), Value::from(t.retry_count));
    Value::Object(m)
}

/// One branch op; `id` is its position among the transaction's ops (1-based).
pub fn branch(gid: &str, id: usize, b: &Branch) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::from(id));
    m.insert("create_time".into(), Value::from(rfc3339(b.create_time)));
    m.insert("update_time".into(), Value::from(rfc3339(b.update_time)));
    m.insert("gid".into(), Value::from(gid));
    put_str(&mut m, "url", &b.url);
    if !b.bin_data.is_empty() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&b.bin_data);
        m.insert("bin_data".into(), Value::from(encoded));
    }
    m.insert("branch_id".into(), Value::from(b.branch_id.as_str()));
    m.insert("op".into(), Value::from(b.op.as_str()));
    m.insert("status".into(), Value::from(b.status.as_str()));
    put_time(&mut m, "finish_time", b.finish_time);
    put_time(&mut m, "rollback_time", b.rollback_time);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtm::machine::test_support::{add, record};
    use crate::dtm::model::{Op, TransStatus, TransType};

    #[test]
    fn times_are_rfc3339_utc_with_ms() {
        assert_eq!(rfc3339(1_714_557_600_123), "2024-05-01T10:00:00.123Z");
    }

    #[test]
    fn query_rows_use_dtm_names_and_omit_empty_fields() {
        let mut r = record(TransType::Saga, TransStatus::Succeed);
        r.trans.options.retry_interval = 2;
        add(&mut r, "01", Op::Action);
        let t = trans(&r.trans);
        assert_eq!(t["status"], "succeed");
        assert_eq!(t["trans_type"], "saga");
        assert_eq!(t["retry_interval"], 2);
        assert_eq!(t["options"], "{\"retry_interval\":2}");
        assert_eq!(t["concurrent"], false);
        assert!(t.get("rollback_reason").is_none());
        assert!(t.get("finish_time").is_none());
        let b = branch("g", 1, &r.branches[0]);
        assert_eq!(b["bin_data"], "e30=", "base64 of {{}}");
        assert_eq!(b["op"], "action");
        assert_eq!(b["status"], "prepared");
    }
}
