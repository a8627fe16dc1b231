//! [`Msg`]: a two-phase message (spec §6.4). `prepare` registers the message with its actions;
//! the producer runs its local transaction; `submit` lets the server call every action (retried
//! until each succeeds), `abort` drops it. If the producer dies in between, the server asks the
//! `query_prepared` URL whether the local transaction committed.
//!
//! [`Msg::do_and_submit`] does all of it with the producer barrier (§8.4), so the question of
//! whether the local transaction committed always has an answer in the producer's database.
//!
//! ```no_run
//! # async fn f(dtm: seata_dtm::DtmClient, pool: mysql_async::Pool) -> Result<(), seata_dtm::DtmError> {
//! use mysql_async::prelude::Queryable;
//! let gid = dtm.new_gid().await?;
//! seata_dtm::Msg::new(&dtm, gid)
//!     .add("http://account/credit", &serde_json::json!({"user": 2, "amount": 30}))
//!     .query_prepared("http://order/query_prepared")
//!     .do_and_submit(&pool, |tx| Box::pin(async move {
//!         tx.exec_drop("UPDATE account SET balance = balance - 30 WHERE id = 1", ()).await?;
//!         Ok(())
//!     }))
//!     .await
//! # }
//! ```

use futures::future::BoxFuture;
use mysql_async::{Pool, Transaction, TxOpts};
use serde::Serialize;

use crate::barrier::{BarrierOutcome, BarrierTable, BranchBarrier};
use crate::branch::BranchError;
use crate::client::{DtmClient, Step, TransBody};
use crate::error::DtmError;
use crate::options::{option_setters, TransOptions};

/// A two-phase message being built.
#[derive(Debug, Clone)]
pub struct Msg {
    client: DtmClient,
    gid: String,
    steps: Vec<Step>,
    payloads: Vec<Vec<u8>>,
    query_prepared: String,
    concurrent: bool,
    options: TransOptions,
    barrier_table: BarrierTable,
    bad_payload: Option<(usize, String)>,
}

impl Msg {
    /// An empty message with this gid.
    pub fn new(client: &DtmClient, gid: impl Into<String>) -> Msg {
        Msg {
            client: client.clone(),
            gid: gid.into(),
            steps: Vec::new(),
            payloads: Vec::new(),
            query_prepared: String::new(),
            concurrent: false,
            options: TransOptions::default(),
            barrier_table: BarrierTable::default(),
            bad_payload: None,
        }
    }

    /// Adds an action: once submitted, the server POSTs `payload` (JSON) to `action` until it
    /// answers 200. Actions cannot refuse (there is no compensation in a msg).
    pub fn add(self, action: impl Into<String>, payload: &impl Serialize) -> Self {
        match serde_json::to_string(payload) {
            Ok(body) => self.add_raw(action, body),
            Err(e) => {
                let mut msg = self.add_raw(action, String::new());
                let step = msg.steps.len();
                msg.bad_payload.get_or_insert((step, e.to_string()));
                msg
            }
        }
    }

    /// Adds an action whose body is already JSON text.
    pub fn add_raw(self, action: impl Into<String>, body: impl Into<String>) -> Self {
        self.add_bytes(action, body.into().into_bytes())
    }

    /// Adds an action with a body of raw bytes (any bytes over gRPC, UTF-8 text over HTTP; see
    /// [`Saga::add_bytes`](crate::Saga::add_bytes)).
    pub fn add_bytes(mut self, action: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        self.steps.push(Step {
            action: action.into(),
            compensate: None,
        });
        self.payloads.push(body.into());
        self
    }

    /// Adds an action for a gRPC branch (`host:port/pkg.Service/Method`) with `message` as its
    /// request.
    #[cfg(feature = "grpc")]
    pub fn add_message(self, action: impl Into<String>, message: &impl prost::Message) -> Self {
        self.add_bytes(action, message.encode_to_vec())
    }

    /// The URL the server GETs (`?gid=…&trans_type=msg&branch_id=00&op=msg`) when a prepared
    /// message times out — or, a `host:port/pkg.Service/Method`, calls over gRPC with that
    /// metadata; see [`BranchBarrier::query_prepared`] for its handler.
    pub fn query_prepared(mut self, url: impl Into<String>) -> Self {
        self.query_prepared = url.into();
        self
    }

    /// Call all actions in parallel instead of in order.
    pub fn concurrent(mut self, on: bool) -> Self {
        self.concurrent = on;
        self
    }

    /// The barrier table of [`Msg::do_and_submit`] (default `dtm_barrier.barrier`).
    pub fn barrier_table(mut self, table: BarrierTable) -> Self {
        self.barrier_table = table;
        self
    }

    option_setters!();

    /// The gid.
    pub fn gid(&self) -> &str {
        &self.gid
    }

    /// `POST prepare` (§3.2) with the actions and the query_prepared URL. Idempotent.
    pub async fn prepare(&self) -> Result<(), DtmError> {
        self.call("prepare").await
    }

    /// `POST submit` (§3.3): the server calls the actions. Works with or without a prepare.
    pub async fn submit(&self) -> Result<(), DtmError> {
        self.call("submit").await
    }

    /// `POST abort` (§3.4) of a prepared message: it fails, no action is called.
    pub async fn abort(&self) -> Result<(), DtmError> {
        self.call("abort").await
    }

    async fn call(&self, endpoint: &str) -> Result<(), DtmError> {
        if let Some((step, reason)) = &self.bad_payload {
            return Err(DtmError::invalid(format!("payload of step {step}"), reason));
        }
        let body = TransBody {
            steps: &self.steps,
            payloads: &self.payloads,
            query_prepared: &self.query_prepared,
            concurrent: self.concurrent,
            ..TransBody::new(&self.gid, "msg", &self.options)
        };
        self.client.trans(endpoint, &body).await
    }

    /// Prepare, run `busi` in a local transaction from `pool` behind the producer barrier
    /// (§8.4), then submit — or abort:
    /// - `busi` returns [`BranchError::Failure`]: rolled back, the message is aborted;
    /// - `busi` or the database fails otherwise: rolled back, and the producer's own barrier
    ///   table decides as queryPrepared would (committed after all → submit; not → abort; the
    ///   database cannot tell → the message stays prepared and the server asks queryPrepared
    ///   after its timeout);
    /// - the barrier row already existed (this gid's local transaction ran before, or a
    ///   queryPrepared already declared it rolled back): the business does not run again and
    ///   the message is submitted or aborted by the same rule.
    ///
    /// Returns `busi`'s value once the message is submitted; a submit that gets no answer is
    /// safe to leave, since the server then asks queryPrepared.
    pub async fn do_and_submit<T, F>(&self, pool: &Pool, busi: F) -> Result<T, DtmError>
    where
        F: for<'t> FnOnce(&'t mut Transaction<'static>) -> BoxFuture<'t, Result<T, BranchError>>,
    {
        if self.query_prepared.is_empty() {
            return Err(DtmError::invalid(
                "msg",
                "do_and_submit needs a query_prepared URL for the server to ask after a crash",
            ));
        }
        self.prepare().await?;
        let barrier =
            BranchBarrier::msg_producer(self.gid.clone()).with_table(self.barrier_table.clone());
        let result = match pool.start_transaction(TxOpts::default()).await {
            Ok(tx) => barrier.call(tx, busi).await,
            Err(e) => Err(BranchError::from(e)),
        };
        let error = match result {
            Ok(BarrierOutcome::Ran(v)) => {
                self.submit().await?;
                return Ok(v);
            }
            Ok(_) => BranchError::internal(
                "the producer barrier row of this gid already exists: its local transaction \
                 ran before or was declared rolled back by queryPrepared; the business did not run",
            ),
            Err(e) if e.is_failure() => {
                self.abort_after(&e).await;
                return Err(local(&self.gid, e, "the message was aborted"));
            }
            Err(e) => e,
        };
        match barrier.query_prepared(pool).await {
            Ok(()) => {
                self.submit().await?;
                Err(local(
                    &self.gid,
                    error,
                    "its local transaction had committed, so the message was submitted",
                ))
            }
            Err(e) if e.is_failure() => {
                self.abort_after(&e).await;
                Err(local(&self.gid, error, "the message was aborted"))
            }
            Err(_) => Err(local(
                &self.gid,
                error,
                "the message stays prepared: the server will ask query_prepared after its timeout",
            )),
        }
    }

    /// Abort after a local failure; if that fails too, the server's queryPrepared ends the
    /// message later, so it is only logged.
    async fn abort_after(&self, cause: &BranchError) {
        if let Err(e) = self.abort().await {
            tracing::warn!(gid = %self.gid, cause = %cause, error = %e,
                "msg abort failed; the server will ask query_prepared after its timeout");
        }
    }
}

fn local(gid: &str, source: BranchError, next: &'static str) -> DtmError {
    DtmError::Local {
        gid: gid.to_owned(),
        source,
        next,
    }
}
