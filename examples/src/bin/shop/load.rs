//! The load driver: places `--orders` orders through the front, `--concurrency` at a time,
//! optionally with one service down for the first `--down-secs`; then learns each order's final
//! outcome (for saga and TCC, by asking the coordinator until the gid is `succeed` or `failed`)
//! and checks it against what the front answered.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use seata_dtm::{DtmClient, GlobalStatus};

use crate::front::{Outcome, Placed};
use crate::request::OrderRequest;
use crate::service::Service;

/// One mode's batch of orders.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The front's route for the mode: `saga`, `tcc` or `at`.
    pub mode: &'static str,
    /// `http://IP:PORT` of the front.
    pub front: String,
    /// Order ids `first_id..first_id + orders`.
    pub first_id: u64,
    /// How many orders.
    pub orders: usize,
    /// How many at a time.
    pub concurrency: usize,
    /// Buyers and items the orders are spread over.
    pub users: u32,
    /// See `users`.
    pub skus: u32,
}

/// How a batch went.
#[derive(Debug, Default)]
pub struct Tally {
    /// Orders that committed.
    pub ok: usize,
    /// Orders that rolled back.
    pub failed: usize,
    /// Orders whose outcome could not be learnt (AT, outcome unknown).
    pub unknown: usize,
    /// Orders the front first answered "not decided yet".
    pub answered_pending: usize,
    /// From the first order placed to the last answered.
    pub placing: Duration,
    /// Up to three reasons the front gave for rollbacks that were not injected refusals.
    pub other_reasons: Vec<String>,
}

/// Places the batch; returns each order with the front's answer.
pub async fn place(
    batch: &Batch,
    http: &reqwest::Client,
    answered: &AtomicUsize,
) -> anyhow::Result<(Vec<Placed>, Duration)> {
    let next = AtomicU64::new(batch.first_id);
    let end = batch.first_id + batch.orders as u64;
    let url = format!("{}/{}", batch.front, batch.mode);
    let started = Instant::now();
    let worker = || async {
        let mut placed = Vec::new();
        loop {
            let id = next.fetch_add(1, Ordering::Relaxed);
            if id >= end {
                return anyhow::Ok(placed);
            }
            let order = OrderRequest::nth(id, batch.users, batch.skus);
            let answer: Placed = http
                .post(&url)
                .json(&order)
                .send()
                .await
                .with_context(|| format!("the front at {url} did not answer"))?
                .json()
                .await
                .context("the front's answer")?;
            answered.fetch_add(1, Ordering::Relaxed);
            placed.push(answer);
        }
    };
    let per_worker =
        futures::future::try_join_all((0..batch.concurrency.max(1)).map(|_| worker())).await?;
    Ok((
        per_worker.into_iter().flatten().collect(),
        started.elapsed(),
    ))
}

/// Keeps `service` stopped for at least `down`, and until an order was answered meanwhile (so
/// the outage is certainly seen mid-transaction), then starts it again. The caller stopped it.
pub async fn outage(
    service: &Service,
    down: Duration,
    answered: &AtomicUsize,
) -> anyhow::Result<String> {
    let started = tokio::time::Instant::now();
    // The orders may all be stuck behind the outage: then end it anyway after a grace period.
    let give_up = started + down + Duration::from_secs(30);
    loop {
        let now = tokio::time::Instant::now();
        let seen = answered.load(Ordering::Relaxed) > 0;
        if now >= started + down && (seen || now >= give_up) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = answered.load(Ordering::Relaxed);
    service.restart().await?;
    Ok(format!(
        "{} was down for {:.1} s; {during} orders were answered meanwhile",
        service.name(),
        started.elapsed().as_secs_f64()
    ))
}

/// Learns every order's final outcome. For saga and TCC (`dtm` given) each gid is asked until
/// final (at most `settle`); a gid the coordinator never heard of never started. For AT the
/// front's answer is final except "pending", counted as unknown.
pub async fn settle(
    placed: &[Placed],
    dtm: Option<&DtmClient>,
    settle: Duration,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let deadline = tokio::time::Instant::now() + settle;
    for p in placed {
        if p.outcome == Outcome::Pending {
            tally.answered_pending += 1;
        }
        let injected = p.message.contains("refused");
        if p.outcome == Outcome::RolledBack && !injected && tally.other_reasons.len() < 3 {
            tally.other_reasons.push(p.message.clone());
        }
        let committed = match (dtm, p.outcome) {
            (Some(dtm), _) if !p.gid.is_empty() => {
                let status = final_status(dtm, &p.gid, deadline).await?;
                let committed = status == Some(GlobalStatus::Succeed);
                let contradicts = match p.outcome {
                    Outcome::Committed => !committed,
                    Outcome::RolledBack => committed,
                    Outcome::Pending => false,
                };
                if contradicts {
                    bail!(
                        "{} ended {status:?}, but the front answered {:?}",
                        p.gid,
                        p.outcome
                    );
                }
                Some(committed)
            }
            (_, Outcome::Committed) => Some(true),
            (_, Outcome::RolledBack) => Some(false),
            (_, Outcome::Pending) => None,
        };
        match committed {
            Some(true) => tally.ok += 1,
            Some(false) => tally.failed += 1,
            None => tally.unknown += 1,
        }
    }
    Ok(tally)
}

async fn final_status(
    dtm: &DtmClient,
    gid: &str,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Option<GlobalStatus>> {
    loop {
        match dtm.status(gid).await {
            Ok(None) => return Ok(None),
            Ok(Some(s)) if s.is_final() => return Ok(Some(s)),
            Ok(Some(s)) if tokio::time::Instant::now() >= deadline => {
                bail!("{gid} is still {s:?} after --settle-secs; the coordinator keeps retrying it")
            }
            Err(e) if !e.is_retryable() || tokio::time::Instant::now() >= deadline => {
                return Err(e).context(format!("asking the coordinator about {gid}"))
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
