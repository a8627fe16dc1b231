//! `at_latency`: what AT mode costs one UPDATE. In one run it alternates
//!
//! - **global**: `TmClient::run` (global begin), a one-row `UPDATE` through the AT proxy
//!   (its own local transaction: before image, update and after image in one round trip while
//!   the branch registers, then the undo log with the commit), global commit; and
//! - **local**: `START TRANSACTION`, the same `UPDATE`, `COMMIT` on a plain `mysql_async`
//!   connection,
//!
//! and prints p50/p99 of each and their ratio, plus an empty global transaction (begin and
//! commit only) to separate the TC's share from the proxy's, and the p50 of each phase of a
//! global one. Then it runs one more of each with the session's `Questions`/`Com_*` counters
//! read before and after, to show the MySQL statements each costs on the critical path.
//!
//! ```sh
//! cargo build --release -p seata-tc -p seata-examples
//! target/release/seata-tc --listen 127.0.0.1:0 --store memory   # prints its address
//! target/release/at_latency --tc 127.0.0.1:PORT --mysql mysql://root@127.0.0.1:3306
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hdrhistogram::Histogram;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use seata_examples::{db_opts, drop_database, init_tracing, recreate_database, server_opts};
use seata_rm::at::{AtConfig, AtConnection};
use seata_rm::client::{RmClient, RmClientConfig};
use seata_tm::context::with_xid;
use seata_tm::{TmClient, TmConfig};

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

async fn global_tx(tm: &TmClient, conn: &mut AtConnection) -> anyhow::Result<()> {
    tm.run("at-latency", Duration::from_secs(60), |_| async {
        conn.exec_drop(UPDATE, (1,)).await
    })
    .await?;
    Ok(())
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
    recreate_database(
        &server,
        DB,
        &[
            "CREATE TABLE account (id INT PRIMARY KEY, balance BIGINT NOT NULL)",
            "INSERT INTO account VALUES (1, 0), (2, 0)",
        ],
    )
    .await?;
    let opts = db_opts(&server, DB, 4)?;
    let tm = TmClient::connect(TmConfig::new("at-latency", vec![args.tc.clone()]))
        .await
        .context("TM cannot reach seata-tc; start it and pass its address with --tc")?;
    let rm = RmClient::connect(RmClientConfig::new("at-latency", vec![args.tc.clone()])).await?;
    let at = rm.at(AtConfig::default())?;
    let ds = rm.at_data_source(&at, opts.clone()).await?;
    let plain = Pool::new(opts);
    // One connection each, held throughout: both paths pay the same (zero) pool cost.
    let mut proxied = ds.get_conn().await?;
    let mut local = plain.get_conn().await?;

    let mut global_h = Histogram::<u64>::new(3)?;
    let mut local_h = Histogram::<u64>::new(3)?;
    let mut empty_h = Histogram::<u64>::new(3)?;
    for i in 0..args.warmup + args.iterations {
        // Alternate, so both see the same machine load and server state.
        let t = Instant::now();
        global_tx(&tm, &mut proxied).await?;
        let g = micros(t.elapsed());
        let t = Instant::now();
        local_tx(&mut local).await?;
        let l = micros(t.elapsed());
        let t = Instant::now();
        empty_global_tx(&tm).await?;
        let e = micros(t.elapsed());
        if i >= args.warmup {
            global_h.record(g)?;
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

    // Where a global UPDATE's time goes: the same transaction, phase by phase.
    let mut phases = [
        Histogram::<u64>::new(3)?,
        Histogram::<u64>::new(3)?,
        Histogram::<u64>::new(3)?,
    ];
    for i in 0..args.warmup + args.iterations / 4 {
        let t = Instant::now();
        let mut tx = tm
            .begin("at-latency-phases", Duration::from_secs(60))
            .await?;
        let begun = t.elapsed();
        with_xid(tx.xid(), proxied.exec_drop(UPDATE, (1,))).await?;
        let updated = t.elapsed();
        tx.commit().await?;
        let committed = t.elapsed();
        if i >= args.warmup {
            for (h, d) in phases
                .iter_mut()
                .zip([begun, updated - begun, committed - updated])
            {
                h.record(micros(d))?;
            }
        }
    }
    println!(
        "global_phases p50_ms: begin={:.3} update={:.3} commit={:.3}",
        ms(&phases[0], 0.5),
        ms(&phases[1], 0.5),
        ms(&phases[2], 0.5)
    );

    // Round trips on each path's MySQL session (the undo-log delete after the global commit
    // runs later, on another pooled connection, off the critical path).
    let before = proxied_counters(&mut proxied).await?;
    global_tx(&tm, &mut proxied).await?;
    let after = proxied_counters(&mut proxied).await?;
    println!("global_update mysql: {}", deltas(&before, &after));
    let before = counters(&mut local).await?;
    local_tx(&mut local).await?;
    let after = counters(&mut local).await?;
    println!("local_update  mysql: {}", deltas(&before, &after));

    drop(proxied);
    drop(local);
    ds.pool().clone().disconnect().await?;
    plain.disconnect().await?;
    drop_database(&server, DB).await?;
    Ok(())
}
