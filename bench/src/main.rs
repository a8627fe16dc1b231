//! `seata-bench`: drives a running `seata-tc` with global transactions through the real
//! protocol (begin, B AT branch registers with distinct lock keys, commit), with its own RM
//! connection answering phase two, and prints one line:
//! `tx_per_s=<n> p50_ms=<n> p99_ms=<n> p999_ms=<n>`.
//!
//! `--echo-baseline` instead measures round trips per second against an in-process tokio echo
//! server on the same frames: the ceiling the TC is compared with.

mod echo;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use seata_protocol::rpc::{
    NoRequests, Registration, RequestHandler, RpcHandle, TcClient, TcClientConfig,
};
use seata_protocol::{
    BranchCommitResponse, BranchRegisterRequest, BranchRegisterResponse, BranchRollbackResponse,
    BranchStatus, BranchType, GlobalBeginRequest, GlobalBeginResponse, GlobalCommitRequest,
    GlobalCommitResponse, Message, TxResult,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for seata-tc.
#[derive(Debug, Parser)]
#[command(name = "seata-bench", version, about)]
struct Args {
    /// TC address.
    #[arg(long, default_value = "127.0.0.1:8091")]
    tc: String,
    /// Global transactions in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to run (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// AT branches per transaction.
    #[arg(long, default_value_t = 2)]
    branches: usize,
    /// TM connections (requests spread over them).
    #[arg(long, default_value_t = 1)]
    tm_connections: usize,
    /// Turn off client-side batching into MergedWarpMessage.
    #[arg(long)]
    no_batching: bool,
    /// Measure a bare tokio echo server's round trips/s instead of the TC.
    #[arg(long)]
    echo_baseline: bool,
}

const RESOURCE: &str = "jdbc:mysql://127.0.0.1:3306/bench";

/// Answers every phase-two request with success.
#[derive(Debug, Default)]
struct AlwaysDone {
    phase_two: AtomicU64,
}

impl RequestHandler for AlwaysDone {
    fn on_request(
        self: Arc<Self>,
        _conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        self.phase_two.fetch_add(1, Ordering::Relaxed);
        let reply: Option<Message> = match msg {
            Message::BranchCommitRequest(r) => Some(
                BranchCommitResponse {
                    result: TxResult::success(),
                    xid: r.xid,
                    branch_id: r.branch_id,
                    branch_status: BranchStatus::PhaseTwoCommitted,
                }
                .into(),
            ),
            Message::BranchRollbackRequest(r) => Some(
                BranchRollbackResponse {
                    result: TxResult::success(),
                    xid: r.xid,
                    branch_id: r.branch_id,
                    branch_status: BranchStatus::PhaseTwoRollbacked,
                }
                .into(),
            ),
            _ => None,
        };
        Box::pin(async move { reply })
    }
}

async fn one_transaction(
    tm: &TcClient,
    rm: &TcClient,
    worker: usize,
    seq: u64,
    branches: usize,
) -> anyhow::Result<()> {
    let begin: GlobalBeginResponse = tm
        .request(GlobalBeginRequest {
            timeout: 60_000,
            transaction_name: "bench".into(),
        })
        .await?;
    if !begin.result.is_success() {
        bail!("begin failed: {}", begin.result.msg);
    }
    for b in 0..branches {
        let r: BranchRegisterResponse = rm
            .request(BranchRegisterRequest {
                xid: begin.xid.clone(),
                branch_type: BranchType::At,
                resource_id: RESOURCE.into(),
                lock_key: format!("bench_t:{worker}_{seq}_{b}"),
                application_data: String::new(),
            })
            .await?;
        if !r.result.is_success() {
            bail!("branch register failed: {}", r.result.msg);
        }
    }
    let c: GlobalCommitResponse = tm
        .request(GlobalCommitRequest {
            xid: begin.xid,
            extra_data: String::new(),
        })
        .await?;
    if !c.result.is_success() {
        bail!("commit failed: {}", c.result.msg);
    }
    Ok(())
}

async fn run_tc(args: Args) -> anyhow::Result<()> {
    let mut tm_config = TcClientConfig::new(
        vec![args.tc.clone(); args.tm_connections.max(1)],
        Registration::Tm {
            application_id: "seata-bench".into(),
            transaction_service_group: "bench_group".into(),
        },
    );
    tm_config.rpc.batch_requests = !args.no_batching;
    let mut rm_config = TcClientConfig::new(
        vec![args.tc.clone()],
        Registration::Rm {
            application_id: "seata-bench".into(),
            transaction_service_group: "bench_group".into(),
            resource_ids: vec![RESOURCE.into()],
        },
    );
    rm_config.rpc.batch_requests = !args.no_batching;
    let wait = Duration::from_secs(10);
    let tm = TcClient::connect(tm_config, Arc::new(NoRequests), wait)
        .await
        .context("TM connection")?;
    let handler = Arc::new(AlwaysDone::default());
    let rm = TcClient::connect(rm_config, handler.clone(), wait)
        .await
        .context("RM connection")?;

    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(args.duration);
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let (tm, rm, errors) = (tm.clone(), rm.clone(), errors.clone());
        let branches = args.branches;
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut seq = 0u64;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let outcome = one_transaction(&tm, &rm, worker, seq, branches).await;
                seq += 1;
                if start < warmup_end {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        let _ = hist.record(start.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("transaction failed: {e:#}");
                        }
                    }
                }
            }
            hist
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    for w in workers {
        all.add(w.await?)?;
    }
    let secs = args.duration as f64;
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    eprintln!(
        "transactions={} errors={} phase_two_requests={}",
        all.len(),
        errors.load(Ordering::Relaxed),
        handler.phase_two.load(Ordering::Relaxed)
    );
    println!(
        "tx_per_s={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2}",
        all.len() as f64 / secs,
        ms(0.5),
        ms(0.99),
        ms(0.999)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.echo_baseline {
        return echo::run(args.concurrency, args.duration).await;
    }
    run_tc(args).await
}
