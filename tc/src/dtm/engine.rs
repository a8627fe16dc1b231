//! [`DtmEngine`]: the operations behind DTM's endpoints and the processing rounds that drive
//! transactions forward, over a [`DtmStore`] and the [`BranchCaller`].
//!
//! Rules that keep it correct under failure:
//! - Every operation on a gid holds that gid's lock in this process ([`GidLocks`]), so one
//!   request or round works on a transaction at a time; other transactions never wait.
//! - Nothing is answered or acted on before it is stored: a decision (a new status, a branch
//!   outcome, the timers) is saved before the next branch call is made, so after a crash the
//!   transaction resumes from what it had decided and never, say, runs a saga forward again
//!   after its compensations started.
//! - Status changes are compare-and-set on the stored status; a round that loses (another
//!   TC or request moved the transaction) stops and leaves it to the winner.

use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use super::caller::{BranchCaller, Call};
use super::error::DtmError;
use super::locks::GidLocks;
use super::machine::{self, Defaults, Next, Outcome};
use super::model::{Branch, BranchChange, Op, TransRecord, TransStatus, TransType};
use super::schedule;
use crate::id::{now_ms, IdGenerator};
use crate::metrics::seata::{End, Mode};
use crate::metrics::{CallLabels, DtmMetrics, TypeLabel, TypeStatusLabels};
use crate::store::dtm::{BranchesAdded, Created, ListPage, ListQuery};
use crate::store::{DtmStore, SessionStore};

/// Most rounds the cron runs at once; more due transactions wait for the next tick.
const MAX_CONCURRENT_ROUNDS: usize = 256;

/// A branch registration, as `registerBranch` carries it (spec §3.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// `branch_id`.
    pub branch_id: String,
    /// `data`: body of the confirm/cancel (tcc) or commit/rollback (xa) calls (gRPC clients
    /// send binary protobuf here, so bytes rather than text).
    pub data: Vec<u8>,
    /// tcc: `confirm` URL.
    pub confirm: String,
    /// tcc: `cancel` URL.
    pub cancel: String,
    /// xa: `url`, the phase-two URL.
    pub url: String,
    /// `trans_type` as the client gave it (may be empty); must match the stored type.
    pub trans_type: String,
}

/// Whether a background round waits for its gid's lock or gives up when it is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    Wait,
    Skip,
}

/// How a round ended.
#[derive(Debug)]
struct RoundEnd {
    /// The transaction as the round left it (`None`: not stored).
    record: Option<TransRecord>,
    /// The answer that stopped the round, when one did.
    last: Option<Outcome>,
}

/// The DTM side of the coordinator.
#[derive(Debug)]
pub struct DtmEngine {
    store: Arc<dyn SessionStore>,
    caller: BranchCaller,
    locks: GidLocks,
    defaults: Defaults,
    ids: IdGenerator,
    metrics: Arc<DtmMetrics>,
    tracker: TaskTracker,
    token: CancellationToken,
    rounds: Arc<Semaphore>,
}

impl DtmEngine {
    /// An engine over `store`'s DTM tables. Background rounds run on `tracker` and stop when
    /// `token` is cancelled. `server_node` keeps generated gids apart across TCs.
    pub fn new(
        store: Arc<dyn SessionStore>,
        defaults: Defaults,
        server_node: u16,
        metrics: Arc<DtmMetrics>,
        tracker: TaskTracker,
        token: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        if store.dtm().is_none() {
            return Err("the configured store keeps no DTM transactions".into());
        }
        let timeout = std::time::Duration::from_secs(defaults.request_timeout_s.unsigned_abs());
        let caller = BranchCaller::new(timeout)
            .map_err(|e| format!("cannot build the HTTP client for branch calls: {e}"))?;
        Ok(Arc::new(DtmEngine {
            store,
            caller,
            locks: GidLocks::default(),
            defaults,
            ids: IdGenerator::new(server_node),
            metrics,
            tracker,
            token,
            rounds: Arc::new(Semaphore::new(MAX_CONCURRENT_ROUNDS)),
        }))
    }

    fn dtm(&self) -> Result<&dyn DtmStore, DtmError> {
        self.store
            .dtm()
            .ok_or_else(|| DtmError::Invalid("this store keeps no DTM transactions".into()))
    }

    /// Server defaults in force.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// A new unique gid: URL-safe, short enough for an XA gtrid with a branch id.
    pub fn new_gid(&self) -> String {
        base62(self.ids.next_id())
    }

    /// `prepare` (§3.2): creates the transaction `prepared`, idempotently.
    #[tracing::instrument(skip_all, fields(gid = %record.trans.gid))]
    pub async fn prepare(&self, mut record: TransRecord) -> Result<(), DtmError> {
        let gid = record.trans.gid.clone();
        let _held = self.locks.lock(&gid).await;
        let now = now_ms();
        record.trans.status = TransStatus::Prepared;
        stamp_new(&mut record, now, &self.defaults);
        match self.dtm()?.create(&record).await? {
            Created::New { .. } => {
                self.count_started(&record);
                debug!(gid, trans_type = %record.trans.trans_type, "prepared");
                Ok(())
            }
            Created::Exists(stored) if stored.trans.status == TransStatus::Prepared => Ok(()),
            Created::Exists(stored) => Err(DtmError::Failure(format!(
                "current status '{}', cannot prepare",
                stored.trans.status
            ))),
        }
    }

    /// `submit` (§3.3): creates the transaction `submitted`, or moves a prepared one there,
    /// then processes it (one round before answering when `wait`). A repeated submit
    /// re-drives the stored transaction (DTM re-drives the request's copy).
    #[tracing::instrument(skip_all, fields(gid = %record.trans.gid))]
    pub async fn submit(
        self: &Arc<Self>,
        mut record: TransRecord,
        wait: bool,
    ) -> Result<(), DtmError> {
        let gid = record.trans.gid.clone();
        let held = self.locks.lock(&gid).await;
        let store = self.dtm()?;
        let now = now_ms();
        // Create first: a saga (the common case) is new, and the store answers with the
        // stored copy when it is not, so a new transaction costs one store call.
        record.trans.status = TransStatus::Submitted;
        stamp_new(&mut record, now, &self.defaults);
        let stored = match store.create(&record).await? {
            Created::New { id } => {
                self.count_started(&record);
                debug!(gid, trans_type = %record.trans.trans_type, "submitted");
                // What was just stored is what a round would read back: skip that read.
                record.trans.id = id;
                return self.process(&gid, held, wait, false, Some(record)).await;
            }
            Created::Exists(s) => Some(*s),
        };
        if let Some(s) = stored {
            if s.trans.trans_type != record.trans.trans_type {
                return Err(DtmError::Failure(format!(
                    "transaction {gid} is a {} transaction, not {}",
                    s.trans.trans_type, record.trans.trans_type
                )));
            }
            match s.trans.status {
                TransStatus::Prepared => {
                    let mut t = s.trans.clone();
                    t.status = TransStatus::Submitted;
                    t.update_time = now;
                    schedule::on_progress(&mut t, now, &self.defaults);
                    if !store.save(&t, TransStatus::Prepared, &[]).await? {
                        return Err(self.conflict(&gid, "submit").await);
                    }
                    debug!(gid, trans_type = %t.trans_type, "submitted");
                }
                TransStatus::Submitted => debug!(gid, "submitted again: driving the stored state"),
                other => {
                    return Err(DtmError::Failure(format!(
                        "current status '{other}', cannot submit"
                    )))
                }
            }
        }
        // Read back by the round: a branch may have registered since `create` answered.
        self.process(&gid, held, wait, false, None).await
    }

    /// `abort` (§3.4): a prepared msg fails at once; a prepared or aborting tcc/xa turns
    /// to aborting and its cancels/rollbacks run. Decided on the stored type.
    #[tracing::instrument(skip_all, fields(gid = %gid))]
    pub async fn abort(
        self: &Arc<Self>,
        gid: &str,
        reason: &str,
        wait: bool,
    ) -> Result<(), DtmError> {
        let held = self.locks.lock(gid).await;
        let store = self.dtm()?;
        let Some(s) = store.get(gid).await? else {
            return Err(DtmError::NotFound(format!(
                "no TransGlobal with gid {gid} found"
            )));
        };
        let now = now_ms();
        let mut t = s.trans.clone();
        match (t.trans_type, t.status) {
            (TransType::Msg, TransStatus::Prepared) => {
                t.status = TransStatus::Failed;
                t.finish_time = now;
                t.rollback_time = now;
                t.update_time = now;
                if !reason.is_empty() {
                    t.rollback_reason = reason.to_owned();
                }
                if !store.save(&t, TransStatus::Prepared, &[]).await? {
                    return Err(self.conflict(gid, "abort").await);
                }
                self.count_finished(&t);
                info!(gid, "msg aborted");
                Ok(())
            }
            (TransType::Tcc | TransType::Xa, TransStatus::Prepared) => {
                t.status = TransStatus::Aborting;
                t.rollback_time = now;
                t.update_time = now;
                if !reason.is_empty() {
                    t.rollback_reason = reason.to_owned();
                }
                schedule::on_progress(&mut t, now, &self.defaults);
                if !store.save(&t, TransStatus::Prepared, &[]).await? {
                    return Err(self.conflict(gid, "abort").await);
                }
                info!(gid, trans_type = %t.trans_type, "aborting");
                self.process(gid, held, wait, true, None).await
            }
            (TransType::Tcc | TransType::Xa, TransStatus::Aborting) => {
                self.process(gid, held, wait, true, None).await
            }
            (ty, status) => Err(DtmError::Failure(format!(
                "current status '{status}' of a {ty} transaction, cannot abort"
            ))),
        }
    }

    /// `registerBranch` (§3.5): adds a tcc or xa branch's phase-two ops while prepared.
    #[tracing::instrument(skip_all, fields(gid = %gid, branch_id = %reg.branch_id))]
    pub async fn register(&self, gid: &str, reg: &Registration) -> Result<(), DtmError> {
        let _held = self.locks.lock(gid).await;
        let store = self.dtm()?;
        let not_prepared =
            || DtmError::Failure(format!("no trans with gid: {gid} status: prepared found"));
        let Some(s) = store.get(gid).await? else {
            return Err(not_prepared());
        };
        if s.trans.status != TransStatus::Prepared {
            return Err(not_prepared());
        }
        let stored_type = s.trans.trans_type;
        if !reg.trans_type.is_empty() && reg.trans_type != stored_type.as_str() {
            return Err(DtmError::Invalid(format!(
                "registerBranch says trans_type {:?}, but {gid} is a {stored_type} transaction",
                reg.trans_type
            )));
        }
        let now = now_ms();
        let data = reg.data.clone();
        let op = |op: Op, url: &str| {
            Branch::new(reg.branch_id.clone(), op, url.to_owned(), data.clone(), now)
        };
        let required = |field: &str, v: &str| {
            if v.is_empty() {
                Err(DtmError::Invalid(format!(
                    "registerBranch of a {} transaction needs {field}",
                    s.trans.trans_type
                )))
            } else {
                Ok(())
            }
        };
        let rows = match s.trans.trans_type {
            TransType::Tcc => {
                required("confirm", &reg.confirm)?;
                required("cancel", &reg.cancel)?;
                vec![op(Op::Cancel, &reg.cancel), op(Op::Confirm, &reg.confirm)]
            }
            TransType::Xa => {
                required("url", &reg.url)?;
                vec![op(Op::Rollback, &reg.url), op(Op::Commit, &reg.url)]
            }
            other => {
                return Err(DtmError::Invalid(format!(
                    "registerBranch is for tcc and xa transactions; {gid} is a {other} transaction"
                )))
            }
        };
        match store.add_branches(gid, &rows).await? {
            BranchesAdded::Added => {
                debug!(gid, branch_id = reg.branch_id, "branch registered");
                Ok(())
            }
            BranchesAdded::Identical => Ok(()),
            BranchesAdded::Conflict { branch_id } => Err(DtmError::Failure(format!(
                "branch {branch_id} of {gid} is registered already with another url or data"
            ))),
            BranchesAdded::NotPrepared(_) => Err(not_prepared()),
        }
    }

    /// `query` (§3.6).
    pub async fn query(&self, gid: &str) -> Result<Option<TransRecord>, DtmError> {
        Ok(self.dtm()?.get(gid).await?)
    }

    /// `all` (§3.7).
    pub async fn list(&self, q: &ListQuery) -> Result<ListPage, DtmError> {
        Ok(self.dtm()?.list(q).await?)
    }

    /// `forceStop` (§3.8): marks an unfinished transaction failed without compensating.
    #[tracing::instrument(skip_all, fields(gid = %gid))]
    pub async fn force_stop(&self, gid: &str) -> Result<(), DtmError> {
        let _held = self.locks.lock(gid).await;
        let store = self.dtm()?;
        let Some(s) = store.get(gid).await? else {
            return Err(DtmError::NotFound(format!(
                "no TransGlobal with gid {gid} found"
            )));
        };
        if s.trans.status.is_finished() {
            return Err(DtmError::Failure(format!(
                "current status '{}', cannot forceStop",
                s.trans.status
            )));
        }
        let now = now_ms();
        let mut t = s.trans.clone();
        t.status = TransStatus::Failed;
        t.finish_time = now;
        t.update_time = now;
        t.rollback_reason = "force stopped by an operator".into();
        if !store.save(&t, s.trans.status, &[]).await? {
            return Err(self.conflict(gid, "forceStop").await);
        }
        self.count_finished(&t);
        warn!(gid, "force stopped: no compensation was run");
        Ok(())
    }

    /// An operator's delete (admin API): forgets a finished transaction before the purge
    /// would. `false` when it is not stored; a [`DtmError::Failure`] when it is not finished.
    pub async fn delete_finished(&self, gid: &str) -> Result<bool, DtmError> {
        let _held = self.locks.lock(gid).await;
        let store = self.dtm()?;
        let Some(s) = store.get(gid).await? else {
            return Ok(false);
        };
        if !s.trans.status.is_finished() {
            return Err(DtmError::Failure(format!(
                "current status '{}': only finished transactions can be deleted",
                s.trans.status
            )));
        }
        Ok(store.remove_finished(gid).await?)
    }

    /// `resetNextCronTime` (§3.8): look at the transaction now.
    pub async fn reset_next_cron_time(self: &Arc<Self>, gid: &str) -> Result<(), DtmError> {
        let held = self.locks.lock(gid).await;
        let store = self.dtm()?;
        let Some(s) = store.get(gid).await? else {
            return Err(DtmError::NotFound(format!(
                "no TransGlobal with gid {gid} found"
            )));
        };
        if s.trans.status.is_finished() {
            return Ok(());
        }
        let mut t = s.trans.clone();
        t.next_cron_time = now_ms();
        if !store.save(&t, s.trans.status, &[]).await? {
            return Err(self.conflict(gid, "resetNextCronTime").await);
        }
        self.process(gid, held, false, false, None).await
    }

    /// `resetCronTime` (§3.8): brings forward up to `limit` unfinished transactions whose
    /// next look is more than `timeout_s` away. Returns how many were brought forward and
    /// whether more remain.
    pub async fn reset_cron_time(
        self: &Arc<Self>,
        timeout_s: i64,
        limit: usize,
    ) -> Result<(usize, bool), DtmError> {
        let after = now_ms().saturating_add(timeout_s.saturating_mul(1000));
        let far = self
            .dtm()?
            .scheduled_after(after, limit.saturating_add(1))
            .await?;
        let has_remaining = far.len() > limit;
        let mut done = 0;
        for gid in far.iter().take(limit) {
            match self.reset_next_cron_time(gid).await {
                Ok(()) => done += 1,
                Err(e) => debug!(gid, error = %e, "resetCronTime skipped a transaction"),
            }
        }
        Ok((done, has_remaining))
    }

    fn count_started(&self, record: &TransRecord) {
        crate::metrics::seata().begun(Mode::of_dtm(record.trans.trans_type.as_str()));
        self.metrics
            .started
            .get_or_create(&TypeLabel {
                trans_type: record.trans.trans_type.as_str().into(),
            })
            .inc();
    }

    fn count_finished(&self, trans: &super::model::Trans) {
        let end = match trans.status.as_str() {
            "succeed" => End::Committed,
            _ => End::RolledBack,
        };
        crate::metrics::seata().finished(Mode::of_dtm(trans.trans_type.as_str()), end);
        self.metrics
            .finished
            .get_or_create(&TypeStatusLabels {
                trans_type: trans.trans_type.as_str().into(),
                status: trans.status.as_str().into(),
            })
            .inc();
    }

    fn count_call(&self, op: Op, outcome: &Outcome) {
        let outcome = match outcome {
            Outcome::Success => "success",
            Outcome::Failure(_) => "failure",
            Outcome::Ongoing(_) => "ongoing",
            Outcome::Error(_) => "error",
        };
        self.metrics
            .branch_calls
            .get_or_create(&CallLabels {
                op: op.as_str().into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The 409 for a compare-and-set that lost, naming the status found.
    async fn conflict(&self, gid: &str, what: &str) -> DtmError {
        let current = match self.dtm() {
            Ok(s) => s.get(gid).await.ok().flatten().map(|r| r.trans.status),
            Err(_) => None,
        };
        match current {
            Some(s) => DtmError::Failure(format!("current status '{s}', cannot {what}")),
            None => DtmError::Failure(format!("no transaction {gid}, cannot {what}")),
        }
    }

    /// Runs a round now (holding `held`) and answers per `wait_result` (§5.6), or answers at
    /// once and leaves the round to a background task. `known`: the stored record, when the
    /// caller has exactly what the store holds.
    async fn process(
        self: &Arc<Self>,
        gid: &str,
        held: super::locks::GidGuard<'_>,
        wait: bool,
        aborting: bool,
        known: Option<TransRecord>,
    ) -> Result<(), DtmError> {
        if !wait {
            drop(held);
            self.spawn_round(gid.to_owned(), known, Lock::Wait);
            return Ok(());
        }
        let end = self.round(gid, known).await?;
        drop(held);
        wait_answer(&end, aborting)
    }

    /// Starts a round in the background. After an API change (`Lock::Wait`) the round waits
    /// for the gid's lock, so a request queued on the same gid cannot make it skip the work;
    /// the cron (`Lock::Skip`) leaves a gid that is being worked on to that work.
    fn spawn_round(self: &Arc<Self>, gid: String, known: Option<TransRecord>, lock: Lock) {
        let engine = self.clone();
        let token = self.token.clone();
        let span = tracing::info_span!("dtm_round", gid = %gid);
        self.tracker.spawn(
            async move {
                let Ok(_permit) = engine.rounds.clone().acquire_owned().await else {
                    return;
                };
                let _held = match lock {
                    Lock::Wait => engine.locks.lock(&gid).await,
                    Lock::Skip => match engine.locks.try_lock(&gid) {
                        Some(held) => held,
                        None => return,
                    },
                };
                tokio::select! {
                    _ = token.cancelled() => {}
                    r = engine.round(&gid, known) => {
                        if let Err(e) = r {
                            warn!(gid, error = %e, "processing round failed; the cron retries it");
                        }
                    }
                }
            }
            .instrument(span),
        );
    }

    /// One cron pass: starts a round for every due transaction this process is not already
    /// working on. Returns how many were due.
    pub async fn run_due(self: &Arc<Self>, now_ms: i64) -> Result<usize, DtmError> {
        let due = self.dtm()?.due(now_ms, MAX_CONCURRENT_ROUNDS).await?;
        let n = due.len();
        for gid in due {
            self.spawn_round(gid, None, Lock::Skip);
        }
        Ok(n)
    }

    /// Forgets finished transactions past retention.
    pub async fn purge(&self, finished_before_ms: i64, keep_max: usize) -> Result<usize, DtmError> {
        Ok(self.dtm()?.purge(finished_before_ms, keep_max).await?)
    }

    /// One processing round (§5.6): decides, saves, calls, until the transaction is finished,
    /// waits for a time, or a call did not succeed. The caller holds the gid's lock.
    async fn round(&self, gid: &str, known: Option<TransRecord>) -> Result<RoundEnd, DtmError> {
        self.metrics.rounds.inc();
        let store = self.dtm()?;
        let stored = match known {
            Some(r) => Some(r),
            None => store.get(gid).await?,
        };
        let Some(mut rec) = stored else {
            return Ok(RoundEnd {
                record: None,
                last: None,
            });
        };
        let d = self.defaults;
        let mut expect = rec.trans.status;
        let mut changes: Vec<BranchChange> = Vec::new();
        let mut dirty = false;
        let mut last = None;
        loop {
            let now = now_ms();
            match machine::next(&rec, now, &d) {
                Next::Done => break,
                Next::Idle => {
                    schedule::on_wait(&mut rec.trans, i64::MAX, now, &d);
                    dirty = true;
                    break;
                }
                Next::WaitUntil(at) => {
                    schedule::on_wait(&mut rec.trans, at, now, &d);
                    dirty = true;
                    break;
                }
                Next::Transition { to, reason } => {
                    transition(&mut rec, to, reason, now, &d);
                    dirty = true;
                }
                Next::QueryPrepared => {
                    if dirty && !self.flush(&mut rec, &mut expect, &mut changes).await? {
                        return self.lost(gid).await;
                    }
                    let outcome = self.caller.call(Call::query_prepared(&rec.trans)).await;
                    self.count_call(Op::Msg, &outcome);
                    let now = now_ms();
                    match outcome {
                        Outcome::Success => {
                            transition(&mut rec, TransStatus::Submitted, None, now, &d)
                        }
                        Outcome::Failure(text) => {
                            transition(&mut rec, TransStatus::Failed, Some(text), now, &d)
                        }
                        other => {
                            info!(
                                gid,
                                answer = other.message(),
                                "queryPrepared not decided; asking again later"
                            );
                            schedule::on_not_done(&mut rec.trans, &other, now, &d);
                            last = Some(other);
                            dirty = true;
                            break;
                        }
                    }
                    dirty = true;
                }
                // Nothing runnable (e.g. saga orders that wait on each other): look again
                // after an interval rather than at every cron tick.
                Next::Call(ops) if ops.is_empty() => {
                    schedule::on_wait(&mut rec.trans, i64::MAX, now, &d);
                    dirty = true;
                    break;
                }
                Next::Call(ops) => {
                    if dirty && !self.flush(&mut rec, &mut expect, &mut changes).await? {
                        return self.lost(gid).await;
                    }
                    dirty = false;
                    let calls = ops.iter().filter_map(|&i| {
                        rec.branches
                            .get(i)
                            .map(|b| self.caller.call(Call::branch(&rec.trans, b)))
                    });
                    let outcomes = join_all(calls).await;
                    let now = now_ms();
                    let mut failed_forward = false;
                    let mut not_done = None;
                    for (&i, o) in ops.iter().zip(outcomes) {
                        if let Some(b) = rec.branches.get(i) {
                            self.count_call(b.op, &o);
                        }
                        if machine::apply(&mut rec, i, &o, now) {
                            if let Some(b) = rec.branches.get(i) {
                                failed_forward |= b.status == super::model::BranchStatus::Failed;
                                changes.push(BranchChange {
                                    branch_id: b.branch_id.clone(),
                                    op: b.op,
                                    status: b.status,
                                    time_ms: now,
                                });
                            }
                            dirty = true;
                        }
                        if !o.is_success() {
                            if let Some(b) = rec.branches.get(i) {
                                info!(gid, branch_id = b.branch_id, op = %b.op, answer = o.message(), "branch call not done");
                            }
                            not_done.get_or_insert(o);
                        }
                    }
                    match not_done {
                        // A saga action said FAILURE: that is progress (to aborting).
                        Some(_) if failed_forward => {}
                        Some(o) => {
                            schedule::on_not_done(&mut rec.trans, &o, now, &d);
                            last = Some(o);
                            dirty = true;
                            break;
                        }
                        None => {}
                    }
                }
            }
        }
        if dirty && !self.flush(&mut rec, &mut expect, &mut changes).await? {
            return self.lost(gid).await;
        }
        Ok(RoundEnd {
            record: Some(rec),
            last,
        })
    }

    /// Saves the round's decisions; `false` when another writer moved the transaction.
    async fn flush(
        &self,
        rec: &mut TransRecord,
        expect: &mut TransStatus,
        changes: &mut Vec<BranchChange>,
    ) -> Result<bool, DtmError> {
        rec.trans.update_time = now_ms();
        let saved = self.dtm()?.save(&rec.trans, *expect, changes).await?;
        changes.clear();
        if saved {
            let to = rec.trans.status;
            if to.is_finished() && *expect != to {
                self.count_finished(&rec.trans);
            }
            if matches!(to, TransStatus::Aborting | TransStatus::Failed) && *expect != to {
                info!(gid = rec.trans.gid, from = %expect, %to, reason = rec.trans.rollback_reason, "rolling back");
            } else if *expect != to {
                debug!(gid = rec.trans.gid, from = %expect, %to, "status changed");
            }
            *expect = rec.trans.status;
        }
        Ok(saved)
    }

    /// The end of a round that lost a compare-and-set: what is stored now.
    async fn lost(&self, gid: &str) -> Result<RoundEnd, DtmError> {
        debug!(
            gid,
            "another writer moved the transaction; this round stops"
        );
        Ok(RoundEnd {
            record: self.dtm()?.get(gid).await?,
            last: None,
        })
    }
}

/// Stamps a transaction being created at `now`.
fn stamp_new(record: &mut TransRecord, now: i64, d: &Defaults) {
    let t = &mut record.trans;
    t.create_time = now;
    t.update_time = now;
    schedule::on_create(t, now, d);
    for b in &mut record.branches {
        b.create_time = now;
        b.update_time = now;
    }
}

/// Applies a status change and its times.
fn transition(
    rec: &mut TransRecord,
    to: TransStatus,
    reason: Option<String>,
    now: i64,
    d: &Defaults,
) {
    let t = &mut rec.trans;
    t.status = to;
    if let Some(r) = reason {
        t.rollback_reason = r;
    }
    if matches!(to, TransStatus::Aborting | TransStatus::Failed) && t.rollback_time == 0 {
        t.rollback_time = now;
    }
    if to.is_finished() {
        t.finish_time = now;
    }
    schedule::on_progress(t, now, d);
}

/// The answer of a submit/abort with `wait_result` (§5.6), with our deviation: a
/// transaction still being retried is ONGOING (425), not FAILURE.
fn wait_answer(end: &RoundEnd, aborting: bool) -> Result<(), DtmError> {
    let Some(rec) = &end.record else {
        return Err(DtmError::Failure(
            "the transaction is no longer stored".into(),
        ));
    };
    let t = &rec.trans;
    let still = || {
        let why = end.last.as_ref().map(Outcome::message).unwrap_or("");
        DtmError::Ongoing(if why.is_empty() {
            format!("transaction is {}; it is still being processed", t.status)
        } else {
            format!("transaction is {} and being retried: {why}", t.status)
        })
    };
    let failed = || {
        DtmError::Failure(if t.rollback_reason.is_empty() {
            "wait result not return success".into()
        } else {
            t.rollback_reason.clone()
        })
    };
    match (t.status, aborting) {
        (TransStatus::Succeed, _) | (TransStatus::Failed, true) => Ok(()),
        (TransStatus::Failed, false) | (TransStatus::Aborting, false) => Err(failed()),
        _ => Err(still()),
    }
}

/// `n` in base 62 (digits, upper, lower case): short and URL-safe.
fn base62(mut n: i64) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(11);
    loop {
        let d = usize::try_from(n.rem_euclid(62)).unwrap_or(0);
        out.push(DIGITS.get(d).copied().unwrap_or(b'0'));
        n = n.div_euclid(62);
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_are_short_url_safe_and_distinct() {
        assert_eq!(base62(0), "0");
        assert_eq!(base62(61), "z");
        assert_eq!(base62(62), "10");
        let g = base62(i64::MAX);
        assert!(g.len() <= 11 && g.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    fn end(status: TransStatus, last: Option<Outcome>) -> RoundEnd {
        let mut r = crate::dtm::machine::test_support::record(TransType::Saga, status);
        r.trans.rollback_reason = "url:x return failed".into();
        RoundEnd {
            record: Some(r),
            last,
        }
    }

    #[test]
    fn wait_result_answers_failure_only_for_failed_transactions() {
        assert!(wait_answer(&end(TransStatus::Succeed, None), false).is_ok());
        assert!(matches!(
            wait_answer(&end(TransStatus::Failed, None), false),
            Err(DtmError::Failure(m)) if m == "url:x return failed"
        ));
        assert!(matches!(
            wait_answer(&end(TransStatus::Submitted, Some(Outcome::Error("500".into()))), false),
            Err(DtmError::Ongoing(m)) if m.contains("500")
        ));
        assert!(
            wait_answer(&end(TransStatus::Failed, None), true).is_ok(),
            "abort reached its goal"
        );
        assert!(matches!(
            wait_answer(&end(TransStatus::Aborting, None), true),
            Err(DtmError::Ongoing(_))
        ));
    }
}
