//! A batch whose COMMIT got no answer (the connection was killed, or the server crashed,
//! while it ran): the server may have committed it or not. An error answer would be read as
//! "not written", and the coordinator then reopens what may well be decided: a commit
//! answered as failed while the database holds it, and a session nobody drives again
//! (seen in `tests/tests/it/db_faults.rs`). So the writer reads back, on a new connection,
//! what the batch wrote, and answers as if the COMMIT had returned; only when that cannot be
//! told within [`RESOLVE_FOR`] (the database stays away) does it answer an error, which says
//! that the outcome is unknown.
//!
//! A batch is one DB transaction, so one unit whose effect exists only if it committed
//! decides for all: a new global row, a branch row of an accepted register, or a transition
//! applied (status `to` and, for a phase-two status, our lease). A batch of only idempotent
//! writes (status updates, removals, refused units) counts as done when every effect is in
//! place, whoever put it there.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tracing::{info, warn};

use super::batch::Answers;
use super::lease::Leases;
use super::unit::{Op, Outcome};
use crate::store::{BranchAdded, Transition};

/// How long the writer keeps trying to find out what became of a batch.
pub(super) const RESOLVE_FOR: Duration = Duration::from_secs(15);

/// Whether a batch whose COMMIT failed is in the database; `None` when that cannot be told
/// within [`RESOLVE_FOR`].
pub(super) async fn committed(
    opts: &Opts,
    ops: &[Op],
    answers: &Answers,
    leases: &Leases,
) -> Option<bool> {
    let until = tokio::time::Instant::now() + RESOLVE_FOR;
    let mut pause = Duration::from_millis(50);
    loop {
        let attempt = async {
            let mut conn = Conn::new(opts.clone()).await?;
            let found = read_back(&mut conn, ops, answers, leases.owner()).await;
            let _ = conn.disconnect().await;
            found
        };
        match attempt.await {
            Ok(found) => {
                info!(
                    units = ops.len(),
                    committed = found,
                    "db store found out what became of a batch whose COMMIT got no answer"
                );
                return Some(found);
            }
            Err(e) => {
                if tokio::time::Instant::now() + pause > until {
                    warn!(error = %e, units = ops.len(),
                        "db store cannot tell whether a batch committed; its units are answered as outcome unknown");
                    return None;
                }
                // The database is away (restarting): try again a little later.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Reads what the batch's units wrote: the first unit that shows whether the batch
/// committed decides; without one, whether every effect is in place.
async fn read_back(
    conn: &mut Conn,
    ops: &[Op],
    answers: &Answers,
    owner: i64,
) -> Result<bool, mysql_async::Error> {
    for (op, answer) in ops.iter().zip(answers) {
        match (op, answer) {
            (Op::InsertGlobal(g), _) => return global_exists(conn, &g.xid).await,
            (Op::Register(b), Ok(Outcome::Added(BranchAdded::Added))) => {
                let n: Option<i64> = conn
                    .exec_first(
                        "SELECT COUNT(*) FROM branch_table WHERE branch_id = ?",
                        (b.branch_id,),
                    )
                    .await?;
                return Ok(n.unwrap_or(0) > 0);
            }
            (
                Op::Transition { xid, to, .. },
                Ok(Outcome::Transition(Transition::Applied { .. })),
            ) => {
                let row: Option<(i64, Option<i64>)> = conn
                    .exec_first(
                        "SELECT g.status, l.owner FROM global_table g \
                         LEFT JOIN seata_rs_tx_lease l ON l.xid = g.xid WHERE g.xid = ?",
                        (xid.as_str(),),
                    )
                    .await?;
                let ours = |lease: Option<i64>| {
                    to.is_final()
                        || *to == seata_protocol::GlobalStatus::Begin
                        || lease == Some(owner)
                };
                return Ok(
                    matches!(row, Some((status, lease)) if status == i64::from(to.code()) && ours(lease)),
                );
            }
            _ => {}
        }
    }
    for op in ops {
        let in_place = match op {
            Op::SetGlobalStatus { xid, status } => {
                let s: Option<i64> = conn
                    .exec_first("SELECT status FROM global_table WHERE xid = ?", (xid,))
                    .await?;
                s.is_none_or(|s| s == i64::from(status.code()))
            }
            Op::SetBranchStatus {
                branch_id, status, ..
            } => {
                let s: Option<i64> = conn
                    .exec_first(
                        "SELECT status FROM branch_table WHERE branch_id = ?",
                        (branch_id,),
                    )
                    .await?;
                s.is_none_or(|s| s == i64::from(status.code()))
            }
            Op::RemoveBranch { branch_id, .. } => {
                let n: Option<i64> = conn
                    .exec_first(
                        "SELECT COUNT(*) FROM branch_table WHERE branch_id = ?",
                        (branch_id,),
                    )
                    .await?;
                n.unwrap_or(0) == 0
            }
            Op::RemoveGlobal { xid, .. } => !global_exists(conn, xid).await?,
            // Refused units wrote nothing; the others decided above.
            Op::InsertGlobal(_) | Op::Register(_) | Op::Transition { .. } => true,
        };
        if !in_place {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn global_exists(conn: &mut Conn, xid: &str) -> Result<bool, mysql_async::Error> {
    let n: Option<i64> = conn
        .exec_first("SELECT COUNT(*) FROM global_table WHERE xid = ?", (xid,))
        .await?;
    Ok(n.unwrap_or(0) > 0)
}
