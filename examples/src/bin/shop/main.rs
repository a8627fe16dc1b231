//! `shop`: the shop of the DTM and go-zero tutorials as separate axum services — `order`,
//! `stock`, `account`, each with its own MariaDB database, and a `shop` front that places
//! orders — running one business flow (create the order, take the stock, take the money) in
//! three ways:
//!
//! - `saga` through the DTM HTTP API: actions and compensations;
//! - `tcc` through the DTM HTTP API: try reserves, confirm spends, cancel releases;
//! - `at` through the Seata protocol: `seata-tm` begins, the XID travels in `TX_XID`, each
//!   service writes through the `seata-rm` AT proxy;
//! - `grpc-saga` (`grpc.rs`), the go-zero way: the three services as tonic services too, the
//!   saga submitted over DTM's gRPC API at `--dtm-grpc` (`grpc://host:port`, or
//!   `etcd://host:port/dtmservice` to find the coordinator in etcd); `--dtm` (HTTP) is still
//!   used to ask for final statuses, which DTM's gRPC API cannot.
//!
//! Every saga/TCC branch handler runs behind the sub-transaction barrier. Faults on demand: a
//! step refusing a share of orders (`--fail-step`, `--fail-percent`), slow handlers
//! (`--slow-ms`), a service down for a while (`--down-secs`, `--down`). At the end of each mode
//! it checks that stock, orders and money agree and prints a summary; any inconsistency exits
//! non-zero.
//!
//! ```sh
//! seata-tc --listen 127.0.0.1:8091 --http-listen 127.0.0.1:36789 --store memory &
//! cargo run -p seata-examples --bin shop -- --tc 127.0.0.1:8091 \
//!     --dtm http://127.0.0.1:36789/api/dtmsvr --mode all --fail-step stock
//! # the gRPC flavour, the TC found through etcd:
//! seata-tc --store memory --etcd 127.0.0.1:2379 --etcd-key dtmservice &
//! cargo run -p seata-examples --bin shop -- --mode grpc-saga \
//!     --dtm-grpc etcd://127.0.0.1:2379/dtmservice --fail-step stock
//! ```

mod account;
mod db;
mod fault;
mod front;
mod grpc;
mod ledger;
mod load;
mod order;
mod request;
mod service;
mod stock;

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use seata_dtm::DtmClient;
use seata_examples::{init_tracing, server_opts, wait_undo_log_empty};
use seata_rm::at::AtConfig;
use seata_rm::client::{RmClient, RmClientConfig};
use seata_tm::{TmClient, TmConfig};

use crate::db::{Databases, Seed};
use crate::fault::{Faults, Step};
use crate::front::{Front, GrpcSteps};
use crate::grpc::GrpcService;
use crate::load::Batch;
use crate::service::Service;

/// The shop: order, stock and account services placing orders as saga, TCC or AT transactions.
#[derive(Debug, Parser)]
#[command(name = "shop", about)]
struct Args {
    /// Which flow(s) to run.
    #[arg(long, value_enum, default_value_t = Mode::All)]
    mode: Mode,
    /// seata-tc's Seata-protocol address (AT mode).
    #[arg(long, default_value = "127.0.0.1:8091")]
    tc: String,
    /// The DTM HTTP API base URL (saga and TCC modes).
    #[arg(long, default_value = "http://127.0.0.1:36789/api/dtmsvr")]
    dtm: String,
    /// DTM's gRPC API (`grpc-saga` mode): `grpc://host:port`, `host:port`, or
    /// `etcd://host:port/dtmservice` to find it in etcd, as go-zero does.
    #[arg(long, default_value = "grpc://127.0.0.1:36790")]
    dtm_grpc: String,
    /// MySQL/MariaDB server URL (no database: the example creates its own).
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    mysql: String,
    /// Prefix of the three databases (`<prefix>_order`, `_stock`, `_account`).
    #[arg(long, default_value = "shop")]
    db_prefix: String,
    /// Orders per mode.
    #[arg(long, default_value_t = 200)]
    orders: usize,
    /// Orders placed at a time.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Buyers the orders are spread over.
    #[arg(long, default_value_t = 50)]
    users: u32,
    /// Items (skus) the orders are spread over.
    #[arg(long, default_value_t = 50)]
    skus: u32,
    /// Starting stock of each sku.
    #[arg(long, default_value_t = 1000)]
    stock: i64,
    /// Starting balance of each buyer, in cents.
    #[arg(long, default_value_t = 100_000)]
    balance: i64,
    /// The step that answers 409 on a share of the orders.
    #[arg(long, value_enum)]
    fail_step: Option<Step>,
    /// That share, in percent.
    #[arg(long, default_value_t = 20)]
    fail_percent: u32,
    /// Extra time every branch call takes, in milliseconds.
    #[arg(long, default_value_t = 0)]
    slow_ms: u64,
    /// Stop the `--down` service when a mode starts and start it again after this many
    /// seconds (and after at least one order was answered meanwhile). 0: never.
    #[arg(long, default_value_t = 0)]
    down_secs: u64,
    /// The service `--down-secs` stops.
    #[arg(long, value_enum, default_value_t = Step::Stock)]
    down: Step,
    /// How long to wait for the coordinator to finish every transaction, in seconds.
    #[arg(long, default_value_t = 120)]
    settle_secs: u64,
    /// Keep the databases afterwards (they are dropped by default).
    #[arg(long)]
    keep: bool,
}

/// The flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Saga,
    Tcc,
    At,
    /// The saga over gRPC (not part of `all`).
    GrpcSaga,
    All,
}

impl Mode {
    fn routes(self) -> &'static [&'static str] {
        match self {
            Mode::Saga => &["saga"],
            Mode::Tcc => &["tcc"],
            Mode::At => &["at"],
            Mode::GrpcSaga => &["grpc-saga"],
            Mode::All => &["saga", "tcc", "at"],
        }
    }
}

/// The running services.
struct Shop {
    front: Service,
    branches: [Service; 3],
    /// The tonic services of `grpc-saga`.
    grpc_services: Vec<GrpcService>,
    dtm: Option<DtmClient>,
    tm: Option<TmClient>,
    rms: Vec<std::sync::Arc<RmClient>>,
    /// Held for the run: an RM answers the TC's phase two only while its AT manager lives.
    _at_managers: Vec<std::sync::Arc<seata_rm::at::AtResourceManager>>,
}

async fn start_shop(args: &Args, dbs: &Databases) -> anyhow::Result<Shop> {
    let routes = args.mode.routes();
    let uses_dtm = routes.iter().any(|r| *r != "at");
    let uses_at = routes.contains(&"at");
    let faults = Faults {
        fail_step: args.fail_step,
        fail_percent: args.fail_percent,
        slow: Duration::from_millis(args.slow_ms),
    };
    let dtm = uses_dtm.then(|| DtmClient::new(&args.dtm)).transpose()?;
    let tm = if uses_at {
        let tm = TmClient::connect(TmConfig::new("shop", vec![args.tc.clone()]))
            .await
            .context("the TM cannot reach seata-tc; start it and pass its address with --tc")?;
        Some(tm)
    } else {
        None
    };
    let (mut rms, mut at_managers) = (Vec::new(), Vec::new());
    let mut branches = Vec::new();
    for step in [Step::Order, Step::Stock, Step::Account] {
        // Each service is its own Seata application with its own RM connection, as separate
        // processes would be.
        let at = if uses_at {
            let app = format!("shop-{}", step.name());
            let rm = RmClient::connect(RmClientConfig::new(app, vec![args.tc.clone()]))
                .await
                .context("the RM cannot reach seata-tc")?;
            let manager = rm.at(AtConfig::default())?;
            let opts = dbs.opts(step, args.concurrency + 2)?;
            let ds = rm.at_data_source(&manager, opts).await?;
            rms.push(rm);
            at_managers.push(manager);
            Some(ds)
        } else {
            None
        };
        let backend = dbs.backend(step, at, &faults)?;
        let router = match step {
            Step::Order => order::router(backend),
            Step::Stock => stock::ledger(backend).router(),
            Step::Account => account::ledger(backend).router(),
        };
        branches.push(Service::start(step.name(), router).await?);
    }
    let branches: [Service; 3] = branches
        .try_into()
        .map_err(|_| anyhow::anyhow!("three services"))?;
    let (grpc, grpc_services) = if routes.contains(&"grpc-saga") {
        let (steps, services) = start_grpc(args, dbs, &faults).await?;
        (Some(steps), services)
    } else {
        (None, Vec::new())
    };
    let front = Front {
        dtm: dtm.clone(),
        tm: tm.clone(),
        http: reqwest::Client::new(),
        services: [
            branches[0].url(""),
            branches[1].url(""),
            branches[2].url(""),
        ],
        grpc,
    };
    let front = Service::start("shop", front::router(front)).await?;
    Ok(Shop {
        front,
        branches,
        grpc_services,
        dtm,
        tm,
        rms,
        _at_managers: at_managers,
    })
}

/// The tonic services of `grpc-saga` and the saga's steps on them.
async fn start_grpc(
    args: &Args,
    dbs: &Databases,
    faults: &Faults,
) -> anyhow::Result<(GrpcSteps, Vec<GrpcService>)> {
    if args.down_secs > 0 {
        bail!("--down-secs works with the HTTP services only, not with --mode grpc-saga");
    }
    let dtm = DtmClient::new(&args.dtm_grpc)?;
    if !dtm.is_grpc() {
        bail!("--dtm-grpc must be grpc://host:port, host:port or etcd://host:port/dtmservice");
    }
    // A coordinator found through etcd may not have registered yet (it does so once it is
    // listening): wait for a first answer rather than refuse the first orders.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.settle_secs);
    loop {
        match dtm.new_gid().await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("no coordinator at {}", args.dtm_grpc))
            }
        }
    }
    let order = GrpcService::start(
        "order",
        grpc::order_routes(dbs.backend(Step::Order, None, faults)?),
    )
    .await?;
    let stock = GrpcService::start(
        "stock",
        grpc::ledger_routes(stock::ledger(dbs.backend(Step::Stock, None, faults)?)),
    )
    .await?;
    let account = GrpcService::start(
        "account",
        grpc::ledger_routes(account::ledger(dbs.backend(Step::Account, None, faults)?)),
    )
    .await?;
    let ledger = |s: &GrpcService| {
        (
            s.url("shop.Ledger/Deduct"),
            s.url("shop.Ledger/DeductRollback"),
        )
    };
    let steps = [
        (
            order.url("shop.Order/Create"),
            order.url("shop.Order/CreateRollback"),
        ),
        ledger(&stock),
        ledger(&account),
    ];
    Ok((GrpcSteps { dtm, steps }, vec![order, stock, account]))
}

/// Runs one mode; returns the committed and unknown counts for the consistency check.
async fn run_mode(
    args: &Args,
    shop: &Shop,
    route: &'static str,
    first_id: u64,
) -> anyhow::Result<load::Tally> {
    let batch = Batch {
        mode: route,
        front: shop.front.url(""),
        first_id,
        orders: args.orders,
        concurrency: args.concurrency,
        users: args.users,
        skus: args.skus,
    };
    let http = reqwest::Client::new();
    let answered = AtomicUsize::new(0);
    let down = (args.down_secs > 0).then(|| {
        let i = [Step::Order, Step::Stock, Step::Account]
            .iter()
            .position(|s| *s == args.down)
            .unwrap_or(1);
        &shop.branches[i]
    });
    let placed = if let Some(service) = down {
        service.stop().await;
        println!("mode={route}: {} service stopped", service.name());
        let (placed, report) = tokio::join!(
            load::place(&batch, &http, &answered),
            load::outage(service, Duration::from_secs(args.down_secs), &answered)
        );
        println!("mode={route}: {}; restarted", report?);
        placed?
    } else {
        load::place(&batch, &http, &answered).await?
    };
    let (placed, placing) = placed;
    let dtm = if route == "at" {
        None
    } else {
        shop.dtm.as_ref()
    };
    let mut tally = load::settle(&placed, dtm, Duration::from_secs(args.settle_secs)).await?;
    tally.placing = placing;
    Ok(tally)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    if args.orders == 0 || args.users == 0 || args.skus == 0 || args.fail_percent > 100 {
        bail!("--orders, --users and --skus must be > 0 and --fail-percent at most 100");
    }
    let seed = Seed {
        skus: args.skus,
        users: args.users,
        stock: args.stock,
        balance: args.balance,
    };
    let server = server_opts(&args.mysql)?;
    let dbs = Databases::create(&server, &args.db_prefix, seed, args.concurrency + 2).await?;
    let shop = start_shop(&args, &dbs).await?;

    let (mut committed, mut unknown) = (0, 0);
    let mut outcome = Ok(());
    for (i, route) in args.mode.routes().iter().enumerate() {
        let first_id = i as u64 * 1_000_000_000;
        let tally = match run_mode(&args, &shop, route, first_id).await {
            Ok(t) => t,
            Err(e) => {
                outcome = Err(e.context(format!("mode {route}")));
                break;
            }
        };
        println!(
            "mode={route} orders={} ok={} failed={} unknown={} answered_pending={} \
             elapsed_s={:.2} tx_per_s={:.1}",
            args.orders,
            tally.ok,
            tally.failed,
            tally.unknown,
            tally.answered_pending,
            tally.placing.as_secs_f64(),
            args.orders as f64 / tally.placing.as_secs_f64().max(1e-9),
        );
        for reason in &tally.other_reasons {
            eprintln!("mode={route}: an order rolled back: {reason}");
        }
        if *route == "at" {
            // Phase two deletes undo logs (commit) or applies them (rollback) in the background.
            for step in [Step::Order, Step::Stock, Step::Account] {
                let wait = Duration::from_secs(args.settle_secs);
                if let Err(e) = wait_undo_log_empty(dbs.pool(step), wait).await {
                    outcome = Err(e.context(format!("{} database", step.name())));
                }
            }
        }
        committed += tally.ok;
        unknown += tally.unknown;
        match dbs.check(seed, committed..=committed + unknown).await {
            Ok(report) => println!("consistency ok after mode={route}: {report}"),
            Err(e) => {
                println!("consistency FAILED after mode={route}: {e:#}");
                outcome = Err(e.context(format!("consistency after mode {route}")));
            }
        }
        if outcome.is_err() {
            break;
        }
    }

    for service in shop.branches.iter().chain([&shop.front]) {
        service.stop().await;
    }
    for service in &shop.grpc_services {
        service.stop().await;
    }
    if let Some(tm) = &shop.tm {
        tm.shutdown();
    }
    for rm in &shop.rms {
        rm.shutdown();
    }
    dbs.close(args.keep).await?;
    outcome
}
