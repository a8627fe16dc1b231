//! The orchestrator: sets up the banks and the TC(s), starts the workers, injects the planned
//! faults while the load runs, stops the load, settles what is still unknown, waits for the TC
//! to finish every session, then checks (see `check.rs`) and prints the final line.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mysql_async::prelude::Queryable;
use mysql_async::Opts;
use seata_tm::{TmClient, TmConfig};

use crate::args::{RunArgs, Store};
use crate::bank::{self, server_opts};
use crate::check::{check, Report};
use crate::faults::{plan, Fault};
use crate::journal::{Journal, Outcome};
use crate::modes::{self, Mode};
use crate::procs::{TcProc, WorkerProc, WorkerSpec};
use crate::tc_state::{self, Held};
use crate::worker::{settle, APPLICATION_ID};

/// How often progress is printed during the load.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// With the TC idle, undo-log rows that have not moved for this long are left for good (the
/// RMs delete acknowledged commits' undo logs within a second or so).
const UNDO_STILL: Duration = Duration::from_secs(3);
/// Longest wait for the workers to end their lanes after `stop`.
const STOP_WAIT: Duration = Duration::from_secs(120);

/// The run's result.
#[derive(Debug)]
pub struct Summary {
    /// The checker's report.
    pub report: Report,
    /// TC kills made.
    pub tc_kills: u32,
    /// Worker kills made.
    pub rm_kills: u32,
    /// Seconds from the end of the load until the TC held nothing more.
    pub settle_s: f64,
    /// What the TC still held at the end.
    pub held: Held,
}

impl Summary {
    /// True when every invariant held.
    pub fn ok(&self) -> bool {
        self.report.breaches.is_empty()
    }

    /// The final line.
    pub fn line(&self) -> String {
        let r = &self.report;
        format!(
            "chaos: transfers={} committed={} rolled_back={} unknown_settled={} tc_kills={} \
             rm_kills={} settle_s={:.1} invariant={} undo_left={} sessions_left={} locks_left={}",
            r.transfers,
            r.committed,
            r.rolled_back,
            r.unknown_settled,
            self.tc_kills,
            self.rm_kills,
            self.settle_s,
            if self.ok() { "ok" } else { "BROKEN" },
            r.undo_left,
            self.held.sessions,
            self.held.locks
        )
    }
}

/// The TCs of the run and how their state is read.
struct Tcs {
    procs: Vec<TcProc>,
    store: Store,
    server: Opts,
    tc_db: String,
}

impl Tcs {
    fn addrs(&self) -> Vec<String> {
        self.procs.iter().map(|t| t.addr.clone()).collect()
    }

    /// What the TC(s) hold now; `None` when it cannot be told (no gauges in this build).
    async fn held(&self) -> anyhow::Result<Option<Held>> {
        match self.store {
            Store::Db => Ok(Some(tc_state::from_db(&self.server, &self.tc_db).await?)),
            Store::File => {
                let tc = &self.procs[0];
                tc_state::from_metrics(&tc.http).await
            }
        }
    }
}

/// Runs the whole thing.
pub async fn run(args: RunArgs) -> anyhow::Result<Summary> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.accounts > 0, "--accounts must be at least 1");
    let modes = modes::parse_modes(&args.modes)?;
    anyhow::ensure!(
        args.accounts >= modes.len() as i64,
        "--accounts must be at least the number of --modes (each mode has its own accounts)"
    );
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    println!(
        "chaos: seed={seed} store={:?} workers={} concurrency={} duration_s={} tc_kills={} \
         rm_kills={} rollback_percent={} modes={}",
        args.store,
        args.workers,
        args.concurrency,
        args.duration,
        args.tc_kills,
        args.rm_kills,
        args.rollback_percent,
        modes::modes_arg(&modes)
    );
    // A temporary run directory is deleted at the end, unless `--keep` or a breach.
    let mut tmp: Option<tempfile::TempDir> = None;
    let dir: PathBuf = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new().prefix("seata-chaos").tempdir()?;
            let path = t.path().to_owned();
            tmp = Some(t);
            path
        }
    };
    let server = server_opts(&args.mysql)?;
    let db_a = format!("{}_a", args.db_prefix);
    let db_b = format!("{}_b", args.db_prefix);
    for db in [&db_a, &db_b] {
        bank::create(&server, db, args.accounts, args.opening).await?;
    }
    let opening_total = 2 * args.accounts * args.opening;

    let tc_bin = match &args.tc_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("seata-tc"))
            .context("cannot tell this binary's directory; pass --tc-bin")?,
    };
    let mut tcs = start_tcs(&args, &server, &dir, &tc_bin).await?;
    println!(
        "chaos: tc {} (logs in {})",
        tcs.addrs().join(","),
        dir.display()
    );

    let journal = Arc::new(Mutex::new(Journal::default()));
    let copy = Some(Arc::new(Mutex::new(File::create(dir.join("journal.log"))?)));
    let spec = WorkerSpec {
        exe: std::env::current_exe()?,
        args: vec![
            "--tc".into(),
            tcs.addrs().join(","),
            "--mysql".into(),
            args.mysql.clone(),
            "--db-a".into(),
            db_a.clone(),
            "--db-b".into(),
            db_b.clone(),
            "--concurrency".into(),
            args.concurrency.to_string(),
            "--rollback-percent".into(),
            args.rollback_percent.to_string(),
            "--accounts".into(),
            args.accounts.to_string(),
            "--modes".into(),
            modes::modes_arg(&modes),
        ],
        dir: dir.clone(),
        seed,
    };
    let mut generation = 0i64;
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        generation += 1;
        workers.push(WorkerProc::start(
            &spec,
            generation,
            journal.clone(),
            copy.clone(),
        )?);
    }

    // Load, with the planned faults.
    let load = Duration::from_secs(args.duration);
    let mut faults = plan(seed, load, args.tc_kills, args.rm_kills)
        .into_iter()
        .peekable();
    let (mut tc_kills, mut rm_kills) = (0u32, 0u32);
    let started = Instant::now();
    let mut next_progress = PROGRESS_EVERY;
    while started.elapsed() < load {
        if let Some(p) = faults.next_if(|p| p.at <= started.elapsed()) {
            match p.fault {
                Fault::Tc(v) => {
                    if args.store == Store::Db && args.no_restart && tc_kills > 0 {
                        continue;
                    }
                    let n = tcs.procs.len();
                    let tc = &mut tcs.procs[v % n];
                    tc.kill();
                    tc_kills += 1;
                    println!(
                        "chaos: t={:.1}s kill -9 {} ({})",
                        started.elapsed().as_secs_f64(),
                        tc.name,
                        tc.addr
                    );
                    if !(args.store == Store::Db && args.no_restart) {
                        tokio::time::sleep(p.down).await;
                        tc.restart()?;
                        println!(
                            "chaos: t={:.1}s {} restarted",
                            started.elapsed().as_secs_f64(),
                            tc.name
                        );
                    }
                }
                Fault::Rm(v) => {
                    let slot = v % workers.len();
                    workers[slot].kill();
                    rm_kills += 1;
                    println!(
                        "chaos: t={:.1}s kill -9 worker {}",
                        started.elapsed().as_secs_f64(),
                        workers[slot].generation
                    );
                    tokio::time::sleep(p.down).await;
                    generation += 1;
                    workers[slot] =
                        WorkerProc::start(&spec, generation, journal.clone(), copy.clone())?;
                }
            }
            continue;
        }
        if started.elapsed() >= next_progress {
            next_progress += PROGRESS_EVERY;
            progress(&journal, started, tc_kills, rm_kills);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Stop the load; the workers stay up as RMs for phase two.
    for w in &mut workers {
        w.stop_load();
    }
    let load_end = Instant::now();
    let stop_deadline = load_end + STOP_WAIT;
    while journal.lock().map(|j| j.done).unwrap_or(0) < workers.len() {
        if Instant::now() > stop_deadline {
            println!("chaos: workers did not all end their load within {STOP_WAIT:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress(&journal, started, tc_kills, rm_kills);

    // Settle what no worker could: transfers of killed workers, and answers still unknown.
    let mut tm_config = TmConfig::new(APPLICATION_ID, tcs.addrs());
    tm_config.request_timeout_ms = 5_000;
    let tm = TmClient::start(tm_config)?;
    let settle_deadline = tokio::time::Instant::now() + Duration::from_secs(args.settle_timeout);
    let open: Vec<(i64, String)> = journal
        .lock()
        .map(|j| {
            j.transfers
                .values()
                .filter(|t| t.outcome() == Outcome::Unknown)
                .map(|t| (t.id, t.xid.clone()))
                .collect()
        })
        .unwrap_or_default();
    for (id, xid) in open {
        let o = settle(&tm, &xid, None, settle_deadline).await;
        if let Ok(mut j) = journal.lock() {
            j.apply(crate::journal::Event::Settled(id, o));
        }
    }
    tm.shutdown();

    // Wait for the TC to hold nothing and the RMs to have deleted every undo log they will
    // (rows of a killed RM's acknowledged commits stay: the count then stops moving).
    let wait_deadline = load_end + Duration::from_secs(args.settle_timeout);
    let mut held = None;
    let mut last_undo = (i64::MAX, Instant::now());
    let mut idle_since: Option<Instant> = None;
    let settled_at = loop {
        let undo = bank::undo_rows(&server, &db_a).await? + bank::undo_rows(&server, &db_b).await?;
        held = tcs.held().await.unwrap_or(held);
        // A prepared XA branch whose transaction ended without it is rolled back by its
        // worker's periodic check (seata-rm's `xa_check_after`): wait for that too.
        let xa_left = if modes.contains(&Mode::Xa) {
            modes::xa_prepared(&server, &tcs.addrs()).await?.len()
        } else {
            0
        };
        let idle = xa_left == 0 && held.is_none_or(|h| h.sessions == 0 && h.locks == 0);
        idle_since = if idle {
            idle_since.or(Some(Instant::now()))
        } else {
            None
        };
        if undo != last_undo.0 {
            last_undo = (undo, Instant::now());
        }
        if let Some(since) = idle_since {
            if undo == 0 {
                break Instant::now();
            }
            if last_undo.1.elapsed() >= UNDO_STILL {
                // Settled when both the TC and the undo count last moved.
                break since.max(last_undo.1);
            }
        }
        if Instant::now() > wait_deadline {
            println!(
                "chaos: not settled after {}s: undo_log rows {undo}, TC {held:?}, XA prepared {xa_left}",
                args.settle_timeout
            );
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let settle_s = settled_at.duration_since(load_end).as_secs_f64();
    for w in &mut workers {
        w.finish(Duration::from_secs(10));
    }

    // Final state of the TC: the gauges (or db tables); without gauges, its shutdown line.
    let held = match tcs.held().await.ok().flatten() {
        Some(h) => {
            for tc in &mut tcs.procs {
                tc.terminate()?;
            }
            h
        }
        None => {
            let mut h = Held::default();
            for tc in &mut tcs.procs {
                if tc.is_up() {
                    tc.terminate()?;
                    let log = std::fs::read_to_string(tc.log()).unwrap_or_default();
                    let got = tc_state::from_shutdown_log(&log).with_context(|| {
                        format!("{} logged no `coordinator stopped` line", tc.name)
                    })?;
                    h.sessions += got.sessions;
                    h.locks += got.locks;
                }
            }
            h
        }
    };

    let a = bank::snapshot(&server, &db_a).await?;
    let b = bank::snapshot(&server, &db_b).await?;
    let mut report = {
        let j = journal
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
        check(&j, &a, &b, opening_total, args.opening, held)
    };
    // What TCC and XA must not leave: a fence row still `tried`, money still frozen or
    // incoming, a prepared XA branch of this run's TCs.
    if modes.iter().any(|m| *m != Mode::At) {
        let mut tried = 0;
        for db in [&db_a, &db_b] {
            let l = modes::leftovers(&server, db).await?;
            tried += l.fence_tried;
            if l.fence_tried > 0 {
                report.breaches.push(format!(
                    "{db}: {} tcc_fence_log rows still tried (phase two never ran)",
                    l.fence_tried
                ));
            }
            if l.reserved != 0 {
                report.breaches.push(format!(
                    "{db}: {} still frozen or incoming (TCC reservations not finished)",
                    l.reserved
                ));
            }
        }
        let prepared = modes::xa_prepared(&server, &tcs.addrs()).await?;
        for key in prepared.iter().take(20) {
            report
                .breaches
                .push(format!("XA branch {key} still prepared (XA RECOVER)"));
        }
        println!(
            "chaos: TCC fence rows still tried: {tried}; XA branches still prepared: {}",
            prepared.len()
        );
    }
    println!(
        "chaos: undo_log GlobalFinished markers (rollbacks that found no undo log; not pending \
         work): {}",
        a.markers + b.markers
    );
    for breach in report.breaches.iter().take(50) {
        println!("chaos: BROKEN: {breach}");
    }
    if report.breaches.len() > 50 {
        println!(
            "chaos: ... and {} more breaches",
            report.breaches.len() - 50
        );
    }
    if args.keep || !report.breaches.is_empty() {
        // Kept for inspection: the journal, the TC and worker logs, the data.
        if let Some(t) = tmp.take() {
            let _ = t.keep();
        }
        println!("chaos: kept databases {db_a}, {db_b} and {}", dir.display());
    } else {
        for db in [&db_a, &db_b] {
            bank::drop_db(&server, db).await?;
        }
        if tcs.store == Store::Db {
            bank::drop_db(&server, &tcs.tc_db).await?;
        }
    }
    Ok(Summary {
        report,
        tc_kills,
        rm_kills,
        settle_s,
        held,
    })
}

fn progress(journal: &Mutex<Journal>, started: Instant, tc_kills: u32, rm_kills: u32) {
    if let Ok(j) = journal.lock() {
        let (c, r, u) = j.counts();
        println!(
            "chaos: t={:.0}s transfers={} committed={c} rolled_back={r} unknown={u} \
             tc_kills={tc_kills} rm_kills={rm_kills}",
            started.elapsed().as_secs_f64(),
            j.transfers.len()
        );
    }
}

async fn start_tcs(
    args: &RunArgs,
    server: &Opts,
    dir: &std::path::Path,
    bin: &std::path::Path,
) -> anyhow::Result<Tcs> {
    let tc_db = format!("{}_tc", args.db_prefix);
    let mut procs = Vec::new();
    match args.store {
        Store::File => {
            let mut a = vec![
                "--store".to_owned(),
                "file".into(),
                "--data-dir".into(),
                dir.join("tc-data").display().to_string(),
            ];
            a.extend(args.tc_arg.iter().cloned());
            procs.push(TcProc::start("tc0", bin, a, dir.join("tc0.log"))?);
        }
        Store::Db => {
            let mut c = mysql_async::Conn::new(server.clone()).await?;
            c.query_drop(format!("DROP DATABASE IF EXISTS `{tc_db}`"))
                .await?;
            c.query_drop(format!("CREATE DATABASE `{tc_db}`")).await?;
            c.disconnect().await?;
            // A short lease, so the survivor takes a dead TC's transactions over quickly.
            let config = dir.join("tc.toml");
            std::fs::write(&config, "db-lease-ms = 3000\n")?;
            let url = format!("{}/{tc_db}", args.mysql.trim_end_matches('/'));
            for i in 0..2 {
                let mut a = vec![
                    "--config".to_owned(),
                    config.display().to_string(),
                    "--store".into(),
                    "db".into(),
                    "--db-url".into(),
                    url.clone(),
                    "--init-db".into(),
                ];
                a.extend(args.tc_arg.iter().cloned());
                procs.push(TcProc::start(
                    &format!("tc{i}"),
                    bin,
                    a,
                    dir.join(format!("tc{i}.log")),
                )?);
            }
        }
    }
    if procs.is_empty() {
        bail!("no TC started");
    }
    Ok(Tcs {
        procs,
        store: args.store,
        server: server.clone(),
        tc_db,
    })
}
