//! XA mode over `mysql_async`, as Seata 1.2 does it (tcc-xa-saga.md §3): the database's own
//! XA transactions are the branches, so there is no undo log and no TC row lock.
//!
//! ```text
//! let xa = rm.xa_data_source(opts).await?;   // resource id jdbc:mysql://host:port/db
//! // inside a global transaction (XID bound):
//! let mut c = xa.begin().await?;             // BranchRegister(XA) + XA START
//! c.exec_drop("UPDATE account SET ..", (..)).await?;
//! c.commit().await?;                         // XA END + XA PREPARE, connection held
//! ```
//!
//! Phase two (`BranchCommit`/`BranchRollback` from the TC) runs `XA COMMIT`/`XA ROLLBACK` on
//! the connection held since `XA PREPARE`, or on any connection of the pool when it is gone
//! (MySQL ≥ 5.7.7 / MariaDB ≥ 10.5 keep a prepared branch when its session ends). MySQL
//! answers `XAER_NOTA` both for a branch already finished and for one still attached to
//! another live session, active or prepared (after a TC restart the RM that began a branch
//! reconnects on a new port, so its phase two can reach another process of the service).
//! `XA START` of the same XID tells them apart: `XAER_DUPID` while some session has it, so
//! the TC retries until it reaches the owner; success means the branch is gone, so done.
//!
//! A prepared branch is also checked from its own side (`orphan_check.rs`): one held longer than
//! [`RmClientConfig::xa_check_after`](crate::client::RmClientConfig) is looked up at the TC,
//! and finished here once its outcome is known: rolled back if its global transaction ended
//! without it (its phase two answered by another process before this one prepared) or is
//! rolling back, committed if commit was decided (the TC's retries landing elsewhere).
//!
//! Restart: [`XaDataSource::recover`] (run once by [`RmClient::xa_data_source`]) lists the
//! server's prepared Seata branches (`XA RECOVER`, format 9752) and asks the TC about each
//! global transaction. A branch the TC is still deciding is left for the TC's phase two; one
//! the TC no longer knows (or rolled back) is rolled back, so it does not hold row locks
//! forever.
//!
//! Unlike Java's proxy, statements are not their own branches when no local transaction is
//! open: a branch is the span from [`XaDataSource::begin`] to commit/rollback.

mod orphan_check;
pub mod xid;

pub(crate) use orphan_check::spawn_orphan_check;

use std::sync::Arc;
use std::time::Instant;

use dashmap::{DashMap, DashSet};
use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, Opts, Params, Pool};
use seata_protocol::{BranchStatus, BranchType, GlobalStatus};
use seata_tm::context::await_current_xid;
use tracing::{debug, info, instrument, warn};

use crate::at::resource_id_of;
use crate::client::RmClient;
use crate::error::RmError;
use xid::BranchXid;

pub use xid::XA_FORMAT_ID;

/// MySQL's "unknown XID" (XAER_NOTA).
const ER_XAER_NOTA: u16 = 1397;
/// MySQL's "the XID already exists" (XAER_DUPID): another session has the branch.
const ER_XAER_DUPID: u16 = 1440;

/// A prepared branch's connection, kept for phase two.
struct Held {
    conn: Conn,
    /// When it prepared: a branch held long without phase two is checked with the TC.
    since: Instant,
    bx: BranchXid,
}

pub(crate) struct XaInner {
    pool: Pool,
    resource_id: String,
    rm: Arc<RmClient>,
    /// Prepared branches' connections, by `xid-branchId`, kept for phase two.
    held: DashMap<String, Held>,
    /// Branches between `XA START` and `XA PREPARE` in this process.
    active: DashSet<String>,
    /// Active branches the TC asked to roll back: they roll back instead of preparing.
    doomed: DashSet<String>,
}

/// An XA data source: a pool plus the branches of this process. Cheap to clone; keep one
/// alive for as long as the TC may send it phase two (the RM client holds it weakly).
#[derive(Clone)]
pub struct XaDataSource {
    pub(crate) inner: Arc<XaInner>,
}

impl std::fmt::Debug for XaDataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XaDataSource")
            .field("resource_id", &self.inner.resource_id)
            .field("held", &self.inner.held.len())
            .finish_non_exhaustive()
    }
}

/// What [`XaDataSource::recover`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XaRecovery {
    /// Prepared Seata branches whose global transaction the TC is still deciding: its phase
    /// two will finish them.
    pub left_for_tc: Vec<String>,
    /// Prepared branches rolled back because the TC no longer knows (or rolled back) their
    /// global transaction.
    pub rolled_back: Vec<String>,
    /// Prepared Seata branches begun by a TC this RM is not connected to (the XID's
    /// `ip:port`): another cluster sharing the MySQL server, or a TC gone for good. Left
    /// alone, since only their own TC can say whether they commit; resolve them by hand.
    pub foreign: Vec<String>,
}

impl XaDataSource {
    pub(crate) fn new(rm: Arc<RmClient>, opts: Opts) -> Self {
        XaDataSource {
            inner: Arc::new(XaInner {
                resource_id: resource_id_of(&opts),
                pool: Pool::new(opts),
                rm,
                held: DashMap::new(),
                active: DashSet::new(),
                doomed: DashSet::new(),
            }),
        }
    }

    /// The resource id (`jdbc:mysql://host:port/db`, the AT rule).
    pub fn resource_id(&self) -> &str {
        &self.inner.resource_id
    }

    /// The pool (its connections are outside any branch).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// MySQL connection ids of the sessions held for phase two (diagnostics).
    pub fn held_sessions(&self) -> Vec<u32> {
        self.inner
            .held
            .iter()
            .map(|e| e.value().conn.id())
            .collect()
    }

    /// Opens a branch: inside a global transaction registers an XA branch with the TC (first,
    /// before any SQL, as Java does) and runs `XA START`; outside one, a plain local
    /// transaction (`START TRANSACTION`).
    #[instrument(skip_all, fields(xid = tracing::field::Empty, branch_id = tracing::field::Empty))]
    pub async fn begin(&self) -> Result<XaConnection, RmError> {
        let mut conn = self.inner.pool.get_conn().await?;
        let Some(xid) = await_current_xid().await? else {
            conn.query_drop("START TRANSACTION").await?;
            return Ok(XaConnection {
                conn: Some(conn),
                ds: self.clone(),
                branch: None,
            });
        };
        tracing::Span::current().record("xid", xid.as_str());
        let branch_id = self
            .inner
            .rm
            .register_branch(BranchType::Xa, &xid, &self.inner.resource_id, "", None)
            .await?;
        tracing::Span::current().record("branch_id", branch_id);
        let bx = BranchXid::new(&xid, branch_id);
        let key = bx.key();
        let started = if bx.is_valid() {
            conn.query_drop(format!("XA START {}", bx.sql()))
                .await
                .map_err(RmError::from)
        } else {
            Err(RmError::TxState(format!(
                "XID `{xid}` is longer than MySQL's 64-byte gtrid"
            )))
        };
        if let Err(e) = started {
            self.inner
                .report(&xid, branch_id, BranchStatus::PhaseOneFailed)
                .await;
            return Err(RmError::PhaseOneFailed {
                xid,
                branch_id,
                source: Box::new(e),
            });
        }
        self.inner.active.insert(key);
        Ok(XaConnection {
            conn: Some(conn),
            ds: self.clone(),
            branch: Some((xid, branch_id, bx)),
        })
    }

    /// Finds the server's prepared Seata branches and rolls back those whose global
    /// transaction the TC no longer knows or rolled back; the others are left to the TC's
    /// phase two. Branches of this process are skipped. `XA RECOVER` lists the whole server,
    /// so only branches whose XID names a TC this RM is connected to are judged (an unknown
    /// XID reads as `Finished`, so asking the wrong TC would roll back live branches); the
    /// others are listed as [`XaRecovery::foreign`].
    pub async fn recover(&self) -> Result<XaRecovery, RmError> {
        let mut conn = self.inner.pool.get_conn().await?;
        let mut found = XaRecovery::default();
        let tcs = self.inner.rm.tc_addresses();
        for bx in prepared(&mut conn).await? {
            let key = bx.key();
            if self.inner.held.contains_key(&key) || self.inner.active.contains(&key) {
                continue;
            }
            let Some(xid) = bx.global_xid() else {
                continue;
            };
            let began_by = xid.rsplit_once(':').map_or("", |(tc, _)| tc);
            if !tcs.iter().any(|tc| tc == began_by) {
                found.foreign.push(key);
                continue;
            }
            let status = match self.inner.rm.global_status(xid).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, branch = %key, "TC status unknown; prepared XA branch left");
                    found.left_for_tc.push(key);
                    continue;
                }
            };
            if abandoned(status) {
                match conn.query_drop(format!("XA ROLLBACK {}", bx.sql())).await {
                    Ok(()) => {
                        info!(branch = %key, ?status, "abandoned prepared XA branch rolled back");
                        found.rolled_back.push(key);
                    }
                    Err(e) => {
                        warn!(error = %e, branch = %key, "rollback of an abandoned XA branch failed");
                        found.left_for_tc.push(key);
                    }
                }
            } else {
                debug!(branch = %key, ?status, "prepared XA branch left for the TC");
                found.left_for_tc.push(key);
            }
        }
        Ok(found)
    }
}

/// Whether a prepared branch of a global transaction in `status` can only be rolled back: the
/// TC no longer knows it (an unknown XID reads as `Finished`) or ended it rolled back. A commit
/// is never finished without this branch's own `XA COMMIT`, which only its holder can run.
fn abandoned(status: GlobalStatus) -> bool {
    matches!(
        status,
        GlobalStatus::Finished
            | GlobalStatus::Rollbacked
            | GlobalStatus::TimeoutRollbacked
            | GlobalStatus::RollbackFailed
            | GlobalStatus::TimeoutRollbackFailed
    )
}

/// Whether another session has branch `bx`, active or prepared: `XA START` of its XID is
/// refused with `XAER_DUPID` then. Otherwise the probe branch is ended and rolled back at once.
async fn owned_elsewhere(conn: &mut Conn, bx: &BranchXid) -> Result<bool, RmError> {
    let xa = bx.sql();
    match conn.query_drop(format!("XA START {xa}")).await {
        Ok(()) => {
            let mut ended = conn.query_drop(format!("XA END {xa}")).await;
            if ended.is_ok() {
                ended = conn.query_drop(format!("XA ROLLBACK {xa}")).await;
            }
            if let Err(e) = ended {
                // Not back to the pool with the probe's branch still open on it.
                conn.reset_connection(true);
                return Err(e.into());
            }
            Ok(false)
        }
        Err(mysql_async::Error::Server(e)) if e.code == ER_XAER_DUPID => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// The prepared Seata branches `XA RECOVER` lists.
async fn prepared(conn: &mut Conn) -> Result<Vec<BranchXid>, RmError> {
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = conn.query("XA RECOVER").await?;
    Ok(rows
        .into_iter()
        .filter_map(|(f, g, b, data)| BranchXid::from_recover_row(f, g, b, &data))
        .collect())
}

impl XaInner {
    async fn report(&self, xid: &str, branch_id: i64, status: BranchStatus) {
        if let Err(e) = self
            .rm
            .report_branch(BranchType::Xa, xid, branch_id, &self.resource_id, status)
            .await
        {
            warn!(error = %e, xid, branch_id, "XA branch report failed");
        }
    }

    /// Phase two of a branch; the status to report.
    #[instrument(skip_all, fields(xid = %xid, branch_id = branch_id, commit))]
    pub(crate) async fn phase_two(&self, commit: bool, xid: &str, branch_id: i64) -> BranchStatus {
        let (done, failed) = if commit {
            (
                BranchStatus::PhaseTwoCommitted,
                BranchStatus::PhaseTwoCommitFailedRetryable,
            )
        } else {
            (
                BranchStatus::PhaseTwoRollbacked,
                BranchStatus::PhaseTwoRollbackFailedRetryable,
            )
        };
        let bx = BranchXid::new(xid, branch_id);
        let key = bx.key();
        let verb = if commit { "XA COMMIT" } else { "XA ROLLBACK" };
        let sql = format!("{verb} {}", bx.sql());
        if let Some((_, Held { mut conn, .. })) = self.held.remove(&key) {
            match conn.query_drop(&sql).await {
                Ok(()) => {
                    info!(verb, "XA branch finished on its held connection");
                    return done;
                }
                Err(e) => warn!(error = %e, verb, "held connection failed; trying a fresh one"),
            }
        } else if self.active.contains(&key) {
            // Still between XA START and XA PREPARE here: a rollback dooms it (it rolls back
            // instead of preparing); either way the TC asks again.
            if !commit {
                self.doomed.insert(key);
            }
            info!(
                verb,
                "XA branch still active in this process; the TC will retry"
            );
            return failed;
        }
        let outcome = match self.pool.get_conn().await {
            Ok(mut conn) => match conn.query_drop(&sql).await {
                Ok(()) => Ok(()),
                Err(mysql_async::Error::Server(e)) if e.code == ER_XAER_NOTA => {
                    // Finished already, never prepared (discarded with its session), or
                    // another live session has it, active or prepared: the owner must finish
                    // it (an active one would otherwise prepare after "done" and stay).
                    match owned_elsewhere(&mut conn, &bx).await {
                        Ok(true) => Err(RmError::TxState(
                            "the branch belongs to another session (XAER_DUPID)".into(),
                        )),
                        Ok(false) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(()) => {
                info!(verb, "XA branch finished");
                done
            }
            Err(e) => {
                warn!(error = %e, verb, "XA phase two failed; the TC will retry");
                failed
            }
        }
    }
}

/// A connection in an XA branch (or a plain local transaction outside a global transaction).
/// End it with [`commit`](Self::commit) or [`rollback`](Self::rollback); dropping it rolls
/// the branch back in the background.
pub struct XaConnection {
    conn: Option<Conn>,
    ds: XaDataSource,
    branch: Option<(String, i64, BranchXid)>,
}

impl std::fmt::Debug for XaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XaConnection")
            .field("branch", &self.branch.as_ref().map(|(_, _, b)| b.key()))
            .finish_non_exhaustive()
    }
}

impl XaConnection {
    /// The XA branch id (`None` outside a global transaction).
    pub fn branch_id(&self) -> Option<i64> {
        self.branch.as_ref().map(|(_, id, _)| *id)
    }

    fn conn(&mut self) -> Result<&mut Conn, RmError> {
        self.conn
            .as_mut()
            .ok_or_else(|| RmError::TxState("XA connection already ended".into()))
    }

    /// `Queryable::query_drop` inside the branch.
    pub async fn query_drop(&mut self, sql: impl AsRef<str>) -> Result<(), RmError> {
        Ok(self.conn()?.query_drop(sql.as_ref()).await?)
    }

    /// `Queryable::query` inside the branch.
    pub async fn query<T: FromRow + Send + 'static>(
        &mut self,
        sql: impl AsRef<str>,
    ) -> Result<Vec<T>, RmError> {
        Ok(self.conn()?.query(sql.as_ref()).await?)
    }

    /// `Queryable::exec_drop` inside the branch.
    pub async fn exec_drop(
        &mut self,
        sql: impl AsRef<str>,
        params: impl Into<Params> + Send,
    ) -> Result<(), RmError> {
        Ok(self.conn()?.exec_drop(sql.as_ref(), params).await?)
    }

    /// `Queryable::exec` inside the branch.
    pub async fn exec<T: FromRow + Send + 'static>(
        &mut self,
        sql: impl AsRef<str>,
        params: impl Into<Params> + Send,
    ) -> Result<Vec<T>, RmError> {
        Ok(self.conn()?.exec(sql.as_ref(), params).await?)
    }

    /// `Queryable::exec_first` inside the branch.
    pub async fn exec_first<T: FromRow + Send + 'static>(
        &mut self,
        sql: impl AsRef<str>,
        params: impl Into<Params> + Send,
    ) -> Result<Option<T>, RmError> {
        Ok(self.conn()?.exec_first(sql.as_ref(), params).await?)
    }

    /// Ends phase one: `XA END` + `XA PREPARE`, and holds the connection for phase two. If
    /// that fails the branch is rolled back and reported `PhaseOne_Failed`. Outside a global
    /// transaction, `COMMIT`.
    pub async fn commit(mut self) -> Result<(), RmError> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let Some((xid, branch_id, bx)) = self.branch.take() else {
            conn.query_drop("COMMIT").await?;
            return Ok(());
        };
        let inner = &self.ds.inner;
        let key = bx.key();
        let xa = bx.sql();
        let mut prepared = conn.query_drop(format!("XA END {xa}")).await;
        if prepared.is_ok() && inner.doomed.remove(&key).is_some() {
            let _ = conn.query_drop(format!("XA ROLLBACK {xa}")).await;
            inner.active.remove(&key);
            return Err(RmError::TxState(format!(
                "branch {branch_id} of {xid} was rolled back by the TC before it could prepare"
            )));
        }
        if prepared.is_ok() {
            prepared = conn.query_drop(format!("XA PREPARE {xa}")).await;
        }
        match prepared {
            Ok(()) => {
                // Held before it stops being active, so phase two always finds it somewhere.
                let since = Instant::now();
                inner.held.insert(key.clone(), Held { conn, since, bx });
                inner.active.remove(&key);
                inner.doomed.remove(&key);
                Ok(())
            }
            Err(e) => {
                if let Err(e) = conn.query_drop(format!("XA ROLLBACK {xa}")).await {
                    debug!(error = %e, "XA ROLLBACK after a failed prepare");
                }
                inner.active.remove(&key);
                inner.doomed.remove(&key);
                inner
                    .report(&xid, branch_id, BranchStatus::PhaseOneFailed)
                    .await;
                Err(RmError::PhaseOneFailed {
                    xid,
                    branch_id,
                    source: Box::new(e.into()),
                })
            }
        }
    }

    /// Rolls the branch back (`XA END`, `XA ROLLBACK`, then `PhaseOne_Failed` to the TC,
    /// Seata 1.5's order). Outside a global transaction, `ROLLBACK`.
    pub async fn rollback(mut self) -> Result<(), RmError> {
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        match self.branch.take() {
            Some(branch) => {
                abandon(self.ds.clone(), conn, branch).await;
                Ok(())
            }
            None => {
                let mut conn = conn;
                conn.query_drop("ROLLBACK").await?;
                Ok(())
            }
        }
    }
}

/// Ends and rolls back an unprepared branch and reports it failed.
async fn abandon(ds: XaDataSource, mut conn: Conn, (xid, branch_id, bx): (String, i64, BranchXid)) {
    let xa = bx.sql();
    if let Err(e) = conn.query_drop(format!("XA END {xa}")).await {
        debug!(error = %e, "XA END before rollback");
    }
    if let Err(e) = conn.query_drop(format!("XA ROLLBACK {xa}")).await {
        warn!(error = %e, "XA ROLLBACK failed; the session reset discards the branch");
        conn.reset_connection(true);
    }
    let key = bx.key();
    ds.inner.active.remove(&key);
    ds.inner.doomed.remove(&key);
    ds.inner
        .report(&xid, branch_id, BranchStatus::PhaseOneFailed)
        .await;
}

impl Drop for XaConnection {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        match (self.branch.take(), tokio::runtime::Handle::try_current()) {
            (Some(branch), Ok(handle)) => {
                debug!("XaConnection dropped inside its branch; rolling it back");
                // Finishes on its own: three statements and a report, no loop.
                handle.spawn(abandon(self.ds.clone(), conn, branch));
            }
            (branch, _) => {
                if let Some((_, _, bx)) = branch {
                    self.ds.inner.active.remove(&bx.key());
                }
                // The pool's session reset rolls back (and ends an XA branch).
                conn.reset_connection(true);
            }
        }
    }
}
