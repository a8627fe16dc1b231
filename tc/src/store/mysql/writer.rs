//! Group commit: every write of the db store goes through one of a few writer tasks, each
//! with its own connection and a bounded queue. A writer takes everything queued (up to
//! [`MAX_BATCH`] units), runs it as one DB transaction (`batch.rs`), commits once, and only
//! then answers each unit, so a write still resolves only once it is durable, while
//! concurrent writes share one commit (and one log flush) instead of paying one each.
//!
//! A unit goes to the writer chosen by its XID, so all writes of one global transaction meet
//! in one queue, in the order they were issued, and two writers never touch the same
//! `global_table`, `branch_table` or lease rows at once (the coordinator issues a session's
//! next write only once the previous one was answered). Writers can still wait on each other
//! over `lock_table` rows that two transactions both want; InnoDB breaks a cycle by rolling one
//! batch back with a deadlock error, and that writer runs the batch again
//! ([`BATCH_RETRIES`]), then, if it still fails, each unit on its own, where a deadlock of a
//! register is a lock conflict as for a single register. A batch that fails for any other
//! reason before COMMIT is also split, so one bad unit gets its own error and the others go
//! through. A connection lost mid-batch is answered with an error to every unit (the server
//! rolled the batch back). A failed COMMIT is not run again (that could report a decision as
//! lost that was in fact taken): the writer reads back whether it happened (`resolve.rs`)
//! and answers accordingly.
//!
//! Removals (of a branch, of a finished global transaction) go to a writer of their own.
//! They are never what a client waits for in the common AT case (the async-commit job issues
//! them, by the hundred per tick), and a batch of hundreds of multi-table deletes would hold
//! up the begins, registers and decisions queued behind it. A removal only follows the
//! session's earlier writes, which were answered (so committed) before it was issued, so it
//! needs no ordering with the other writers; if one of its deletes and a register of another
//! transaction wait on each other over a lock row, InnoDB's deadlock error makes one side
//! run its batch again.
//!
//! Commits are pipelined: a writer has up to [`CONNECTIONS`] connections, and while one
//! batch's COMMIT waits for the log flush (the larger part of a batch's time), the writer
//! already runs the next batch's statements on another connection. A unit only waits for
//! batches that were running before it was queued; it never depends on their outcome, since
//! the coordinator awaits each write before it issues the next one of the same session.
//! A later batch can wait on an earlier one's uncommitted rows, never the reverse (a batch
//! that is committing waits for nothing), so pipelining adds no deadlock.
//!
//! Shutdown: [`Writers::close`] stops intake, and each writer finishes what is queued.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::batch::{after_commit, apply, Answers};
use super::lease::Leases;
use super::locks::conflict_on;
use super::unit::{Op, Outcome};
use super::{db, is_lock_contention, resolve, server_code, StepError};
use crate::metrics::seata::StoreStatement;
use crate::store::{BranchAdded, StoreError};

/// Units per DB transaction at most. Bounds the statements' sizes (and so the number of
/// distinct prepared statements a writer caches).
const MAX_BATCH: usize = 128;
/// Connections per writer: one runs a batch's statements while the others commit.
const CONNECTIONS: usize = 3;
/// Units waiting per writer before callers wait to queue (back-pressure).
const QUEUE: usize = 1024;
/// Runs of a batch that InnoDB chose as a deadlock victim, before it is split.
const BATCH_RETRIES: usize = 3;
/// Runs of a single unit that keeps losing deadlocks.
const SINGLE_RETRIES: usize = 3;
/// MariaDB/MySQL's ER_LOCK_DEADLOCK: the whole DB transaction was rolled back.
const DEADLOCK: u16 = 1213;
/// Prepared statements a writer connection keeps: multi-row statements differ by their row
/// count, so a busy writer uses a few hundred shapes; an evicted one costs a re-prepare.
/// Bounded because the server caps prepared statements over all connections
/// (`max_prepared_stmt_count`, 16,382 by default), which several TCs share.
const STMT_CACHE: usize = 512;

/// Group commits done and the units they carried, for the shutdown log.
#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    units: AtomicU64,
    retried: AtomicU64,
    split: AtomicU64,
    /// Time spent running batches' statements, and waiting for their COMMITs, µs.
    statements_us: AtomicU64,
    commit_us: AtomicU64,
}

/// A unit with the caller waiting on it.
struct Unit {
    op: Op,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// Handle to the writer tasks.
#[derive(Debug)]
pub(super) struct Writers {
    queues: Vec<mpsc::Sender<Unit>>,
    token: CancellationToken,
    tracker: TaskTracker,
    stats: Arc<Stats>,
}

impl Writers {
    /// Starts `count` writers (at least one) and the removals' writer. Each connects once
    /// now, so a bad URL fails the start-up, and opens its other connections when it first
    /// needs them.
    pub(super) async fn start(
        opts: Opts,
        leases: Arc<Leases>,
        count: usize,
    ) -> Result<Self, StoreError> {
        let mut init = opts.init().to_vec();
        // Every statement then opens a DB transaction that lasts until COMMIT or ROLLBACK,
        // which saves a round trip per batch.
        init.push("SET SESSION autocommit = 0".to_owned());
        let opts: Opts = mysql_async::OptsBuilder::from_opts(opts)
            .init(init)
            .stmt_cache_size(STMT_CACHE)
            .into();
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let stats = Arc::new(Stats::default());
        let mut queues = Vec::with_capacity(count.max(1) + 1);
        for _ in 0..count.max(1) + 1 {
            let conn = Conn::new(opts.clone()).await.map_err(db)?;
            let (tx, rx) = mpsc::channel(QUEUE);
            let writer = Writer {
                rx,
                idle: vec![conn],
                committing: FuturesUnordered::new(),
                opts: opts.clone(),
                leases: leases.clone(),
                stats: stats.clone(),
                tracker: tracker.clone(),
            };
            tracker.spawn(writer.run(token.clone()));
            queues.push(tx);
        }
        Ok(Writers {
            queues,
            token,
            tracker,
            stats,
        })
    }

    /// Queues `op` on its writer and waits until its batch committed.
    pub(super) async fn submit(&self, op: Op) -> Result<Outcome, StoreError> {
        // The last queue is the removals' writer (see the module doc).
        let main = self.queues.len().saturating_sub(1);
        let i = if op.is_removal() {
            main
        } else {
            shard(op.xid(), main)
        };
        let queue = self
            .queues
            .get(i)
            .ok_or_else(|| StoreError::Backend("db store has no writer".into()))?;
        let (reply, answer) = oneshot::channel();
        queue.send(Unit { op, reply }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Stops intake and waits for the writers to finish what they hold.
    pub(super) async fn close(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let commits = self.stats.commits.load(Ordering::Relaxed);
        let units = self.stats.units.load(Ordering::Relaxed);
        info!(
            commits,
            units,
            units_per_commit = format!("{:.2}", units as f64 / commits.max(1) as f64),
            retried = self.stats.retried.load(Ordering::Relaxed),
            split = self.stats.split.load(Ordering::Relaxed),
            statements_ms_per_commit = format!(
                "{:.2}",
                self.stats.statements_us.load(Ordering::Relaxed) as f64
                    / 1e3
                    / commits.max(1) as f64
            ),
            commit_ms_per_commit = format!(
                "{:.2}",
                self.stats.commit_us.load(Ordering::Relaxed) as f64 / 1e3 / commits.max(1) as f64
            ),
            "db store writers stopped"
        );
    }
}

fn closed() -> StoreError {
    StoreError::Backend("db store is closed (the TC is shutting down)".into())
}

/// The writer of `xid` (FNV-1a, stable within the process).
fn shard(xid: &str, writers: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in xid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % writers.max(1) as u64).unwrap_or(0)
}

/// Why a batch's statements did not run to the end.
enum Failure {
    /// Rolled back: running the units again is safe.
    RolledBack(StepError),
    /// The connection broke: the outcome is unknown.
    Unknown(StoreError),
}

/// A batch whose statements ran, after its COMMIT: the connection back (`None` if it broke).
struct Committed {
    conn: Option<Conn>,
    ops: Vec<Op>,
    replies: Vec<oneshot::Sender<Result<Outcome, StoreError>>>,
    answers: Answers,
    result: Result<(), mysql_async::Error>,
}

struct Writer {
    rx: mpsc::Receiver<Unit>,
    /// Connections not in use.
    idle: Vec<Conn>,
    /// COMMITs in flight, each on its own connection.
    committing: FuturesUnordered<JoinHandle<Committed>>,
    opts: Opts,
    leases: Arc<Leases>,
    stats: Arc<Stats>,
    tracker: TaskTracker,
}

impl Writer {
    async fn run(mut self, token: CancellationToken) {
        let mut closing = false;
        let mut drained = false;
        while !(drained && self.committing.is_empty()) {
            let free = !self.idle.is_empty() || self.committing.len() + 1 < CONNECTIONS;
            tokio::select! {
                Some(done) = self.committing.next(), if !self.committing.is_empty() => {
                    self.finish(done);
                }
                unit = self.rx.recv(), if free && !drained => {
                    let Some(first) = unit else {
                        drained = true;
                        continue;
                    };
                    let mut units = vec![first];
                    while units.len() < MAX_BATCH {
                        match self.rx.try_recv() {
                            Ok(u) => units.push(u),
                            Err(_) => break,
                        }
                    }
                    self.process(units).await;
                }
                () = token.cancelled(), if !closing => {
                    // Refuse new units; those queued are still received and written.
                    closing = true;
                    self.rx.close();
                }
            }
        }
        for conn in self.idle.drain(..) {
            if let Err(e) = conn.disconnect().await {
                debug!(error = %e, "db store writer connection did not close cleanly");
            }
        }
    }

    /// Answers the units of a batch whose COMMIT returned.
    fn finish(&mut self, done: Result<Committed, tokio::task::JoinError>) {
        let Ok(done) = done else {
            // The commit task panicked or was cancelled: its units got no answer, and their
            // callers see the store as closed.
            warn!("db store commit task ended abnormally");
            return;
        };
        if let Some(conn) = done.conn {
            self.idle.push(conn);
        }
        match done.result {
            Ok(()) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .units
                    .fetch_add(done.ops.len() as u64, Ordering::Relaxed);
                after_commit(&done.ops, &done.answers, &self.leases);
                for (reply, answer) in done.replies.into_iter().zip(done.answers) {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                // The outcome is unknown: running the batch again could, say, report a
                // decision as lost that was in fact taken. Read back what became of it
                // (`resolve.rs`) and answer that.
                warn!(error = %e, units = done.ops.len(), "db store COMMIT failed; finding out whether its writes happened");
                let (opts, leases) = (self.opts.clone(), self.leases.clone());
                self.tracker.spawn(async move {
                    let found = resolve::committed(&opts, &done.ops, &done.answers, &leases).await;
                    match found {
                        Some(true) => {
                            after_commit(&done.ops, &done.answers, &leases);
                            for (reply, answer) in done.replies.into_iter().zip(done.answers) {
                                let _ = reply.send(answer);
                            }
                        }
                        Some(false) => {
                            for reply in done.replies {
                                let _ = reply.send(Err(db_message(&e)));
                            }
                        }
                        None => {
                            for reply in done.replies {
                                let _ = reply.send(Err(StoreError::Backend(format!(
                                    "database: {e}; whether the write happened is unknown"
                                ))));
                            }
                        }
                    }
                });
            }
        }
    }

    /// A connection for the next batch: an idle one, a new one, or the next to finish
    /// committing.
    async fn connection(&mut self) -> Result<Conn, StoreError> {
        loop {
            if let Some(conn) = self.idle.pop() {
                return Ok(conn);
            }
            if self.committing.len() + 1 < CONNECTIONS {
                return Conn::new(self.opts.clone()).await.map_err(db);
            }
            match self.committing.next().await {
                Some(done) => self.finish(done),
                None => return Conn::new(self.opts.clone()).await.map_err(db),
            }
        }
    }

    /// Runs `units` as one batch and starts its COMMIT, retrying or splitting it as the
    /// module doc says; every unit is answered, now or when its COMMIT returns.
    async fn process(&mut self, units: Vec<Unit>) {
        let mut work: Vec<(Vec<Unit>, usize)> = vec![(units, 0)];
        while let Some((units, tries)) = work.pop() {
            let (ops, replies): (Vec<Op>, Vec<_>) =
                units.into_iter().map(|u| (u.op, u.reply)).unzip();
            let mut conn = match self.connection().await {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(error = %e, "db store writer cannot connect");
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Backend(e.to_string())));
                    }
                    continue;
                }
            };
            let started = std::time::Instant::now();
            let ran = run_statements(&mut conn, &ops, &self.leases).await;
            self.stats
                .statements_us
                .fetch_add(elapsed_us(started), Ordering::Relaxed);
            crate::metrics::seata().statement(StoreStatement::WriteBatch, started.elapsed());
            match ran {
                Ok(answers) => {
                    let stats = self.stats.clone();
                    let commit = async move {
                        let started = std::time::Instant::now();
                        let result = conn.query_drop("COMMIT").await;
                        stats
                            .commit_us
                            .fetch_add(elapsed_us(started), Ordering::Relaxed);
                        crate::metrics::seata()
                            .statement(StoreStatement::Commit, started.elapsed());
                        let conn = match &result {
                            Err(e) if server_code(e).is_none() => None,
                            _ => Some(conn),
                        };
                        Committed {
                            conn,
                            ops,
                            replies,
                            answers,
                            result,
                        }
                    };
                    self.committing.push(self.tracker.spawn(commit));
                }
                Err(Failure::Unknown(e)) if tries == 0 => {
                    // Nothing was committed (no COMMIT was sent), so running the batch again
                    // is safe. A connection the server closed while it sat idle (killed, or
                    // the server restarted) fails like this on its next use: without the
                    // retry, every idle connection costs one failed batch after a blip.
                    // The idle ones most likely went the same way: open fresh ones.
                    self.idle.clear();
                    info!(error = %e, units = ops.len(), "db store connection lost before COMMIT; running the batch again on a new connection");
                    let units = ops
                        .into_iter()
                        .zip(replies)
                        .map(|(op, reply)| Unit { op, reply });
                    work.push((units.collect(), tries + 1));
                }
                Err(Failure::Unknown(e)) => {
                    warn!(error = %e, units = ops.len(), "db store connection failed mid-batch; its writes did not commit");
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Backend(e.to_string())));
                    }
                }
                Err(Failure::RolledBack(e)) => {
                    self.idle.push(conn);
                    let deadlock =
                        matches!(&e, StepError::Db(d) if server_code(d) == Some(DEADLOCK));
                    let single = ops.len() == 1;
                    let limit = if single {
                        SINGLE_RETRIES
                    } else {
                        BATCH_RETRIES
                    };
                    let units = ops
                        .into_iter()
                        .zip(replies)
                        .map(|(op, reply)| Unit { op, reply });
                    if deadlock && tries + 1 < limit {
                        self.stats.retried.fetch_add(1, Ordering::Relaxed);
                        work.push((units.collect(), tries + 1));
                    } else if !single {
                        debug!(error = ?e, "db store batch rolled back; writing its units one by one");
                        self.stats.split.fetch_add(1, Ordering::Relaxed);
                        work.extend(units.map(|u| (vec![u], 0)));
                    } else if let Some(u) = units.into_iter().next() {
                        let _ = u.reply.send(single_failure(&u.op, e));
                    }
                }
            }
        }
    }
}

fn elapsed_us(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn db_message(e: &mysql_async::Error) -> StoreError {
    StoreError::Backend(format!("database: {e}"))
}

/// Runs `ops` on `conn` (autocommit off, so inside one DB transaction) up to, not including,
/// COMMIT; rolls back on failure. `Err(Unknown)`: drop the connection.
async fn run_statements(conn: &mut Conn, ops: &[Op], leases: &Leases) -> Result<Answers, Failure> {
    match apply(conn, ops, leases).await {
        Ok(answers) => Ok(answers),
        Err(StepError::Db(e)) if server_code(&e).is_none() => {
            // The connection broke mid-batch; the server rolls back what it had.
            Err(Failure::Unknown(db(e)))
        }
        Err(e) => match conn.query_drop("ROLLBACK").await {
            Ok(()) => Err(Failure::RolledBack(e)),
            Err(r) => {
                warn!(error = %r, "db store could not roll a batch back; reconnecting");
                Err(Failure::Unknown(e.into_store()))
            }
        },
    }
}
/// The answer of a unit that failed on its own: a register that lost a deadlock or waited too
/// long for a row is refused with a lock conflict, which the RM retries like any other.
fn single_failure(op: &Op, e: StepError) -> Result<Outcome, StoreError> {
    match (op, e) {
        (Op::Register(b), StepError::Db(e)) if is_lock_contention(&e) => Ok(Outcome::Added(
            BranchAdded::Lock(conflict_on(&b.resource_id, &b.locks)),
        )),
        (_, e) => Err(e.into_store()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_is_stable_and_in_range() {
        for n in 1..6 {
            let s = shard("10.0.0.1:8091:123", n);
            assert!(s < n);
            assert_eq!(s, shard("10.0.0.1:8091:123", n));
        }
        assert_eq!(shard("x", 0), 0);
    }
}
