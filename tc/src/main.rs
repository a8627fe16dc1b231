//! `seata-tc`: parses flags and the config file, sets up logging, binds, and runs the TC until
//! SIGINT/SIGTERM. The first line on stdout is `listening on IP:PORT`; with the HTTP listener
//! on, the next is `http listening on IP:PORT`, then with the gRPC listener on
//! `grpc listening on IP:PORT`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use seata_tc::config::{StoreMode, SyncMode, TcConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

// The TC allocates a little per request on many threads; glibc malloc showed up at ~14% of
// CPU under load, mimalloc's thread-local free lists cut that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seata-compatible transaction coordinator. Flags override the config file.
#[derive(Debug, Parser)]
#[command(name = "seata-tc", version, about)]
struct Args {
    /// TOML config file (every key optional; see the README for the keys and defaults).
    #[arg(long, env = "SEATA_TC_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default 0.0.0.0:8091]; port 0 picks a free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// IP written into XIDs [default: the listen IP, or 127.0.0.1 when listening on all].
    #[arg(long)]
    host: Option<IpAddr>,
    /// Node number (0..=1023) keeping ids unique across several TCs [default 1].
    #[arg(long, env = "SERVER_NODE")]
    server_node: Option<u16>,
    /// Session store [default file].
    #[arg(long, value_enum)]
    store: Option<Store>,
    /// Data directory of the file store [default ./seata-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// File store durability [default fsync].
    #[arg(long, value_enum)]
    sync: Option<Sync>,
    /// MySQL URL of the db store.
    #[arg(long, env = "SEATA_TC_DB_URL")]
    db_url: Option<String>,
    /// Create the db store's tables if missing.
    #[arg(long)]
    init_db: bool,
    /// HTTP listener for DTM's API (/api/dtmsvr), or `off` [default 0.0.0.0:36789].
    #[arg(long)]
    http_listen: Option<String>,
    /// gRPC listener for DTM's API (dtmgimp.Dtm), or `off` [default 0.0.0.0:36790].
    #[arg(long)]
    grpc_listen: Option<String>,
    /// etcd endpoints (comma-separated host:port) to register the gRPC listener in, go-zero
    /// style [default: none].
    #[arg(long, value_delimiter = ',')]
    etcd: Option<Vec<String>>,
    /// Key prefix of the etcd registration (`<key>/<lease id>` = gRPC host:port)
    /// [default dtmservice].
    #[arg(long)]
    etcd_key: Option<String>,
    /// Without a subcommand the TC runs; `admin` talks to a running TC instead.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Operate a running TC through its admin API: list, show, locks, clients, audit, retry,
    /// rollback, commit, give-up, delete.
    Admin(seata_tc::admin::cli::AdminArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Sync {
    Fsync,
    None,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Store {
    Memory,
    File,
    Db,
}

fn config_from(args: &Args) -> anyhow::Result<TcConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            TcConfig::from_toml(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => TcConfig::default(),
    };
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.host {
        config.host = Some(v);
    }
    if let Some(v) = args.server_node {
        config.server_node = v;
    }
    if let Some(v) = args.store {
        config.store = match v {
            Store::Memory => StoreMode::Memory,
            Store::File => StoreMode::File,
            Store::Db => StoreMode::Db,
        };
    }
    if let Some(v) = &args.data_dir {
        config.data_dir = v.clone();
    }
    if let Some(v) = args.sync {
        config.sync = match v {
            Sync::Fsync => SyncMode::Fsync,
            Sync::None => SyncMode::None,
        };
    }
    if let Some(v) = &args.db_url {
        config.db_url = Some(v.clone());
    }
    if args.init_db {
        config.init_db = true;
    }
    if let Some(v) = &args.http_listen {
        config.http_listen = v.clone();
    }
    if let Some(v) = &args.grpc_listen {
        config.grpc_listen = v.clone();
    }
    if let Some(v) = &args.etcd {
        config.etcd = v.iter().filter(|e| !e.is_empty()).cloned().collect();
    }
    if let Some(v) = &args.etcd_key {
        config.etcd_key = v.clone();
    }
    config.validate()?;
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Installs the subscriber, with the OTLP exporter when `endpoint` is set; the guard flushes
/// it at exit.
#[cfg(feature = "otlp")]
fn init_tracing<S>(base: S, endpoint: &str) -> anyhow::Result<Option<seata_tc::otlp::OtlpGuard>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + std::marker::Sync + 'static,
{
    if endpoint.is_empty() {
        base.init();
        return Ok(None);
    }
    let (layer, guard) = seata_tc::otlp::layer(endpoint)?;
    base.with(layer).init();
    tracing::info!(endpoint, "exporting spans over OTLP");
    Ok(Some(guard))
}

/// Installs the subscriber; this build cannot export spans (no `otlp` feature).
#[cfg(not(feature = "otlp"))]
fn init_tracing<S>(base: S, endpoint: &str) -> anyhow::Result<Option<()>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + std::marker::Sync + 'static,
{
    base.init();
    if !endpoint.is_empty() {
        tracing::warn!(
            endpoint,
            "[tracing] otlp-endpoint is set but this seata-tc was built without the `otlp` \
             feature; spans are not exported (build with `cargo build -p seata-tc --features otlp`)"
        );
    }
    Ok(None)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Admin(admin)) = args.command {
        // A client: no logging set-up, its output is the answer.
        std::process::exit(seata_tc::admin::cli::run(admin).await);
    }
    // Test builds only (feature `failpoints`): crash points named in `FAILPOINTS`.
    let _failpoints = seata_tc::failpoints::setup();
    // The config first: it says whether spans are also exported (`[tracing]`).
    let config = config_from(&args)?;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to files or collectors stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let base = tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(logs);
    let _otlp = init_tracing(base, &config.tracing.otlp_endpoint)?;
    let store = seata_tc::store::open_store(&config)
        .await
        .with_context(|| format!("cannot open the {:?} store", config.store))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    let http = match config.http_addr()? {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (http-listen)"))?,
        ),
        None => None,
    };
    let grpc = match config.grpc_addr()? {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (grpc-listen)"))?,
        ),
        None => None,
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {bound}")?;
        if let Some(h) = &http {
            writeln!(out, "http listening on {}", h.local_addr()?)?;
        }
        if let Some(g) = &grpc {
            writeln!(out, "grpc listening on {}", g.local_addr()?)?;
        }
        out.flush()?;
    }
    tracing::info!(%bound, store = ?config.store, "seata-tc started");
    let listeners = seata_tc::server::DtmListeners { http, grpc };
    seata_tc::server::run(listener, listeners, config, store, shutdown_signal()).await?;
    Ok(())
}
