//! Prepared branches whose global transaction ended, or is rolling back, without reaching
//! them. The TC sends phase two to the connection that registered a branch, and after a TC
//! restart that connection is gone: another process of the service may answer for a branch
//! this one has not yet prepared (between `BranchRegister` and `XA START`), so the TC ends
//! the transaction while this process still prepares the branch, which would then hold its
//! rows for ever; or the TC's retries keep landing on the other process (answered "retry")
//! and back off while the branch holds its rows. So a branch held longer than a period is
//! looked up at the TC and finished here when its outcome is known: rolled back when only a
//! rollback is left for it, committed when the TC decided commit. The TC's next phase two
//! then finds it gone, wherever it lands.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use seata_protocol::GlobalStatus;
use tracing::{debug, warn};

use super::{abandoned, Held, XaDataSource, XaInner};

/// Starts the periodic check of `ds`'s held branches; it ends with the data source.
pub(crate) fn spawn_orphan_check(ds: &XaDataSource, every: Duration) {
    let inner = Arc::downgrade(&ds.inner);
    tokio::spawn(run(inner, every.max(Duration::from_millis(10))));
}

async fn run(inner: Weak<XaInner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.finish_orphans(every).await;
    }
}

impl XaInner {
    /// Finishes the branches held at least `age` whose global transaction's outcome is known
    /// (see [`abandoned`], [`rolling_back`], [`committing`]); their keys. One status request
    /// per global transaction.
    async fn finish_orphans(&self, age: Duration) -> Vec<String> {
        let stale: Vec<(String, String)> = self
            .held
            .iter()
            .filter(|e| e.since.elapsed() >= age)
            .filter_map(|e| Some((e.key().clone(), e.bx.global_xid()?.to_owned())))
            .collect();
        let mut statuses: HashMap<String, GlobalStatus> = HashMap::new();
        let mut finished = Vec::new();
        for (key, xid) in stale {
            let status = match statuses.get(&xid) {
                Some(s) => *s,
                None => match self.rm.global_status(&xid).await {
                    Ok(s) => *statuses.entry(xid.clone()).or_insert(s),
                    Err(e) => {
                        debug!(error = %e, xid, "status of a held XA branch unknown; checked later");
                        continue;
                    }
                },
            };
            let commit = committing(status);
            if !(commit || abandoned(status) || rolling_back(status)) {
                continue;
            }
            // Phase two may have taken it meanwhile.
            let Some((_, held)) = self.held.remove(&key) else {
                continue;
            };
            if self.finish_held(held, commit).await {
                warn!(branch = %key, xid, ?status, commit,
                    "prepared XA branch finished here: its global transaction's phase two did not reach it");
                finished.push(key);
            }
        }
        finished
    }

    /// `XA COMMIT` or `XA ROLLBACK` on the held session, or on a fresh one when that fails.
    async fn finish_held(&self, held: Held, commit: bool) -> bool {
        let Held { mut conn, bx, .. } = held;
        let verb = if commit { "XA COMMIT" } else { "XA ROLLBACK" };
        let sql = format!("{verb} {}", bx.sql());
        let first = conn.query_drop(&sql).await;
        drop(conn);
        let outcome = match first {
            Ok(()) => Ok(()),
            Err(e) => {
                debug!(error = %e, "held session failed; rolling back on a fresh one");
                match self.pool.get_conn().await {
                    Ok(mut fresh) => fresh.query_drop(&sql).await,
                    Err(e) => Err(e),
                }
            }
        };
        match outcome {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, branch = %bx.key(),
                    verb, "XA branch left prepared; the TC's phase two or XaDataSource::recover ends it");
                false
            }
        }
    }
}

/// A rollback decided and not yet finished: final (a TC never turns it into a commit), so the
/// holder may roll its branch back before the TC's phase two reaches it.
fn rolling_back(status: GlobalStatus) -> bool {
    matches!(
        status,
        GlobalStatus::Rollbacking
            | GlobalStatus::RollbackRetrying
            | GlobalStatus::TimeoutRollbacking
            | GlobalStatus::TimeoutRollbackRetrying
    )
}

/// A commit decided and not yet finished: final, so every prepared branch commits.
fn committing(status: GlobalStatus) -> bool {
    matches!(
        status,
        GlobalStatus::Committing | GlobalStatus::CommitRetrying
    )
}
