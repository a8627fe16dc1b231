//! [`Saga`]: a saga initiator (spec §6.3). The client only submits; the server calls every
//! action in order (or per `orders` when concurrent) and, after a FAILURE, the compensations in
//! reverse. Branch ids are the step positions `01`, `02`, … (§1).
//!
//! ```no_run
//! # async fn f(dtm: seata_dtm::DtmClient) -> Result<(), seata_dtm::DtmError> {
//! let gid = dtm.new_gid().await?;
//! seata_dtm::Saga::new(&dtm, gid)
//!     .add("http://stock/deduct", "http://stock/deduct_revert", &serde_json::json!({"sku": 7, "n": 1}))
//!     .add("http://account/debit", "http://account/debit_revert", &serde_json::json!({"user": 1, "amount": 30}))
//!     .submit()
//!     .await
//! # }
//! ```

use std::collections::BTreeMap;

use serde::Serialize;

use crate::client::{DtmClient, Step, TransBody};
use crate::error::DtmError;
use crate::options::{option_setters, TransOptions};

/// A saga being built; [`Saga::submit`] sends it.
#[derive(Debug, Clone)]
pub struct Saga {
    client: DtmClient,
    gid: String,
    steps: Vec<Step>,
    payloads: Vec<Vec<u8>>,
    concurrent: bool,
    /// 0-based step index → the steps it waits for (§6.3 "Concurrent").
    orders: BTreeMap<usize, Vec<usize>>,
    options: TransOptions,
    /// The first payload that could not be serialised, reported by `submit` (so that `add`
    /// chains).
    bad_payload: Option<(usize, String)>,
}

impl Saga {
    /// An empty saga with this gid (from [`DtmClient::new_gid`] or your own unique id).
    pub fn new(client: &DtmClient, gid: impl Into<String>) -> Saga {
        Saga {
            client: client.clone(),
            gid: gid.into(),
            steps: Vec::new(),
            payloads: Vec::new(),
            concurrent: false,
            orders: BTreeMap::new(),
            options: TransOptions::default(),
            bad_payload: None,
        }
    }

    /// Adds a step: the server POSTs `payload` (as JSON) to `action`, and to `compensate` if the
    /// saga rolls back after this action may have run. An empty `compensate` means "nothing to
    /// undo".
    pub fn add(
        self,
        action: impl Into<String>,
        compensate: impl Into<String>,
        payload: &impl Serialize,
    ) -> Self {
        match serde_json::to_string(payload) {
            Ok(body) => self.add_raw(action, compensate, body),
            Err(e) => {
                let mut saga = self.add_raw(action, compensate, String::new());
                let step = saga.steps.len();
                saga.bad_payload.get_or_insert((step, e.to_string()));
                saga
            }
        }
    }

    /// Adds a step whose body is already JSON text (sent byte for byte). An empty body makes
    /// the server call an HTTP step with GET (§4.1).
    pub fn add_raw(
        self,
        action: impl Into<String>,
        compensate: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        self.add_bytes(action, compensate, body.into().into_bytes())
    }

    /// Adds a step with a body of raw bytes, sent byte for byte: over gRPC anything (the
    /// encoded request message of a gRPC branch), over HTTP UTF-8 text (the API carries
    /// payloads as JSON strings; `submit` refuses other bytes).
    pub fn add_bytes(
        mut self,
        action: impl Into<String>,
        compensate: impl Into<String>,
        body: impl Into<Vec<u8>>,
    ) -> Self {
        self.steps.push(Step {
            action: action.into(),
            compensate: Some(compensate.into()),
        });
        self.payloads.push(body.into());
        self
    }

    /// Adds a step for gRPC branches (`host:port/pkg.Service/Method`): the server calls
    /// `action` (and, on rollback, `compensate`) with `message` as the request.
    #[cfg(feature = "grpc")]
    pub fn add_message(
        self,
        action: impl Into<String>,
        compensate: impl Into<String>,
        message: &impl prost::Message,
    ) -> Self {
        self.add_bytes(action, compensate, message.encode_to_vec())
    }

    /// Concurrent mode: every step whose predecessors (see [`Saga::add_branch_order`]) are done
    /// runs at once; without orders all steps run in parallel.
    pub fn concurrent(mut self, on: bool) -> Self {
        self.concurrent = on;
        self
    }

    /// In concurrent mode, step `step` (0-based, in the order of `add`) starts only after all of
    /// `after` succeeded; its compensation runs only after theirs are no longer needed.
    pub fn add_branch_order(mut self, step: usize, after: &[usize]) -> Self {
        self.orders
            .entry(step)
            .or_default()
            .extend_from_slice(after);
        self
    }

    option_setters!();

    /// The gid.
    pub fn gid(&self) -> &str {
        &self.gid
    }

    /// `POST submit` (§3.3). Without `wait_result`, success means "stored, the server runs it";
    /// with it, success means the saga succeeded, [`DtmError::Failure`] that it rolled back,
    /// and [`DtmError::Ongoing`] that it is still being retried. Repeating a submit is safe.
    pub async fn submit(&self) -> Result<(), DtmError> {
        if let Some((step, reason)) = &self.bad_payload {
            return Err(DtmError::invalid(format!("payload of step {step}"), reason));
        }
        if self.steps.is_empty() {
            return Err(DtmError::invalid("saga", "it has no steps"));
        }
        let custom_data = self.custom_data()?;
        let body = TransBody {
            steps: &self.steps,
            payloads: &self.payloads,
            custom_data: &custom_data,
            ..TransBody::new(&self.gid, "saga", &self.options)
        };
        self.client.trans("submit", &body).await
    }

    /// `custom_data` for concurrent mode: `{"orders":{"2":[0,1]},"concurrent":true}` (§6.3).
    fn custom_data(&self) -> Result<String, DtmError> {
        if !self.concurrent {
            if self.orders.is_empty() {
                return Ok(String::new());
            }
            return Err(DtmError::invalid(
                "saga orders",
                "orders only apply in concurrent mode: call .concurrent(true)",
            ));
        }
        let n = self.steps.len();
        for (step, after) in &self.orders {
            if let Some(bad) = std::iter::once(step).chain(after).find(|&&i| i >= n) {
                return Err(DtmError::invalid(
                    "saga orders",
                    format!("step index {bad} is out of range: the saga has {n} steps (0-based)"),
                ));
            }
        }
        #[derive(Serialize)]
        struct Custom<'a> {
            orders: BTreeMap<String, &'a Vec<usize>>,
            concurrent: bool,
        }
        let custom = Custom {
            orders: self
                .orders
                .iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            concurrent: true,
        };
        serde_json::to_string(&custom).map_err(|e| DtmError::invalid("saga orders", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> DtmClient {
        DtmClient::new("http://127.0.0.1:1/api/dtmsvr").unwrap()
    }

    #[test]
    fn concurrent_custom_data_has_string_keys() {
        let saga = Saga::new(&client(), "g")
            .add_raw("a", "c", "{}")
            .add_raw("a", "c", "{}")
            .add_raw("a", "c", "{}")
            .concurrent(true)
            .add_branch_order(2, &[0, 1]);
        assert_eq!(
            saga.custom_data().unwrap(),
            r#"{"orders":{"2":[0,1]},"concurrent":true}"#
        );
    }

    #[test]
    fn orders_out_of_range_or_without_concurrent_are_refused() {
        let saga = Saga::new(&client(), "g")
            .add_raw("a", "c", "{}")
            .concurrent(true)
            .add_branch_order(1, &[0]);
        assert!(saga.custom_data().is_err());
        let saga = Saga::new(&client(), "g")
            .add_raw("a", "c", "{}")
            .add_raw("a", "c", "{}")
            .add_branch_order(1, &[0]);
        assert!(saga.custom_data().is_err());
    }
}
