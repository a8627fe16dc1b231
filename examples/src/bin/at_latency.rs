//! `at_latency`: what AT mode costs one UPDATE. In one run it alternates
//!
//! - **global**: `GlobalTx::run` (global begin), a one-row `UPDATE` through the AT proxy
//!   (its own local transaction: before image, update and after image in one round trip while
//!   the begin is answered and the branch registers, then the undo log with the commit),
//!   global commit;
//! - **global eager**: the same with `overlap_begin(false)`: the UPDATE starts only once the
//!   TC has answered the begin (the behaviour before the overlap, for comparison; left out
//!   with `--no-eager`, to compare with builds that had no such variant); and
//! - **local**: `START TRANSACTION`, the same `UPDATE`, `COMMIT` on a plain `mysql_async`
//!   connection,
//!
//! and prints p50/p99 of each and their ratio, plus an empty global transaction (begin and
//! commit only) to separate the TC's share from the proxy's, and the p50 of each phase of a
//! global one. Then it runs one more of each with the session's `Questions`/`Com_*` counters
//! read before and after, to show the MySQL statements each costs on the critical path, and
//! counts the requests this process sent to the TC (TM and RM share one request-id counter).
//!
//! `--mode at+tcc` adds, alternating with the others, a global transaction of one AT branch
//! (the same UPDATE) and one TCC branch (the fenced `credit` action of
//! `seata_examples::bank`, on the same database): its p50/p99, its phases (begin, AT update,
//! TCC call = register + fenced prepare, commit) and its MySQL statements, the fence's
//! included (the fence pool has one connection, so its counters are one session's). A
//! transaction with a TCC branch is committed synchronously: the TC sends each branch its
//! BranchCommit before it answers the TM, where an AT-only one is answered at once and its
//! branches committed in the background.
//!
//! ```sh
//! cargo build --release -p seata-tc -p seata-examples
//! target/release/seata-tc --listen 127.0.0.1:0 --store memory   # prints its address
//! target/release/at_latency --tc 127.0.0.1:PORT --mysql mysql://root@127.0.0.1:3306
//! target/release/at_latency --tc 127.0.0.1:PORT --mysql mysql://root@127.0.0.1:3306 --mode at+tcc
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hdrhistogram::Histogram;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use seata_examples::bank::{TccAccounts, ACCOUNT_DDL};
use seata_examples::{db_opts, drop_database, init_tracing, recreate_database, server_opts};
use seata_protocol::rpc::next_request_id;
use seata_rm::at::{AtConfig, AtConnection};
use seata_rm::client::{RmClient, RmClientConfig};
use seata_rm::error::RmError;
use seata_rm::tcc::TccActionRef;
use seata_tm::context::with_xid;
use seata_tm::{GlobalTx, TmClient, TmConfig};
use serde_json::json;

/// Latency of a one-row UPDATE in a global transaction vs a local one.
#[derive(Debug, Parser)]
#[command(name = "at_latency", about)]
struct Args {
    /// seata-tc address.
    #[arg(long, default_value = "127.0.0.1:8091")]
    tc: String,
    /// MySQL server URL (no database: the example creates its own).
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    mysql: String,
    /// Measured transactions of each kind.
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
    /// Unmeasured transactions of each kind first (metadata cache, prepared statements).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// The tokio runtime: `multi` (the default `#[tokio::main]` runtime) or `current` (one
    /// thread: no wake-ups across threads, which a sequential client does not need).
    #[arg(long, value_enum, default_value_t = Runtime::Multi)]
    runtime: Runtime,
    /// Leave out the eager variant (`global_eager`): each iteration is then the global, the
    /// local and the empty transaction only, as before the begin overlapped the closure,
    /// so figures compare with runs of earlier builds under the same load.
    #[arg(long)]
    no_eager: bool,
    /// `at`: AT against local only; `at+tcc`: also one AT + one TCC branch per transaction.
    #[arg(long, value_enum, default_value_t = Mode::At)]
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    At,
    #[value(name = "at+tcc")]
    AtTcc,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Runtime {
    Multi,
    Current,
}

const DB: &str = "seata_example_latency";
const UPDATE: &str = "UPDATE account SET balance = balance + 1 WHERE id = ?";

async fn local_tx(conn: &mut Conn) -> anyhow::Result<()> {
    conn.query_drop("START TRANSACTION").await?;
    conn.exec_drop(UPDATE, (2,)).await?;
    conn.query_drop("COMMIT").await?;
    Ok(())
}

/// `overlap`: the UPDATE starts while the GlobalBegin is on its way (the default); without
/// it the closure starts after the TC's answer, one round trip later.
async fn global_tx(tm: &TmClient, conn: &mut AtConnection, overlap: bool) -> anyhow::Result<()> {
    GlobalTx::new(tm, "at-latency")
        .timeout(Duration::from_secs(60))
        .overlap_begin(overlap)
        .run(|_| async { conn.exec_drop(UPDATE, (1,)).await })
        .await?;
    Ok(())
}

/// The TCC branch's call: 1 into account 3, booked as incoming, confirmed in phase two.
async fn tcc_call(credit: &TccActionRef) -> Result<i64, RmError> {
    credit.call(json!({"id": 3, "amount": 1})).await
}

async fn at_tcc_tx(
    tm: &TmClient,
    conn: &mut AtConnection,
    credit: &TccActionRef,
) -> anyhow::Result<()> {
    tm.run("at-tcc-latency", Duration::from_secs(60), |_| async {
        conn.exec_drop(UPDATE, (1,)).await?;
        tcc_call(credit).await?;
        Ok::<_, RmError>(())
    })
    .await?;
    Ok(())
}

/// Requests this process sent to the TC since `before` (a [`next_request_id`] taken then,
/// itself not counted): the request-id counter is shared by TM and RM.
fn requests_since(before: i32) -> i32 {
    next_request_id() - before - 1
}

async fn empty_global_tx(tm: &TmClient) -> anyhow::Result<()> {
    tm.run("at-latency-empty", Duration::from_secs(60), |_| async {
        Ok::<_, std::convert::Infallible>(())
    })
    .await?;
    Ok(())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The session's `Questions` and non-zero-able `Com_*` counters (text protocol, so the read
/// itself is one question and one `Com_show_status`).
async fn counters(conn: &mut Conn) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SHOW SESSION STATUS WHERE Variable_name LIKE 'Com\\_%' \
             OR Variable_name = 'Questions'",
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect())
}

/// The same counters read through the AT proxy, as a pass-through SHOW: `raw()` would make the
/// proxy forget the session's database and pay a `SELECT DATABASE()` in the measured statement.
async fn proxied_counters(conn: &mut AtConnection) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SHOW SESSION STATUS WHERE Variable_name LIKE 'Com\\_%' \
             OR Variable_name = 'Questions'",
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect())
}

/// Counter deltas of `after - before`, minus the counters' own `SHOW STATUS`.
fn deltas(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> String {
    after
        .iter()
        .filter_map(|(k, v)| {
            let mut d = v - before.get(k).copied().unwrap_or(0);
            if k == "Questions" || k == "Com_show_status" {
                d -= 1;
            }
            (d != 0).then(|| format!("{k}={d}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let mut runtime = match args.runtime {
        Runtime::Multi => tokio::runtime::Builder::new_multi_thread(),
        Runtime::Current => tokio::runtime::Builder::new_current_thread(),
    };
    runtime.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let server = server_opts(&args.mysql)?;
    let rows = "INSERT INTO account (id, balance) VALUES (1, 0), (2, 0), (3, 0)";
    recreate_database(&server, DB, &[ACCOUNT_DDL, rows]).await?;
    let opts = db_opts(&server, DB, 4)?;
    let tm = TmClient::connect(TmConfig::new("at-latency", vec![args.tc.clone()]))
        .await
        .context("TM cannot reach seata-tc; start it and pass its address with --tc")?;
    let rm = RmClient::connect(RmClientConfig::new("at-latency", vec![args.tc.clone()])).await?;
    let at = rm.at(AtConfig::default())?;
    let ds = rm.at_data_source(&at, opts.clone()).await?;
    let plain = Pool::new(opts.clone());
    // The TCC branch's fence: one connection, not reset when it goes back to the pool, so
    // its statement counters below are the fence's whole work.
    let tcc = if args.mode == Mode::AtTcc {
        let one = PoolOpts::default()
            .with_constraints(PoolConstraints::new(1, 1).context("pool of one")?)
            .with_reset_connection(false);
        let fence_pool = Pool::new(OptsBuilder::from_opts(opts).pool_opts(one));
        Some(TccAccounts::register(&rm, DB, fence_pool).await?)
    } else {
        None
    };
    // One connection each, held throughout: both paths pay the same (zero) pool cost.
    let mut proxied = ds.get_conn().await?;
    let mut local = plain.get_conn().await?;

    let mut global_h = Histogram::<u64>::new(3)?;
    let mut eager_h = Histogram::<u64>::new(3)?;
    let mut mixed_h = Histogram::<u64>::new(3)?;
    let mut local_h = Histogram::<u64>::new(3)?;
    let mut empty_h = Histogram::<u64>::new(3)?;
    for i in 0..args.warmup + args.iterations {
        // Alternate, so all see the same machine load and server state.
        let t = Instant::now();
        global_tx(&tm, &mut proxied, true).await?;
        let g = micros(t.elapsed());
        let ge = if args.no_eager {
            None
        } else {
            let t = Instant::now();
            global_tx(&tm, &mut proxied, false).await?;
            Some(micros(t.elapsed()))
        };
        let m = match &tcc {
            Some(tcc) => {
                let t = Instant::now();
                at_tcc_tx(&tm, &mut proxied, &tcc.credit).await?;
                Some(micros(t.elapsed()))
            }
            None => None,
        };
        let t = Instant::now();
        local_tx(&mut local).await?;
        let l = micros(t.elapsed());
        let t = Instant::now();
        empty_global_tx(&tm).await?;
        let e = micros(t.elapsed());
        if i >= args.warmup {
            global_h.record(g)?;
            if let Some(ge) = ge {
                eager_h.record(ge)?;
            }
            if let Some(m) = m {
                mixed_h.record(m)?;
            }
            local_h.record(l)?;
            empty_h.record(e)?;
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let (gp50, gp99) = (ms(&global_h, 0.5), ms(&global_h, 0.99));
    let (lp50, lp99) = (ms(&local_h, 0.5), ms(&local_h, 0.99));
    println!(
        "iterations={} (after {} warm-up)",
        args.iterations, args.warmup
    );
    println!("global_update p50_ms={gp50:.3} p99_ms={gp99:.3}");
    if !args.no_eager {
        println!(
            "global_eager  p50_ms={:.3} p99_ms={:.3}  (the closure starts after the begin's answer)",
            ms(&eager_h, 0.5),
            ms(&eager_h, 0.99)
        );
    }
    if tcc.is_some() {
        println!(
            "at_tcc_global p50_ms={:.3} p99_ms={:.3}  (the same UPDATE + one TCC branch)",
            ms(&mixed_h, 0.5),
            ms(&mixed_h, 0.99)
        );
    }
    println!("local_update  p50_ms={lp50:.3} p99_ms={lp99:.3}");
    println!(
        "empty_global  p50_ms={:.3} p99_ms={:.3}  (begin + commit, no SQL)",
        ms(&empty_h, 0.5),
        ms(&empty_h, 0.99)
    );
    println!(
        "ratio         p50={:.2} p99={:.2}",
        gp50 / lp50.max(f64::EPSILON),
        gp99 / lp99.max(f64::EPSILON)
    );
    if !args.no_eager {
        println!(
            "ratio_eager   p50={:.2} p99={:.2}",
            ms(&eager_h, 0.5) / lp50.max(f64::EPSILON),
            ms(&eager_h, 0.99) / lp99.max(f64::EPSILON)
        );
    }

    // Where a global UPDATE's time goes: the same transaction, phase by phase (with the TCC
    // call between the update and the commit in at+tcc mode).
    let mut phases: Vec<Histogram<u64>> = (0..4)
        .map(|_| Histogram::<u64>::new(3))
        .collect::<Result<_, _>>()?;
    let kinds: &[bool] = if tcc.is_some() {
        &[false, true]
    } else {
        &[false]
    };
    for &with_tcc in kinds {
        for h in &mut phases {
            h.reset();
        }
        for i in 0..args.warmup + args.iterations / 4 {
            let t = Instant::now();
            let mut tx = tm
                .begin("at-latency-phases", Duration::from_secs(60))
                .await?;
            let begun = t.elapsed();
            with_xid(tx.xid(), proxied.exec_drop(UPDATE, (1,))).await?;
            let updated = t.elapsed();
            if let (true, Some(tcc)) = (with_tcc, &tcc) {
                with_xid(tx.xid(), tcc_call(&tcc.credit)).await?;
            }
            let called = t.elapsed();
            tx.commit().await?;
            let committed = t.elapsed();
            if i >= args.warmup {
                let spans = [begun, updated - begun, called - updated, committed - called];
                for (h, d) in phases.iter_mut().zip(spans) {
                    h.record(micros(d))?;
                }
            }
        }
        let p = |i: usize| phases.get(i).map_or(0.0, |h| ms(h, 0.5));
        if with_tcc {
            println!(
                "at_tcc_phases p50_ms: begin={:.3} update={:.3} tcc_call={:.3} commit={:.3}",
                p(0),
                p(1),
                p(2),
                p(3)
            );
        } else {
            println!(
                "global_phases p50_ms: begin={:.3} update={:.3} commit={:.3}",
                p(0),
                p(1),
                p(3)
            );
        }
    }

    // Round trips on each path's MySQL session (the undo-log delete after the global commit
    // runs later, on another pooled connection, off the critical path).
    let before = proxied_counters(&mut proxied).await?;
    global_tx(&tm, &mut proxied, true).await?;
    let after = proxied_counters(&mut proxied).await?;
    println!("global_update mysql: {}", deltas(&before, &after));
    if let Some(tcc) = &tcc {
        let mut fence_conn = tcc.fence.pool().get_conn().await?;
        let fence_before = counters(&mut fence_conn).await?;
        drop(fence_conn);
        let before = proxied_counters(&mut proxied).await?;
        at_tcc_tx(&tm, &mut proxied, &tcc.credit).await?;
        let after = proxied_counters(&mut proxied).await?;
        let mut fence_conn = tcc.fence.pool().get_conn().await?;
        let fence_after = counters(&mut fence_conn).await?;
        drop(fence_conn);
        println!("at_tcc_global mysql: {}", deltas(&before, &after));
        println!(
            "at_tcc_global mysql (fence session: prepare + commit): {}",
            deltas(&fence_before, &fence_after)
        );
    }
    let before = counters(&mut local).await?;
    local_tx(&mut local).await?;
    let after = counters(&mut local).await?;
    println!("local_update  mysql: {}", deltas(&before, &after));

    // Requests to the TC on the critical path (TC -> RM requests are not counted here).
    // Fewest of five runs each, so a heartbeat in between does not count.
    let mut fewest = [i32::MAX; 3];
    for _ in 0..5 {
        let before = next_request_id();
        global_tx(&tm, &mut proxied, true).await?;
        fewest[0] = fewest[0].min(requests_since(before));
        let before = next_request_id();
        empty_global_tx(&tm).await?;
        fewest[1] = fewest[1].min(requests_since(before));
        if let Some(tcc) = &tcc {
            let before = next_request_id();
            at_tcc_tx(&tm, &mut proxied, &tcc.credit).await?;
            fewest[2] = fewest[2].min(requests_since(before));
        }
    }
    let [global, empty, mixed] = fewest;
    print!("tc_requests   global_update={global} empty_global={empty}");
    if tcc.is_some() {
        print!(" at_tcc_global={mixed}");
    }
    println!("  (sent by TM + RM; plus TC -> RM BranchCommits, synchronous with a TCC branch)");

    drop(proxied);
    drop(local);
    // Phase two deletes the undo logs in the background; let it finish before disconnecting.
    seata_examples::wait_undo_log_empty(ds.pool(), Duration::from_secs(30)).await?;
    ds.pool().clone().disconnect().await?;
    plain.disconnect().await?;
    if let Some(tcc) = tcc {
        tcc.fence.pool().clone().disconnect().await?;
    }
    drop_database(&server, DB).await?;
    Ok(())
}
