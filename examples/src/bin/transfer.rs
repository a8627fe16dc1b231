//! `transfer`: money moves between two banks, each its own MySQL database and AT resource, in
//! global transactions coordinated by a running `seata-tc`.
//!
//! Each transfer debits an account in one bank and credits one in the other through the AT
//! proxy, inside `TmClient::run`. A transfer that would overdraw its source is rolled back
//! (the closure returns `Err`), as is a random share (`--fail-percent`) to exercise global
//! rollback. At the end it prints throughput and latency, waits for phase two to delete the
//! undo logs, and checks that the money across both banks is what it was at the start.
//!
//! ```sh
//! cargo run --release -p seata-tc -- --listen 127.0.0.1:8091 --store memory &
//! cargo run --release -p seata-examples --bin transfer -- \
//!     --tc 127.0.0.1:8091 --mysql mysql://root@127.0.0.1:3306 --workers 16 --transfers 2000
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use seata_examples::{db_opts, drop_database, init_tracing, recreate_database, server_opts};
use seata_rm::at::{AtConfig, DataSourceProxy};
use seata_rm::client::{RmClient, RmClientConfig};
use seata_tm::{TmClient, TmConfig, TxError};

/// Two-bank money transfer over AT mode.
#[derive(Debug, Parser)]
#[command(name = "transfer", about)]
struct Args {
    /// seata-tc address.
    #[arg(long, default_value = "127.0.0.1:8091")]
    tc: String,
    /// MySQL server URL (no database: the example creates its own).
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    mysql: String,
    /// Concurrent workers, each running one transfer at a time.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Transfers in total.
    #[arg(long, default_value_t = 2000)]
    transfers: usize,
    /// Accounts per bank.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Opening balance of every account.
    #[arg(long, default_value_t = 1000)]
    opening: i64,
    /// Share of transfers (%) that fail on purpose after both updates, to be rolled back.
    #[arg(long, default_value_t = 10)]
    fail_percent: u32,
    /// Keep the two databases afterwards (they are dropped by default).
    #[arg(long)]
    keep: bool,
    /// Baseline: the same updates as two plain local transactions, without Seata (not atomic
    /// across the banks; shows what MySQL alone sustains on this machine).
    #[arg(long)]
    no_seata: bool,
}

const BANKS: [&str; 2] = ["seata_example_bank_a", "seata_example_bank_b"];
const MOVE: &str = "UPDATE account SET balance = balance + ? WHERE id = ?";

/// Why a transfer was rolled back on purpose.
#[derive(Debug)]
enum Refused {
    Overdrawn,
    Injected,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Overdrawn => "insufficient funds",
            Refused::Injected => "injected failure",
        })
    }
}

impl std::error::Error for Refused {}

/// One transfer of `amount` from `from` (in bank `from_bank`) to `to` (in the other bank).
/// Bank A is always updated first, so two transfers never wait on each other's global row
/// locks in a cycle.
async fn transfer(
    banks: &[DataSourceProxy; 2],
    from_bank: usize,
    from: usize,
    to: usize,
    amount: i64,
    inject_failure: bool,
) -> anyhow::Result<()> {
    let (a, b, delta_a) = if from_bank == 0 {
        (from, to, -amount)
    } else {
        (to, from, amount)
    };
    let mut conn_a = banks[0].get_conn().await?;
    conn_a.exec_drop(MOVE, (delta_a, a)).await?;
    let mut conn_b = banks[1].get_conn().await?;
    conn_b.exec_drop(MOVE, (-delta_a, b)).await?;
    // Plain SELECTs pass through the proxy; this reads our own phase-one write.
    let source = if from_bank == 0 {
        &mut conn_a
    } else {
        &mut conn_b
    };
    let left: Option<i64> = source
        .exec_first("SELECT balance FROM account WHERE id = ?", (from,))
        .await?;
    if left.unwrap_or(0) < 0 {
        return Err(Refused::Overdrawn.into());
    }
    if inject_failure {
        return Err(Refused::Injected.into());
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Counts {
    committed: AtomicUsize,
    overdrawn: AtomicUsize,
    injected: AtomicUsize,
    failed: AtomicUsize,
}

async fn worker(
    tm: &TmClient,
    banks: &[DataSourceProxy; 2],
    args: &Args,
    next: &AtomicUsize,
    counts: &Counts,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new(3)?;
    let mut rng = fastrand::Rng::new();
    while next.fetch_add(1, Ordering::Relaxed) < args.transfers {
        let from_bank = rng.usize(..2);
        let (from, to) = (rng.usize(..args.accounts), rng.usize(..args.accounts));
        let amount = rng.i64(1..=100);
        let inject = rng.u32(..100) < args.fail_percent;
        let started = Instant::now();
        let result = if args.no_seata {
            // Without an XID bound the proxy passes every statement through.
            transfer(banks, from_bank, from, to, amount, inject)
                .await
                .map_err(TxError::Business)
        } else {
            tm.run("transfer", Duration::from_secs(60), |_| {
                transfer(banks, from_bank, from, to, amount, inject)
            })
            .await
        };
        latency.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))?;
        let counter = match &result {
            Ok(()) => &counts.committed,
            Err(TxError::Business(e)) => match e.downcast_ref::<Refused>() {
                Some(Refused::Overdrawn) => &counts.overdrawn,
                Some(Refused::Injected) => &counts.injected,
                None => {
                    eprintln!("transfer failed and was rolled back: {e:#}");
                    &counts.failed
                }
            },
            Err(e) => bail!("transfer ended badly: {e}"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latency)
}

async fn total(pool: &Pool) -> anyhow::Result<i64> {
    let mut conn = pool.get_conn().await?;
    let sum: Option<i64> = conn
        .query_first("SELECT CAST(SUM(balance) AS SIGNED) FROM account")
        .await?;
    Ok(sum.unwrap_or(0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    ensure!(
        args.workers > 0 && args.accounts > 0,
        "--workers and --accounts must be > 0"
    );
    let server = server_opts(&args.mysql)?;
    let rows = (0..args.accounts)
        .map(|i| format!("({i}, {})", args.opening))
        .collect::<Vec<_>>()
        .join(", ");
    let table = "CREATE TABLE account (id INT PRIMARY KEY, balance BIGINT NOT NULL)";
    let insert = format!("INSERT INTO account VALUES {rows}");
    for bank in BANKS {
        recreate_database(&server, bank, &[table, &insert]).await?;
    }

    let tm = TmClient::connect(TmConfig::new("transfer-example", vec![args.tc.clone()]))
        .await
        .context("TM cannot reach seata-tc; start it and pass its address with --tc")?;
    let rm = RmClient::connect(RmClientConfig::new(
        "transfer-example",
        vec![args.tc.clone()],
    ))
    .await
    .context("RM cannot reach seata-tc")?;
    let at = rm.at(AtConfig::default())?;
    let pool_size = args.workers + 2;
    let banks = [
        rm.at_data_source(&at, db_opts(&server, BANKS[0], pool_size)?)
            .await?,
        rm.at_data_source(&at, db_opts(&server, BANKS[1], pool_size)?)
            .await?,
    ];
    let expected = 2 * args.accounts as i64 * args.opening;

    let next = AtomicUsize::new(0);
    let counts = Counts::default();
    let started = Instant::now();
    let histograms = futures::future::try_join_all(
        (0..args.workers).map(|_| worker(&tm, &banks, &args, &next, &counts)),
    )
    .await?;
    let elapsed = started.elapsed();
    let mut latency = Histogram::<u64>::new(3)?;
    for h in &histograms {
        latency.add(h)?;
    }
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "mode={} transfers={} workers={} elapsed_s={:.2} tx_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
        if args.no_seata { "no-seata" } else { "global" },
        args.transfers,
        args.workers,
        elapsed.as_secs_f64(),
        args.transfers as f64 / elapsed.as_secs_f64(),
        ms(0.50),
        ms(0.99)
    );
    println!(
        "committed={} rolled_back_overdrawn={} rolled_back_injected={} failed={}",
        counts.committed.load(Ordering::Relaxed),
        counts.overdrawn.load(Ordering::Relaxed),
        counts.injected.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed)
    );

    let mut sum = 0;
    for bank in &banks {
        seata_examples::wait_undo_log_empty(bank.pool(), Duration::from_secs(30)).await?;
        sum += total(bank.pool()).await?;
    }
    for bank in &banks {
        bank.pool().clone().disconnect().await?;
    }
    if !args.keep {
        for bank in BANKS {
            drop_database(&server, bank).await?;
        }
    }
    if args.no_seata {
        // Nothing was rolled back, so the invariant says nothing about atomicity here.
        println!("baseline mode: total {sum}; invariant not checked");
        return Ok(());
    }
    ensure!(
        sum == expected,
        "invariant violated: the banks hold {sum}, expected {expected}"
    );
    println!("invariant ok: total {sum} unchanged, no undo_log rows left");
    Ok(())
}
