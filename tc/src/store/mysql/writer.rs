//! Group commit: every write of the db store goes through one of a few writer tasks, each
//! with its own connection and a bounded queue. A writer takes everything queued (up to
//! [`MAX_BATCH`] units), runs it as one DB transaction (`batch.rs`), commits once, and only
//! then answers each unit, so a write still resolves only once it is durable, while
//! concurrent writes share one commit (and one log flush) instead of paying one each.
//!
//! A unit goes to the writer chosen by its XID, so all writes of one global transaction meet
//! in one queue, in the order they were issued, and two writers never touch the same
//! `global_table`, `branch_table` or lease rows. Writers can still wait on each other over
//! `lock_table` rows that two transactions both want; InnoDB breaks a cycle by rolling one
//! batch back with a deadlock error, and that writer runs the batch again
//! ([`BATCH_RETRIES`]), then, if it still fails, each unit on its own, where a deadlock of a
//! register is a lock conflict as for a single register. A batch that fails for any other
//! reason before COMMIT is also split, so one bad unit gets its own error and the others go
//! through. A failed COMMIT, or a connection lost mid-batch, is answered with an error to
//! every unit: the outcome is unknown, and running it again could report a decision as lost
//! that was in fact taken.
//!
//! Shutdown: [`Writers::close`] stops intake, and each writer finishes what is queued.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mysql_async::{Conn, Opts, TxOpts};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::batch::{after_commit, apply, Answers};
use super::lease::Leases;
use super::locks::conflict_on;
use super::unit::{Op, Outcome};
use super::{db, is_lock_contention, server_code, StepError};
use crate::store::{BranchAdded, StoreError};

/// Units per DB transaction at most. Bounds the statements' sizes (and so the number of
/// distinct prepared statements a writer caches).
const MAX_BATCH: usize = 128;
/// Units waiting per writer before callers wait to queue (back-pressure).
const QUEUE: usize = 1024;
/// Runs of a batch that InnoDB chose as a deadlock victim, before it is split.
const BATCH_RETRIES: usize = 2;
/// Runs of a single unit that keeps losing deadlocks.
const SINGLE_RETRIES: usize = 3;
/// MariaDB/MySQL's ER_LOCK_DEADLOCK: the whole DB transaction was rolled back.
const DEADLOCK: u16 = 1213;
/// Prepared statements a writer keeps: multi-row statements differ by their row count.
const STMT_CACHE: usize = 1024;

/// Group commits done and the units they carried, for the shutdown log.
#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    units: AtomicU64,
    retried: AtomicU64,
    split: AtomicU64,
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
    /// Connects `count` writers (at least one), each on its own connection.
    pub(super) async fn start(
        opts: Opts,
        leases: Arc<Leases>,
        count: usize,
    ) -> Result<Self, StoreError> {
        let opts: Opts = mysql_async::OptsBuilder::from_opts(opts)
            .stmt_cache_size(STMT_CACHE)
            .into();
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let stats = Arc::new(Stats::default());
        let mut queues = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let conn = Conn::new(opts.clone()).await.map_err(db)?;
            let (tx, rx) = mpsc::channel(QUEUE);
            let writer = Writer {
                rx,
                conn: Some(conn),
                opts: opts.clone(),
                leases: leases.clone(),
                stats: stats.clone(),
            };
            tracker.spawn(writer.run(token.clone()));
            queues.push(tx);
        }
        tracker.close();
        Ok(Writers {
            queues,
            token,
            tracker,
            stats,
        })
    }

    /// Queues `op` on its writer and waits until its batch committed.
    pub(super) async fn submit(&self, op: Op) -> Result<Outcome, StoreError> {
        let n = self.queues.len();
        let queue = self
            .queues
            .get(shard(op.xid(), n))
            .ok_or_else(|| StoreError::Backend("db store has no writer".into()))?;
        let (reply, answer) = oneshot::channel();
        queue.send(Unit { op, reply }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Stops intake and waits for the writers to finish what they hold.
    pub(super) async fn close(&self) {
        self.token.cancel();
        self.tracker.wait().await;
        let commits = self.stats.commits.load(Ordering::Relaxed);
        let units = self.stats.units.load(Ordering::Relaxed);
        info!(
            commits,
            units,
            units_per_commit = format!("{:.2}", units as f64 / commits.max(1) as f64),
            retried = self.stats.retried.load(Ordering::Relaxed),
            split = self.stats.split.load(Ordering::Relaxed),
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

/// Why a batch did not commit.
enum Failure {
    /// Rolled back before COMMIT: running the units again is safe.
    RolledBack(StepError),
    /// The connection broke or COMMIT failed: the outcome is unknown.
    Unknown(StoreError),
}

struct Writer {
    rx: mpsc::Receiver<Unit>,
    /// `None` after a connection failure, until the next batch reconnects.
    conn: Option<Conn>,
    opts: Opts,
    leases: Arc<Leases>,
    stats: Arc<Stats>,
}

impl Writer {
    async fn run(mut self, token: CancellationToken) {
        let mut closing = false;
        loop {
            let first = if closing {
                self.rx.recv().await
            } else {
                tokio::select! {
                    unit = self.rx.recv() => unit,
                    () = token.cancelled() => {
                        // Refuse new units; those queued are still received and written.
                        closing = true;
                        self.rx.close();
                        continue;
                    }
                }
            };
            let Some(first) = first else { break };
            let mut units = vec![first];
            while units.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(u) => units.push(u),
                    Err(_) => break,
                }
            }
            self.process(units).await;
        }
        if let Some(conn) = self.conn.take() {
            if let Err(e) = conn.disconnect().await {
                debug!(error = %e, "db store writer connection did not close cleanly");
            }
        }
    }

    /// Writes `units` as one batch, retrying or splitting it as the module doc says, and
    /// answers every unit.
    async fn process(&mut self, units: Vec<Unit>) {
        let mut work: Vec<(Vec<Unit>, usize)> = vec![(units, 0)];
        while let Some((units, tries)) = work.pop() {
            let (ops, replies): (Vec<Op>, Vec<_>) =
                units.into_iter().map(|u| (u.op, u.reply)).unzip();
            match self.execute(&ops).await {
                Ok(answers) => {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .units
                        .fetch_add(ops.len() as u64, Ordering::Relaxed);
                    after_commit(&ops, &answers, &self.leases);
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
                Err(Failure::Unknown(e)) => {
                    warn!(error = %e, units = ops.len(), "db store batch failed; its writes may or may not have happened");
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Backend(e.to_string())));
                    }
                }
                Err(Failure::RolledBack(e)) => {
                    let deadlock = matches!(&e, StepError::Db(d) if server_code(d) == Some(DEADLOCK));
                    let single = ops.len() == 1;
                    let limit = if single { SINGLE_RETRIES } else { BATCH_RETRIES };
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

    /// Runs `ops` in one DB transaction and commits it.
    async fn execute(&mut self, ops: &[Op]) -> Result<Answers, Failure> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let conn = Conn::new(self.opts.clone())
                    .await
                    .map_err(|e| Failure::Unknown(db(e)))?;
                self.conn.insert(conn)
            }
        };
        let (result, broken) = in_transaction(conn, ops, &self.leases).await;
        if broken {
            self.conn = None;
        }
        result
    }
}

/// `(result, whether the connection must be dropped)`.
async fn in_transaction(
    conn: &mut Conn,
    ops: &[Op],
    leases: &Leases,
) -> (Result<Answers, Failure>, bool) {
    let mut tx = match conn.start_transaction(TxOpts::default()).await {
        Ok(tx) => tx,
        // Nothing ran; a server error leaves the connection usable.
        Err(e) => {
            let broken = server_code(&e).is_none();
            return (Err(Failure::Unknown(db(e))), broken);
        }
    };
    match apply(&mut tx, ops, leases).await {
        Ok(answers) => match tx.commit().await {
            Ok(()) => (Ok(answers), false),
            Err(e) => {
                let broken = server_code(&e).is_none();
                (Err(Failure::Unknown(db(e))), broken)
            }
        },
        Err(StepError::Db(e)) if server_code(&e).is_none() => {
            // The connection broke mid-batch; the server rolls back what it had when it
            // notices, but we cannot tell when: report, do not repeat.
            drop(tx);
            (Err(Failure::Unknown(db(e))), true)
        }
        Err(e) => match tx.rollback().await {
            Ok(()) => (Err(Failure::RolledBack(e)), false),
            Err(r) => {
                warn!(error = %r, "db store could not roll a batch back; reconnecting");
                (Err(Failure::Unknown(e.into_store())), true)
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
