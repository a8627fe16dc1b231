//! Command-line flags of `seata-chaos` and of its hidden `worker` subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Runs AT-mode (or, with `--modes`, mixed AT/TCC/XA) transfers between two MySQL databases under load while killing `seata-tc`
/// and worker processes at seeded random moments, then checks that money is conserved and
/// nothing is left behind.
#[derive(Debug, Parser)]
#[command(name = "seata-chaos", about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Internal: a worker process.
    #[command(subcommand)]
    pub worker: Option<Sub>,
    /// The run's flags.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// A worker process (started by the orchestrator; not for direct use).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Where the TC keeps its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Store {
    /// One TC on the file store (its data directory survives its kills).
    File,
    /// Two TCs sharing MariaDB tables; one of them is killed.
    Db,
}

/// The run's flags.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// MySQL server URL (no database: the run creates and drops its own).
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    pub mysql: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Worker processes (each RM of both banks and TM of its transfers).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Transfers in flight per worker.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// `kill -9` of a TC this many times during the load (restarted on the same data dir and
    /// port).
    #[arg(long, default_value_t = 3)]
    pub tc_kills: u32,
    /// `kill -9` of a worker this many times (restarted; the new RM finishes the dead one's
    /// phase two).
    #[arg(long, default_value_t = 1)]
    pub rm_kills: u32,
    /// Share of transfers (%) rolled back on purpose after both legs.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub rollback_percent: u32,
    /// Session store of the TC(s).
    #[arg(long, value_enum, default_value_t = Store::File)]
    pub store: Store,
    /// With `--store db`: the killed TC is not restarted (the survivor takes its transactions
    /// over). Only one kill is then made.
    #[arg(long)]
    pub no_restart: bool,
    /// Seed of every random choice (kill moments, victims, transfers); printed at start.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The `seata-tc` binary; default: `seata-tc` next to this binary.
    #[arg(long)]
    pub tc_bin: Option<PathBuf>,
    /// Extra flag passed to every TC (repeatable), e.g. `--tc-arg=--sync --tc-arg=none`.
    #[arg(long, allow_hyphen_values = true)]
    pub tc_arg: Vec<String>,
    /// Accounts per bank.
    #[arg(long, default_value_t = 1000)]
    pub accounts: i64,
    /// Transaction modes, a comma list of `at`, `tcc`, `xa`: each transfer picks one (seeded)
    /// and runs both legs in it, on the mode's own accounts. Saga is not supported (a
    /// DTM-style mode, out of scope).
    #[arg(long, default_value = "at")]
    pub modes: String,
    /// Opening balance of every account.
    #[arg(long, default_value_t = 10_000)]
    pub opening: i64,
    /// Longest wait, after the load, for the TC to finish every session (seconds).
    #[arg(long, default_value_t = 120)]
    pub settle_timeout: u64,
    /// The banks are `<prefix>_a` and `<prefix>_b` (and `<prefix>_tc` for `--store db`).
    #[arg(long, default_value = "seata_chaos")]
    pub db_prefix: String,
    /// Keep the databases and the run directory (TC data, worker logs, journal) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Directory for the TC data, worker logs and the journal; default a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Flags of a worker process.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// TC addresses, comma separated.
    #[arg(long)]
    pub tc: String,
    /// MySQL server URL.
    #[arg(long)]
    pub mysql: String,
    /// Database of bank A.
    #[arg(long)]
    pub db_a: String,
    /// Database of bank B.
    #[arg(long)]
    pub db_b: String,
    /// Unique per started worker process: transfer ids are `generation * 10^9 + n`.
    #[arg(long)]
    pub generation: i64,
    /// Transfers in flight.
    #[arg(long)]
    pub concurrency: usize,
    /// Share rolled back on purpose (%).
    #[arg(long)]
    pub rollback_percent: u32,
    /// Accounts per bank.
    #[arg(long)]
    pub accounts: i64,
    /// Seed of the transfers' random choices.
    #[arg(long)]
    pub seed: u64,
    /// Transaction modes the transfers pick from (comma list of at, tcc, xa).
    #[arg(long, default_value = "at")]
    pub modes: String,
}
