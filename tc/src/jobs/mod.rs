//! The TC's periodic jobs, each a task on the process's [`TaskTracker`] that loops until the
//! [`CancellationToken`] fires: async (AT) commit, commit retry, rollback retry, timeout check
//! and the undo-log-delete broadcast (tc-semantics 3); with a store shared by several TCs,
//! also lease renewal and the takeover of transactions whose TC died. The work itself lives in the
//! coordinator (`Coordinator::check_timeouts`, `Coordinator::run_retry_queue`), which takes
//! `now` so it is tested without clocks; this module only schedules it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{DtmConfig, TcConfig};
use crate::coordinator::{Coordinator, RetryQueue};
use crate::dtm::engine::DtmEngine;
use crate::id::now_ms;

/// Spawns every job on `tracker`; they stop when `token` is cancelled.
pub fn spawn_all(
    coord: Arc<Coordinator>,
    config: &TcConfig,
    tracker: &TaskTracker,
    token: CancellationToken,
) {
    let r = &config.recovery;
    let retry_jobs = [
        (
            "async-committing",
            RetryQueue::AsyncCommitting,
            r.async_committing_retry_period_ms,
        ),
        (
            "retry-committing",
            RetryQueue::RetryCommitting,
            r.committing_retry_period_ms,
        ),
        (
            "retry-rollbacking",
            RetryQueue::RetryRollbacking,
            r.rollbacking_retry_period_ms,
        ),
    ];
    for (name, queue, period) in retry_jobs {
        let c = coord.clone();
        let wake = Some(coord.clone());
        tracker.spawn(every(
            name,
            ms(period),
            Duration::ZERO,
            token.clone(),
            wake,
            move || {
                let c = c.clone();
                async move {
                    let n = c.run_retry_queue(queue, now_ms()).await;
                    if n > 0 {
                        debug!(job = name, sessions = n, "phase-two passes run");
                    }
                }
            },
        ));
    }

    let c = coord.clone();
    tracker.spawn(every(
        "timeout-check",
        ms(r.timeout_retry_period_ms),
        Duration::ZERO,
        token.clone(),
        None,
        move || {
            let c = c.clone();
            async move {
                c.check_timeouts(now_ms()).await;
            }
        },
    ));

    // Several TCs on one store: keep our leases alive, and take over the transactions of TCs
    // that died (their leases expired).
    if let Some(period) = coord.lease_renew_period_ms() {
        let c = coord.clone();
        tracker.spawn(every(
            "lease-renewal",
            ms(period),
            ms(period),
            token.clone(),
            None,
            move || {
                let c = c.clone();
                async move { c.renew_leases().await }
            },
        ));
        let c = coord.clone();
        tracker.spawn(every(
            "orphan-scan",
            ms(r.timeout_retry_period_ms),
            Duration::ZERO,
            token.clone(),
            None,
            move || {
                let c = c.clone();
                async move {
                    let n = c.adopt_orphans(now_ms()).await;
                    if n > 0 {
                        info!(sessions = n, "took over transactions of stopped TCs");
                    }
                }
            },
        ));
    }

    let save_days = config.undo_save_days();
    let c = coord.clone();
    tracker.spawn(every(
        "undo-log-delete",
        ms(config.undo.log_delete_period_ms),
        ms(config.undo.log_delete_first_delay_ms),
        token,
        None,
        move || {
            c.broadcast_undo_log_delete(save_days);
            std::future::ready(())
        },
    ));
}

/// Spawns the DTM jobs: the cron that resumes due transactions (`dtm.cron-interval-ms`)
/// and, once a minute, the purge of finished ones past `dtm.finished-keep-*`.
pub fn spawn_dtm(
    engine: Arc<DtmEngine>,
    config: &DtmConfig,
    tracker: &TaskTracker,
    token: CancellationToken,
) {
    let e = engine.clone();
    tracker.spawn(every(
        "dtm-cron",
        ms(config.cron_interval_ms),
        Duration::ZERO,
        token.clone(),
        None,
        move || {
            let e = e.clone();
            async move {
                match e.run_due(now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => debug!(job = "dtm-cron", transactions = n, "due transactions resumed"),
                    Err(err) => warn!(error = %err, "dtm cron could not list due transactions; retrying next tick"),
                }
            }
        },
    ));
    let keep_ms = i64::try_from(config.finished_keep_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let keep_max = config.finished_keep_max;
    tracker.spawn(every(
        "dtm-purge",
        Duration::from_secs(60),
        Duration::from_secs(60),
        token,
        None,
        move || {
            let e = engine.clone();
            async move {
                match e.purge(now_ms().saturating_sub(keep_ms), keep_max).await {
                    Ok(0) => {}
                    Ok(n) => info!(
                        transactions = n,
                        "forgot finished DTM transactions past retention"
                    ),
                    Err(err) => warn!(error = %err, "dtm purge failed; retrying next minute"),
                }
            }
        },
    ));
}

fn ms(v: u64) -> Duration {
    // A zero period would make `interval` panic; config validation forbids it, but a
    // hand-built config might not be validated.
    Duration::from_millis(v.max(1))
}

/// Runs `tick` after `first_delay`, then every `period` (and, with `wake`, whenever the
/// coordinator signals that an RM came back) until `token` is cancelled. Cancellation also
/// abandons a tick in progress, which is safe: every step is recorded before it is acted on,
/// and a pass's drive claim is released on drop.
async fn every<F, Fut>(
    name: &'static str,
    period: Duration,
    first_delay: Duration,
    token: CancellationToken,
    wake: Option<Arc<Coordinator>>,
    mut tick: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = interval_at(Instant::now() + first_delay, period);
    // After a long tick, carry on at the period rather than bursting to catch up.
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    debug!(job = name, ?period, "job started");
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = interval.tick() => {}
            _ = woken(wake.as_deref()) => {}
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tick() => {}
        }
    }
    info!(job = name, "job stopped");
}

async fn woken(coord: Option<&Coordinator>) {
    match coord {
        Some(c) => c.woken().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::BoxFuture;
    use seata_protocol::{
        BranchRegisterRequest, BranchStatus, BranchType, GlobalBeginRequest, GlobalCommitRequest,
    };

    use super::*;
    use crate::coordinator::ClientInfo;
    use crate::gateway::{BranchGateway, BranchTarget, GatewayError};
    use crate::store::MemoryStore;

    #[derive(Debug, Default)]
    struct CountingGateway {
        commits: AtomicUsize,
        broadcasts: AtomicUsize,
    }

    impl BranchGateway for CountingGateway {
        fn branch_commit(
            &self,
            _t: BranchTarget,
        ) -> BoxFuture<'_, Result<BranchStatus, GatewayError>> {
            self.commits.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(BranchStatus::PhaseTwoCommitted) })
        }
        fn branch_rollback(
            &self,
            _t: BranchTarget,
        ) -> BoxFuture<'_, Result<BranchStatus, GatewayError>> {
            Box::pin(async { Ok(BranchStatus::PhaseTwoRollbacked) })
        }
        fn broadcast_undo_log_delete(&self, save_days: i16) {
            assert_eq!(save_days, 7);
            self.broadcasts.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Lets spawned jobs run until they wait on time again (time is paused).
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_commit_async_broadcast_undo_delete_and_stop_on_cancel() {
        let config = TcConfig::default();
        let gw = Arc::new(CountingGateway::default());
        let c = Coordinator::new(
            &config,
            "127.0.0.1".parse().unwrap(),
            8091,
            Arc::new(MemoryStore::new()),
            gw.clone(),
        )
        .await
        .unwrap();
        let (tracker, token) = (TaskTracker::new(), CancellationToken::new());
        spawn_all(c.clone(), &config, &tracker, token.clone());

        let client = ClientInfo::default();
        let xid = c.begin(GlobalBeginRequest::default(), &client).await.xid;
        let req = BranchRegisterRequest {
            xid: xid.clone(),
            branch_type: BranchType::At,
            resource_id: "db".into(),
            lock_key: "t:1".into(),
            ..BranchRegisterRequest::default()
        };
        assert!(c.branch_register(req, &client).await.result.is_success());
        let commit = GlobalCommitRequest {
            xid,
            extra_data: String::new(),
        };
        c.commit(commit).await;
        assert_eq!(c.stats().async_committing, 1);

        tokio::time::advance(Duration::from_millis(1_001)).await;
        settle().await;
        assert_eq!(gw.commits.load(Ordering::SeqCst), 1);
        assert_eq!(c.stats().sessions, 0);

        assert_eq!(gw.broadcasts.load(Ordering::SeqCst), 0);
        tokio::time::advance(Duration::from_millis(config.undo.log_delete_first_delay_ms)).await;
        settle().await;
        assert_eq!(gw.broadcasts.load(Ordering::SeqCst), 1);

        token.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
