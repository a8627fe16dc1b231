//! Requests of prepare/submit/abort (spec §2.3) and registerBranch (§3.5), checked into the
//! engine's types. Both front-ends use it: the HTTP API parses its JSON bodies here
//! ([`TransBody`], [`registration`]), the gRPC service fills the plain [`TransRequest`] and
//! [`RegisterRequest`] from prost messages; the checks are the same.
//!
//! Lenient where DTM clients differ (unknown fields ignored, `null` for a string is `""`, the
//! Python client's `passthrough_headers` accepted and ignored), strict where a bad value would
//! be stored and fail later (every URL callable, gids and branch ids within limits, saga
//! `custom_data` parseable): those are refused now with a message that names the field.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::dtm::caller::check_url;
use crate::dtm::engine::Registration;
use crate::dtm::error::DtmError;
use crate::dtm::model::{
    Branch, Op, Trans, TransOptions, TransRecord, TransStatus, TransType, MAX_BRANCH_ID_LEN,
    MAX_GID_LEN,
};

/// A prepare/submit/abort request, whichever front-end it came from. Absent = empty/0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransRequest {
    /// `gid`.
    pub gid: String,
    /// `trans_type`, as given.
    pub trans_type: String,
    /// saga/msg steps: `action`, `compensate` URLs (legacy: the body in `data`).
    pub steps: Vec<BTreeMap<String, String>>,
    /// Body of step *i*, byte for byte (HTTP: a JSON text per step; gRPC: raw bytes).
    pub payloads: Vec<Vec<u8>>,
    /// msg: the queryPrepared URL.
    pub query_prepared: String,
    /// `custom_data`, a JSON text.
    pub custom_data: String,
    /// `""`/`http` or `grpc` (only what the transaction shows: each URL says how it is called).
    pub protocol: String,
    /// abort: the reason kept.
    pub rollback_reason: String,
    /// `wait_result`.
    pub wait_result: bool,
    /// `timeout_to_fail`, s.
    pub timeout_to_fail: i64,
    /// `request_timeout`, s.
    pub request_timeout: i64,
    /// `retry_interval`, s.
    pub retry_interval: i64,
    /// `retry_limit`.
    pub retry_limit: i64,
    /// `branch_headers`.
    pub branch_headers: BTreeMap<String, String>,
    /// `concurrent` (msg).
    pub concurrent: bool,
}

/// A registerBranch request, whichever front-end it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterRequest {
    /// `gid`.
    pub gid: String,
    /// `trans_type` as given (may be empty).
    pub trans_type: String,
    /// `branch_id`.
    pub branch_id: String,
    /// Body of the second-phase calls (HTTP `data`, gRPC `BusiPayload`).
    pub data: Vec<u8>,
    /// tcc `confirm` URL.
    pub confirm: String,
    /// tcc `cancel` URL.
    pub cancel: String,
    /// xa `url`.
    pub url: String,
}

/// The JSON transaction body of prepare/submit/abort over HTTP.
#[derive(Debug, Default, Deserialize)]
pub struct TransBody {
    gid: Option<String>,
    trans_type: Option<String>,
    steps: Option<Vec<BTreeMap<String, Option<String>>>>,
    payloads: Option<Vec<Option<String>>>,
    query_prepared: Option<String>,
    custom_data: Option<String>,
    protocol: Option<String>,
    rollback_reason: Option<String>,
    wait_result: Option<bool>,
    timeout_to_fail: Option<i64>,
    request_timeout: Option<i64>,
    retry_interval: Option<i64>,
    retry_limit: Option<i64>,
    branch_headers: Option<BTreeMap<String, String>>,
    concurrent: Option<bool>,
}

/// The `{"gid": ...}` body of the operator endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct GidBody {
    gid: Option<String>,
}

fn invalid(message: impl Into<String>) -> DtmError {
    DtmError::Invalid(message.into())
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DtmError> {
    serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("request body is not the expected JSON object: {e}")))
}

/// Checks a gid: 1 to 128 characters, none of whitespace, control characters, quotes,
/// backslash or `;` (DTM strips some of these silently; we refuse them, since a gid also
/// ends up in XA ids and URLs).
pub fn check_gid(gid: &str) -> Result<(), DtmError> {
    check_id("gid", gid, MAX_GID_LEN)
}

fn check_id(field: &str, v: &str, max: usize) -> Result<(), DtmError> {
    if v.is_empty() {
        return Err(invalid(format!("{field} is required")));
    }
    if v.chars().count() > max {
        return Err(invalid(format!("{field} is longer than {max} characters")));
    }
    if let Some(c) = v
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "'\"`\\;".contains(*c))
    {
        return Err(invalid(format!(
            "{field} {v:?} contains {c:?}; use letters, digits and -_.:@ (no spaces, quotes, \
             backslash or ;)"
        )));
    }
    Ok(())
}

fn url(field: &str, v: &str) -> Result<(), DtmError> {
    check_url(v).map_err(|e| invalid(format!("{field}: {e}")))
}

impl GidBody {
    /// Parses and returns the checked gid.
    pub fn gid(bytes: &[u8]) -> Result<String, DtmError> {
        let b: GidBody = parse(bytes)?;
        let gid = b.gid.unwrap_or_default();
        check_gid(&gid)?;
        Ok(gid)
    }
}

impl TransBody {
    /// Parses a body.
    pub fn parse(bytes: &[u8]) -> Result<Self, DtmError> {
        parse(bytes)
    }

    /// The checked gid.
    pub fn gid(&self) -> Result<String, DtmError> {
        let gid = self.gid.clone().unwrap_or_default();
        check_gid(&gid)?;
        Ok(gid)
    }

    /// `wait_result`.
    pub fn wait_result(&self) -> bool {
        self.wait_result.unwrap_or(false)
    }

    /// `rollback_reason`.
    pub fn rollback_reason(&self) -> &str {
        self.rollback_reason.as_deref().unwrap_or("")
    }

    /// The front-end-neutral request (JSON `null`s read as empty).
    pub fn into_request(self) -> TransRequest {
        TransRequest {
            gid: self.gid.unwrap_or_default(),
            trans_type: self.trans_type.unwrap_or_default(),
            steps: self
                .steps
                .unwrap_or_default()
                .into_iter()
                .map(|step| {
                    step.into_iter()
                        .map(|(k, v)| (k, v.unwrap_or_default()))
                        .collect()
                })
                .collect(),
            payloads: self
                .payloads
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.unwrap_or_default().into_bytes())
                .collect(),
            query_prepared: self.query_prepared.unwrap_or_default(),
            custom_data: self.custom_data.unwrap_or_default(),
            protocol: self.protocol.unwrap_or_default(),
            rollback_reason: self.rollback_reason.unwrap_or_default(),
            wait_result: self.wait_result.unwrap_or(false),
            timeout_to_fail: self.timeout_to_fail.unwrap_or(0),
            request_timeout: self.request_timeout.unwrap_or(0),
            retry_interval: self.retry_interval.unwrap_or(0),
            retry_limit: self.retry_limit.unwrap_or(0),
            branch_headers: self.branch_headers.unwrap_or_default(),
            concurrent: self.concurrent.unwrap_or(false),
        }
    }

    /// The transaction to create from this body (`prepare`: `preparing` is true), checked.
    pub fn into_record(self, preparing: bool) -> Result<TransRecord, DtmError> {
        self.into_request().into_record(preparing)
    }
}

impl TransRequest {
    /// The checked gid.
    pub fn checked_gid(&self) -> Result<&str, DtmError> {
        check_gid(&self.gid)?;
        Ok(&self.gid)
    }

    /// The checked `trans_type`, refusing types not served.
    pub fn checked_trans_type(&self) -> Result<TransType, DtmError> {
        let word = self.trans_type.as_str();
        match word.parse::<TransType>() {
            Ok(TransType::Workflow) => Err(invalid(
                "trans_type workflow is not served yet; use saga, msg, tcc or xa",
            )),
            Ok(t) => Ok(t),
            Err(_) => Err(invalid(format!(
                "unknown trans_type {word:?}; expected saga, msg, tcc or xa"
            ))),
        }
    }

    /// The transaction to create (`prepare`: `preparing` is true), checked. Status and times
    /// are the engine's to set.
    pub fn into_record(self, preparing: bool) -> Result<TransRecord, DtmError> {
        let gid = self.checked_gid()?.to_owned();
        let trans_type = self.checked_trans_type()?;
        if !matches!(self.protocol.as_str(), "" | "http" | "grpc") {
            return Err(invalid(format!(
                "protocol {:?} is not served yet; this server calls branches over http or grpc",
                self.protocol
            )));
        }
        for (field, v) in [
            ("timeout_to_fail", self.timeout_to_fail),
            ("request_timeout", self.request_timeout),
            ("retry_interval", self.retry_interval),
            ("retry_limit", self.retry_limit),
        ] {
            if v < 0 {
                return Err(invalid(format!("{field} must not be negative")));
            }
        }
        for (k, v) in &self.branch_headers {
            if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || axum::http::HeaderValue::from_str(v).is_err()
            {
                return Err(invalid(format!(
                    "branch_headers: {k:?}: {v:?} is not a valid HTTP header"
                )));
            }
        }
        if !self.custom_data.is_empty() && serde_json::from_str::<Value>(&self.custom_data).is_err()
        {
            return Err(invalid(
                "custom_data must be a JSON text (e.g. {\"concurrent\":true,\"orders\":{}})",
            ));
        }
        if !self.query_prepared.is_empty() {
            url("query_prepared", &self.query_prepared)?;
        } else if trans_type == TransType::Msg && preparing {
            return Err(invalid(
                "a prepared msg needs query_prepared: the URL asked whether its local \
                 transaction committed",
            ));
        }
        let branches = match trans_type {
            TransType::Saga | TransType::Msg => self.branches(trans_type)?,
            _ => Vec::new(),
        };
        let options = TransOptions {
            wait_result: self.wait_result,
            timeout_to_fail: self.timeout_to_fail,
            request_timeout: self.request_timeout,
            retry_interval: self.retry_interval,
            retry_limit: self.retry_limit,
            branch_headers: self.branch_headers,
            concurrent: self.concurrent,
        };
        Ok(TransRecord {
            trans: Trans {
                id: 0,
                gid,
                trans_type,
                status: TransStatus::Prepared,
                protocol: self.protocol,
                query_prepared: self.query_prepared,
                custom_data: self.custom_data,
                options,
                rollback_reason: String::new(),
                result: String::new(),
                create_time: 0,
                update_time: 0,
                finish_time: 0,
                rollback_time: 0,
                next_cron_interval: 0,
                next_cron_time: 0,
                retry_count: 0,
                owner: String::new(),
                ext_data: String::new(),
            },
            branches,
        })
    }

    /// Branch ops of a saga (compensate, action per step) or msg (action per step).
    fn branches(&self, trans_type: TransType) -> Result<Vec<Branch>, DtmError> {
        let (steps, payloads) = (&self.steps, &self.payloads);
        if !payloads.is_empty() && payloads.len() != steps.len() {
            return Err(invalid(format!(
                "{} steps but {} payloads; give one payload per step",
                steps.len(),
                payloads.len()
            )));
        }
        let get =
            |step: &BTreeMap<String, String>, k: &str| step.get(k).cloned().unwrap_or_default();
        let mut out = Vec::with_capacity(steps.len() * 2);
        for (i, step) in steps.iter().enumerate() {
            let n = i + 1;
            let branch_id = format!("{n:02}");
            // Legacy clients put the step's body in the step itself.
            let body = match payloads.get(i) {
                Some(p) => p.clone(),
                None => get(step, "data").into_bytes(),
            };
            let action = get(step, "action");
            if action.starts_with("topic://") {
                return Err(invalid(format!(
                    "steps[{i}].action {action:?}: msg topics are not served yet"
                )));
            }
            url(&format!("steps[{i}].action"), &action)?;
            if trans_type == TransType::Saga {
                let compensate = get(step, "compensate");
                if !compensate.is_empty() {
                    url(&format!("steps[{i}].compensate"), &compensate)?;
                }
                out.push(Branch::new(
                    branch_id.clone(),
                    Op::Compensate,
                    compensate,
                    body.clone(),
                    0,
                ));
            }
            out.push(Branch::new(branch_id, Op::Action, action, body, 0));
        }
        Ok(out)
    }
}

impl RegisterRequest {
    /// The checked gid and registration.
    pub fn into_registration(self) -> Result<(String, Registration), DtmError> {
        check_gid(&self.gid)?;
        check_id("branch_id", &self.branch_id, MAX_BRANCH_ID_LEN)?;
        for (field, v) in [
            ("confirm", &self.confirm),
            ("cancel", &self.cancel),
            ("url", &self.url),
        ] {
            if !v.is_empty() {
                url(field, v)?;
            }
        }
        let reg = Registration {
            branch_id: self.branch_id,
            data: self.data,
            confirm: self.confirm,
            cancel: self.cancel,
            url: self.url,
            trans_type: self.trans_type,
        };
        Ok((self.gid, reg))
    }
}

/// The `registerBranch` body: a flat object whose values are all strings.
pub fn registration(bytes: &[u8]) -> Result<(String, Registration), DtmError> {
    let map: serde_json::Map<String, Value> = parse(bytes)?;
    let mut fields = BTreeMap::new();
    for (k, v) in map {
        match v {
            Value::String(s) => {
                fields.insert(k, s);
            }
            Value::Null => {}
            other => {
                return Err(invalid(format!(
                    "registerBranch field {k:?} is {other}; every value must be a string"
                )))
            }
        }
    }
    let mut take = |k: &str| fields.remove(k).unwrap_or_default();
    RegisterRequest {
        gid: take("gid"),
        trans_type: take("trans_type"),
        branch_id: take("branch_id"),
        data: take("data").into_bytes(),
        confirm: take("confirm"),
        cancel: take("cancel"),
        url: take("url"),
    }
    .into_registration()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: DtmError) -> String {
        format!("{e:?}")
    }

    #[test]
    fn a_python_saga_body_parses_with_its_nulls() {
        let body = br#"{"gid":"g1","trans_type":"saga","custom_data":null,
            "steps":[{"action":"http://b/a","compensate":"http://b/c"}],
            "payloads":["{\"amount\":30}"],"query_prepared":null,"protocol":null,
            "wait_result":false,"timeout_to_fail":0,"request_timeout":8,"retry_interval":0,
            "passthrough_headers":[],"branch_headers":{},"concurrent":false}"#;
        let r = TransBody::parse(body).unwrap().into_record(false).unwrap();
        assert_eq!(r.trans.options.request_timeout, 8);
        let ops: Vec<_> = r
            .branches
            .iter()
            .map(|b| (b.branch_id.as_str(), b.op))
            .collect();
        assert_eq!(ops, [("01", Op::Compensate), ("01", Op::Action)]);
        assert_eq!(r.branches[1].bin_data, br#"{"amount":30}"#);
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_field() {
        let bad = |body: &str| {
            TransBody::parse(body.as_bytes())
                .and_then(|b| b.into_record(true))
                .map(|_| ())
                .map_err(message)
        };
        assert!(bad("{").unwrap_err().contains("not the expected JSON"));
        assert!(bad(r#"{"gid":"g","trans_type":"sagas"}"#)
            .unwrap_err()
            .contains("unknown trans_type"));
        assert!(bad(r#"{"gid":"a b","trans_type":"saga"}"#)
            .unwrap_err()
            .contains("gid"));
        let long = "x".repeat(129);
        assert!(bad(&format!(r#"{{"gid":"{long}","trans_type":"saga"}}"#)).is_err());
        assert!(bad(r#"{"gid":"g","trans_type":"saga","steps":[{"action":"grpc-host/a.B/C"}],"payloads":["{}"]}"#)
            .unwrap_err()
            .contains("steps[0].action"));
        assert!(bad(r#"{"gid":"g","trans_type":"saga","steps":[{"action":"grpc-host:1/a.B/C"}],"payloads":["{}"]}"#)
            .is_ok(), "a gRPC method URL");
        assert!(bad(
            r#"{"gid":"g","trans_type":"saga","steps":[{"action":"http://x/a"}],"payloads":[]}"#
        )
        .is_ok());
        assert!(bad(r#"{"gid":"g","trans_type":"saga","steps":[{"action":"http://x/a"}],"payloads":["a","b"]}"#).is_err());
        assert!(bad(r#"{"gid":"g","trans_type":"msg","steps":[]}"#)
            .unwrap_err()
            .contains("query_prepared"));
        assert!(bad(r#"{"gid":"g","trans_type":"saga","custom_data":"{nope"}"#).is_err());
        assert!(bad(r#"{"gid":"g","trans_type":"saga","protocol":"grpc"}"#).is_ok());
        assert!(bad(r#"{"gid":"g","trans_type":"saga","protocol":"json-rpc"}"#).is_err());
        assert!(bad(r#"{"gid":"g","trans_type":"saga","retry_interval":-1}"#).is_err());
    }

    #[test]
    fn registration_values_must_be_strings() {
        let ok = registration(br#"{"gid":"g","branch_id":"01","trans_type":"tcc","status":"prepared","data":"{}","confirm":"http://x/c","cancel":"http://x/k"}"#).unwrap();
        assert_eq!(ok.1.confirm, "http://x/c");
        let e = registration(br#"{"gid":"g","branch_id":1}"#).unwrap_err();
        assert!(message(e).contains("branch_id"));
        assert!(registration(br#"{"gid":"g","branch_id":"01","url":"nope"}"#).is_err());
    }
}
