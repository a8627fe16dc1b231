//! `dtm-bench`: closed-loop load on a DTM-compatible coordinator's HTTP API (`/api/dtmsvr`) or,
//! with `--proto grpc`, its gRPC API (`dtmgimp.Dtm` at `--grpc`, submits with `WaitResult`
//! through `seata-dtm`, branches as an in-process tonic service; see [`grpc`]).
//!
//! `--concurrency` workers each submit a saga of `--steps` steps (action + compensate URL each,
//! payload `{"amount":30}`), wait until it is done, and start the next one. The branches are
//! answered 200 by an in-process axum server on 127.0.0.1:0. After the run a sample of the
//! transactions is read back with `GET query?gid=` and must have ended `succeed` with every
//! action succeeded and no compensation called. Prints one line:
//! `proto=.. api=.. wait=.. tx_per_s=.. p50_ms=.. p99_ms=.. errors=.. verified=ok/n sagas_total=..`
//! (`sagas_total` counts the warm-up too; the exit code is 2 when a checked saga was wrong).

mod api;
mod branches;
mod grpc;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use api::{Api, Wait};
use branches::Branches;
use clap::Parser;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for DTM-compatible coordinators (seata-tc's DTM mode, DTM, dtmrs).
#[derive(Debug, Parser)]
#[command(name = "dtm-bench", version, about)]
struct Args {
    /// Base URL of the coordinator's HTTP API (submits with `--proto http`; `query` always).
    #[arg(long, default_value = "http://127.0.0.1:36789/api/dtmsvr")]
    dtm: String,
    /// The API sagas are submitted through (and the protocol of their branches).
    #[arg(long, value_enum, default_value_t = Proto::Http)]
    proto: Proto,
    /// `host:port` of the coordinator's gRPC API (`--proto grpc`).
    #[arg(long, default_value = "127.0.0.1:36790")]
    grpc: String,
    /// Sagas in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Steps per saga.
    #[arg(long, default_value_t = 2)]
    steps: usize,
    /// Request shape the server speaks.
    #[arg(long, value_enum, default_value_t = Api::Auto)]
    api: Api,
    /// How a worker learns its saga is done.
    #[arg(long, value_enum, default_value_t = Wait::Auto)]
    wait: Wait,
    /// Transactions read back with `query` after the run.
    #[arg(long, default_value_t = 200)]
    verify: usize,
    /// Seconds one saga may take before it counts as an error.
    #[arg(long, default_value_t = 30)]
    tx_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Proto {
    /// DTM's HTTP API, HTTP branches.
    Http,
    /// DTM's gRPC API (`WaitResult`), gRPC branches.
    Grpc,
}

/// Shared by the workers.
#[derive(Debug)]
struct Ctx {
    /// The gRPC client (`--proto grpc`).
    grpc: Option<seata_dtm::DtmClient>,
    http: reqwest::Client,
    base: String,
    busi: String,
    api: Api,
    wait: Wait,
    steps: usize,
    tx_timeout: Duration,
    branches: Arc<Branches>,
    queries: AtomicU64,
    /// Sagas done, warm-up included (for CPU-per-saga figures taken from outside).
    completed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

type Answer = (u16, Vec<u8>);

impl Ctx {
    async fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<Answer> {
        let r = self
            .http
            .post(format!("{}/{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        Ok((r.status().as_u16(), r.bytes().await?.to_vec()))
    }

    /// `gid` is one of ours (`b<digits>-<n>-<n>`): URL-safe as it is.
    async fn query(&self, gid: &str) -> anyhow::Result<Option<api::Outcome>> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let r = self
            .http
            .get(format!("{}/query?gid={gid}", self.base))
            .send()
            .await?;
        let code = r.status().as_u16();
        api::parse_query(self.api, code, &r.bytes().await?)
    }

    fn error(&self, kind: String, detail: impl std::fmt::Display) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let seen: u64 = e.values().sum();
        if seen < 5 {
            eprintln!("saga failed ({kind}): {detail}");
        }
        *e.entry(kind).or_default() += 1;
    }
}

/// A failed saga: a short kind for the tally and the detail for the first few.
struct Failure(String, String);

fn fail(kind: impl Into<String>, detail: impl std::fmt::Display) -> Failure {
    Failure(kind.into(), detail.to_string())
}

/// Submits one saga and returns once it is done.
async fn one_saga(ctx: &Ctx, gid: &str) -> Result<(), Failure> {
    if let Some(dtm) = &ctx.grpc {
        return grpc::submit(dtm, gid, &ctx.busi, ctx.steps)
            .await
            .map_err(|e| {
                let kind = if e.is_failure() {
                    "submit_failure"
                } else if e.is_ongoing() {
                    "submit_ongoing"
                } else {
                    "submit_grpc"
                };
                fail(kind, e)
            });
    }
    let wait_result = ctx.wait == Wait::Result;
    let body = api::submit_body(ctx.api, gid, &ctx.busi, ctx.steps, wait_result);
    let last_action = (!wait_result).then(|| ctx.branches.wait_for(gid));
    let answer = ctx.post("submit", &body).await;
    let (code, text) = match answer {
        Ok(a) => a,
        Err(e) => {
            ctx.branches.forget(gid);
            return Err(fail("submit_transport", format!("{e:#}")));
        }
    };
    // A 200 whose body says FAILURE is a refusal too (dtmrs answers conflicts that way).
    if code != 200 || text.windows(7).any(|w| w == b"FAILURE") {
        ctx.branches.forget(gid);
        let text = String::from_utf8_lossy(&text);
        return Err(fail(format!("submit_{code}"), text));
    }
    let Some(last_action) = last_action else {
        return Ok(());
    };
    let deadline = Instant::now() + ctx.tx_timeout;
    if tokio::time::timeout(ctx.tx_timeout, last_action)
        .await
        .is_err()
    {
        ctx.branches.forget(gid);
        return Err(fail("timeout_last_action", gid));
    }
    let mut delay = Duration::from_millis(1);
    loop {
        match ctx.query(gid).await {
            Ok(Some(o)) if o.status == "succeed" => return Ok(()),
            Ok(Some(o)) if o.status == "failed" => return Err(fail("saga_failed", gid)),
            Ok(_) => {}
            Err(e) => return Err(fail("query", format!("{e:#}"))),
        }
        if Instant::now() >= deadline {
            return Err(fail("timeout_status", gid));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_millis(10));
    }
}

/// Reads back `n` transactions spread over `gids`; returns how many ended cleanly.
async fn verify(ctx: &Ctx, gids: &[String], n: usize) -> (usize, usize) {
    let n = n.min(gids.len());
    let mut ok = 0;
    for i in 0..n {
        let gid = &gids[i * gids.len() / n];
        match ctx.query(gid).await {
            Ok(Some(o)) if o.is_clean_success(ctx.steps) => ok += 1,
            other => {
                if i - ok < 3 {
                    eprintln!("verify {gid}: {other:?}");
                }
            }
        }
    }
    (ok, n)
}

fn resolve(args: &Args, probe: (u16, Vec<u8>)) -> anyhow::Result<(Api, Wait)> {
    let api = match args.api {
        Api::Auto => api::detect(probe.0, &probe.1)?,
        a => a,
    };
    let wait = match (args.wait, api) {
        (Wait::Auto, Api::Dtmrs) => Wait::Poll,
        (Wait::Auto, _) => Wait::Result,
        (w, _) => w,
    };
    Ok((api, wait))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = args.dtm.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(args.tx_timeout + 5))
        .build()?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis()
        % 100_000_000;
    let probe = http
        .get(format!("{base}/query?gid=bench-probe-{run_id}"))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let probe = (probe.status().as_u16(), probe.bytes().await?.to_vec());
    let (api, wait) = resolve(&args, probe)?;
    let (grpc, branches, busi) = match args.proto {
        Proto::Http => {
            let (branches, busi) = branches::start(args.steps).await?;
            (None, branches, busi)
        }
        Proto::Grpc => {
            if api != Api::Dtm || wait != Wait::Result {
                anyhow::bail!("--proto grpc needs a DTM-compatible server and --wait result");
            }
            let branches = Branches::new(args.steps);
            let busi = grpc::start(branches.clone()).await?;
            let dtm = seata_dtm::DtmClient::grpc(&args.grpc)?;
            (Some(dtm), branches, busi)
        }
    };
    let ctx = Arc::new(Ctx {
        grpc,
        http,
        base,
        busi,
        api,
        wait,
        steps: args.steps,
        tx_timeout: Duration::from_secs(args.tx_timeout),
        branches: branches.clone(),
        queries: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
    });

    let warmup_end = Instant::now() + Duration::from_secs(args.warmup);
    let end = warmup_end + Duration::from_secs(args.duration);
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let ctx = ctx.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut done = Vec::new();
            for seq in 0u64.. {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let gid = format!("b{run_id}-{w}-{seq}");
                let outcome = one_saga(&ctx, &gid).await;
                if outcome.is_ok() {
                    ctx.completed.fetch_add(1, Ordering::Relaxed);
                }
                match outcome {
                    Ok(()) if start >= warmup_end => {
                        let _ = hist.record(start.elapsed().as_micros() as u64);
                        done.push(gid);
                    }
                    Ok(()) => {}
                    Err(Failure(kind, detail)) => {
                        let kind = if start < warmup_end {
                            format!("warmup_{kind}")
                        } else {
                            kind
                        };
                        ctx.error(kind, detail);
                    }
                }
            }
            (hist, done)
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    let mut gids = Vec::new();
    for w in workers {
        let (h, d) = w.await?;
        all.add(h)?;
        gids.extend(d);
    }
    let measured_queries = ctx.queries.load(Ordering::Relaxed);
    let (ok, checked) = verify(&ctx, &gids, args.verify).await;

    let c = &branches.calls;
    let errors = ctx.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let error_count: u64 = errors
        .iter()
        .filter(|(k, _)| !k.starts_with("warmup_"))
        .map(|(_, v)| v)
        .sum();
    eprintln!(
        "sagas={} errors={errors:?} branch_calls: actions={} compensations={} malformed={} get={} queries_per_saga={:.2}",
        all.len(),
        c.actions.load(Ordering::Relaxed),
        c.compensations.load(Ordering::Relaxed),
        c.malformed.load(Ordering::Relaxed),
        c.gets.load(Ordering::Relaxed),
        measured_queries as f64 / (all.len() + error_count).max(1) as f64,
    );
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    let api_name = if api == Api::Dtmrs { "dtmrs" } else { "dtm" };
    let wait_name = if wait == Wait::Poll {
        "poll"
    } else {
        "wait_result"
    };
    let proto = if args.proto == Proto::Grpc {
        "grpc"
    } else {
        "http"
    };
    println!(
        "proto={proto} api={api_name} wait={wait_name} tx_per_s={:.0} p50_ms={:.2} p99_ms={:.2} errors={error_count} verified={ok}/{checked} sagas_total={}",
        all.len() as f64 / args.duration as f64,
        ms(0.5),
        ms(0.99),
        ctx.completed.load(Ordering::Relaxed),
    );
    let bad_calls = c.compensations.load(Ordering::Relaxed) + c.malformed.load(Ordering::Relaxed);
    if ok < checked || bad_calls > 0 {
        eprintln!("the coordinator did not run the sagas as submitted (see above)");
        std::process::exit(2);
    }
    Ok(())
}
