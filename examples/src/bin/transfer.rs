//! `transfer`: money moves between two banks, each its own MySQL database, in global
//! transactions coordinated by a running `seata-tc`. `--mode` picks how the banks take part:
//!
//! | mode | bank A | bank B |
//! |---|---|---|
//! | `at` (default) | AT data source | AT data source |
//! | `tcc` | fenced TCC debit/credit actions | the same |
//! | `xa` | XA data source | XA data source |
//! | `mixed` | AT data source | fenced TCC actions |
//!
//! Each transfer debits an account in one bank and credits one in the other inside
//! `TmClient::run`: an UPDATE through the AT proxy or inside an XA branch, or a TCC action
//! (debit freezes the amount and confirm/cancel settles it; credit books it as incoming).
//! A transfer that would overdraw its source is rolled back (the closure returns `Err`), as is
//! a random share (`--fail-percent`) to exercise global rollback. At the end it prints
//! throughput and latency, waits for phase two to finish (no undo logs, nothing frozen or
//! incoming, no XA branch prepared) and checks that the money across both banks is what it
//! was at the start. The bank code is in `seata_examples::bank`.
//!
//! ```sh
//! cargo run --release -p seata-tc -- --listen 127.0.0.1:8091 --store memory &
//! cargo run --release -p seata-examples --bin transfer -- --mode tcc \
//!     --tc 127.0.0.1:8091 --mysql mysql://root@127.0.0.1:3306 --workers 16 --transfers 2000
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use seata_examples::bank::{Bank, Kind, Refused, ACCOUNT_DDL};
use seata_examples::{db_opts, drop_database, init_tracing, recreate_database, server_opts};
use seata_rm::client::{RmClient, RmClientConfig};
use seata_tm::{TmClient, TmConfig, TxError};

/// Two-bank money transfer in AT, TCC, XA or mixed mode.
#[derive(Debug, Parser)]
#[command(name = "transfer", about)]
struct Args {
    /// seata-tc address.
    #[arg(long, default_value = "127.0.0.1:8091")]
    tc: String,
    /// MySQL server URL (no database: the example creates its own).
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    mysql: String,
    /// How the banks take part: AT, TCC or XA both, or mixed (bank A AT, bank B TCC).
    #[arg(long, value_enum, default_value_t = Mode::At)]
    mode: Mode,
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
    /// Share of transfers (%) that fail on purpose after both legs, to be rolled back.
    #[arg(long, default_value_t = 10)]
    fail_percent: u32,
    /// The banks' databases are `<prefix>_bank_a` and `<prefix>_bank_b`.
    #[arg(long, default_value = "seata_example")]
    db_prefix: String,
    /// How long to wait at the end for phase two to leave nothing behind (seconds).
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
    /// Keep the two databases afterwards (they are dropped by default).
    #[arg(long)]
    keep: bool,
    /// Baseline (`--mode at` only): the same updates as two plain local transactions,
    /// without Seata (not atomic across the banks; shows what MySQL alone sustains here).
    #[arg(long)]
    no_seata: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    At,
    Tcc,
    Xa,
    Mixed,
}

impl Mode {
    fn kinds(self) -> [Kind; 2] {
        match self {
            Mode::At => [Kind::At, Kind::At],
            Mode::Tcc => [Kind::Tcc, Kind::Tcc],
            Mode::Xa => [Kind::Xa, Kind::Xa],
            Mode::Mixed => [Kind::At, Kind::Tcc],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::At => "at",
            Mode::Tcc => "tcc",
            Mode::Xa => "xa",
            Mode::Mixed => "mixed",
        }
    }
}

/// One transfer of `amount` from `from` (in bank `from_bank`) to `to` (in the other bank).
/// Bank A is always moved first, so two transfers never wait on each other's row locks (AT's
/// global ones, XA's held until phase two) in a cycle.
async fn transfer(
    banks: &[Bank; 2],
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
    banks[0].apply(a, delta_a).await?;
    banks[1].apply(b, -delta_a).await?;
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
    banks: &[Bank; 2],
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    ensure!(
        args.workers > 0 && args.accounts > 0,
        "--workers and --accounts must be > 0"
    );
    ensure!(
        !args.no_seata || args.mode == Mode::At,
        "--no-seata is a baseline for --mode at only (a TCC action outside a global \
         transaction only runs its prepare)"
    );
    let server = server_opts(&args.mysql)?;
    let rows = (0..args.accounts)
        .map(|i| format!("({i}, {}, 0, 0)", args.opening))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!("INSERT INTO account VALUES {rows}");
    let dbs = ["a", "b"].map(|b| format!("{}_bank_{b}", args.db_prefix));
    for db in &dbs {
        recreate_database(&server, db, &[ACCOUNT_DDL, &insert]).await?;
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
    // XA holds a connection per prepared branch until phase two: one per worker is enough.
    let pool_size = args.workers + 2;
    let [kind_a, kind_b] = args.mode.kinds();
    let banks = [
        Bank::open(&rm, kind_a, &dbs[0], db_opts(&server, &dbs[0], pool_size)?).await?,
        Bank::open(&rm, kind_b, &dbs[1], db_opts(&server, &dbs[1], pool_size)?).await?,
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
        "mode={} banks={}+{} transfers={} workers={} elapsed_s={:.2} tx_per_s={:.0} \
         p50_ms={:.2} p99_ms={:.2}",
        if args.no_seata {
            "no-seata"
        } else {
            args.mode.name()
        },
        banks[0].mode(),
        banks[1].mode(),
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
    let settle = Duration::from_secs(args.settle_secs);
    for (bank, db) in banks.iter().zip(&dbs) {
        bank.settle(&args.tc, settle).await?;
        sum += bank.total().await?;
        if let Bank::Tcc(t) = bank {
            let [tried, committed, rollbacked, suspended] = t.fence_rows().await?;
            println!(
                "fence {db}: tried={tried} committed={committed} rollbacked={rollbacked} \
                 suspended={suspended}"
            );
        }
    }
    for bank in &banks {
        bank.pool().clone().disconnect().await?;
    }
    if !args.keep {
        for db in &dbs {
            drop_database(&server, db).await?;
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
    println!(
        "invariant ok: total {sum} unchanged; nothing frozen, incoming, in undo_log or \
         prepared"
    );
    Ok(())
}
