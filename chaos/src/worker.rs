//! A worker process (`seata-chaos worker`, started by the orchestrator): RM of both banks and
//! TM of its own transfers. Each of its lanes runs transfers one after another until told to
//! stop: begin, print the intent, debit bank A and credit bank B (each leg an AT branch that
//! also writes a `ledger` row, or with `--modes` a TCC action or an XA branch, see
//! `modes.rs`), then commit, or roll back on purpose (`--rollback-percent`) or
//! because a leg failed, and print what the TM learnt.
//!
//! Nothing here gives up on the first error: a TC that died makes requests wait for the
//! reconnect (or fail), a commit or rollback whose answer was lost is settled by asking the
//! TC for the transaction's status ([`settle`]), re-sending the decision while the TC still
//! holds it in `Begin`.
//!
//! Stdin is the control channel: a `stop` line ends the load (lanes finish their transfer,
//! then `D` is printed), and end of file ends the process. The RM stays up between the two
//! because the TC still sends it phase-two requests after the load stops.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use seata_protocol::GlobalStatus;
use seata_rm::at::{AtConfig, AtResourceManager, DataSourceProxy};
use seata_rm::client::{RmClient, RmClientConfig};
use seata_rm::tcc::{TccActionRef, TccFence};
use seata_rm::xa::XaDataSource;
use seata_tm::context::with_xid;
use seata_tm::{TmClient, TmConfig, TmError};
use tokio::io::AsyncBufReadExt;
use tokio::time::{sleep, Instant};

use crate::args::WorkerArgs;
use crate::bank::{db_opts, server_opts, MOVE, RECORD};
use crate::journal::{intent_line, Outcome, Transfer, Want};
use crate::modes::{parse_modes, pick, Credit, Debit, Mode};

/// How long a transfer's global transaction may stay open before the TC rolls it back. Short,
/// so a killed worker's open transactions end soon; long enough for a TC restart.
pub const TX_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a lane keeps trying to settle an unknown outcome after `stop`.
const SETTLE_AFTER_STOP: Duration = Duration::from_secs(60);
/// Pause between attempts while the TC is unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The application id of every worker (and of the orchestrator's TM): phase two of a dead
/// worker's branches may go to any live RM of the same application and resource.
pub const APPLICATION_ID: &str = "seata-chaos";

/// Writes one journal line; a closed stdout means the orchestrator is gone, so the worker is
/// of no further use.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(3);
    }
}

/// What each lane shares.
struct Ctx {
    tm: TmClient,
    bank_a: DataSourceProxy,
    bank_b: DataSourceProxy,
    args: WorkerArgs,
    modes: Vec<Mode>,
    /// With `tcc` in `--modes`: bank A's debit and bank B's credit action.
    tcc: Option<(TccActionRef, TccActionRef)>,
    /// With `xa` in `--modes`: the banks' XA data sources (kept alive: the RM client holds
    /// them weakly, and phase two needs them).
    xa: Option<(XaDataSource, XaDataSource)>,
    next_seq: AtomicI64,
    stop: AtomicBool,
    /// Kept alive: the RM client holds the AT manager weakly, and phase two needs it.
    _at: Arc<AtResourceManager>,
    _rm: Arc<RmClient>,
}

/// The worker's main.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let server = server_opts(&args.mysql)?;
    let addrs: Vec<String> = args.tc.split(',').map(str::to_owned).collect();
    let pool = args.concurrency * 2 + 2;
    let opts_a = db_opts(&server, &args.db_a, pool)?;
    let opts_b = db_opts(&server, &args.db_b, pool)?;
    // The TC may be restarting when a worker (re)starts: keep trying.
    let modes = parse_modes(&args.modes)?;
    let (rm, at, bank_a, bank_b, tcc, xa) = loop {
        match connect_rm(&addrs, &modes, &args, opts_a.clone(), opts_b.clone()).await {
            Ok(parts) => break parts,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "RM not ready; retrying");
                sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut tm_config = TmConfig::new(APPLICATION_ID, addrs);
    tm_config.request_timeout_ms = 10_000;
    let tm = TmClient::start(tm_config)?;
    let ctx = Arc::new(Ctx {
        tm,
        bank_a,
        bank_b,
        modes,
        tcc,
        xa,
        next_seq: AtomicI64::new(0),
        stop: AtomicBool::new(false),
        _at: at,
        _rm: rm,
        args,
    });

    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    let control = ctx.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(l)) if l.trim() == "stop" => control.stop.store(true, Ordering::SeqCst),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        control.stop.store(true, Ordering::SeqCst);
        let _ = eof_tx.send(());
    });

    let lanes: Vec<_> = (0..ctx.args.concurrency)
        .map(|lane| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(ctx.args.seed ^ (lane as u64) << 32);
                while !ctx.stop.load(Ordering::SeqCst) {
                    transfer(&ctx, &mut rng).await;
                }
            })
        })
        .collect();
    for lane in lanes {
        lane.await.context("a worker lane panicked")?;
    }
    emit("D");
    let _ = eof_rx.await;
    Ok(())
}

type RmParts = (
    Arc<RmClient>,
    Arc<AtResourceManager>,
    DataSourceProxy,
    DataSourceProxy,
    Option<(TccActionRef, TccActionRef)>,
    Option<(XaDataSource, XaDataSource)>,
);

/// The RM with every resource of the run's modes (AT always: a worker killed before
/// `--modes` changed nothing, and an idle AT resource costs nothing). Every worker serves every
/// resource, so a dead worker's phase two goes to any survivor or to its replacement.
async fn connect_rm(
    addrs: &[String],
    modes: &[Mode],
    args: &WorkerArgs,
    opts_a: mysql_async::Opts,
    opts_b: mysql_async::Opts,
) -> anyhow::Result<RmParts> {
    let rm = RmClient::connect(RmClientConfig::new(APPLICATION_ID, addrs.to_vec())).await?;
    let at = rm.at(AtConfig::default())?;
    let a = rm.at_data_source(&at, opts_a.clone()).await?;
    let b = rm.at_data_source(&at, opts_b.clone()).await?;
    let tcc = if modes.contains(&Mode::Tcc) {
        let fence_a = TccFence::new(mysql_async::Pool::new(opts_a.clone()));
        let fence_b = TccFence::new(mysql_async::Pool::new(opts_b.clone()));
        let debit = rm
            .tcc_fenced(&format!("{}.debit", args.db_a), Debit, fence_a)
            .await?;
        let credit = rm
            .tcc_fenced(&format!("{}.credit", args.db_b), Credit, fence_b)
            .await?;
        Some((debit, credit))
    } else {
        None
    };
    let xa = if modes.contains(&Mode::Xa) {
        // Also rolls back prepared branches of a dead worker the TC no longer knows.
        Some((
            rm.xa_data_source(opts_a).await?,
            rm.xa_data_source(opts_b).await?,
        ))
    } else {
        None
    };
    Ok((rm, at, a, b, tcc, xa))
}

/// One leg as an XA branch: the balance change and its ledger row between `XA START` and
/// `XA PREPARE`.
async fn xa_leg(ds: &XaDataSource, id: i64, account: i64, delta: i64) -> anyhow::Result<()> {
    let mut c = ds.begin().await?;
    let r = async {
        c.exec_drop(MOVE, (delta, account)).await?;
        c.exec_drop(RECORD, (id, account, delta)).await
    }
    .await;
    match r {
        Ok(()) => Ok(c.commit().await?),
        Err(e) => {
            let _ = c.rollback().await;
            Err(e.into())
        }
    }
}

/// Both legs of transfer `id` in `mode`, inside its global transaction.
async fn legs(
    ctx: &Ctx,
    mode: Mode,
    id: i64,
    account_a: i64,
    account_b: i64,
    amount: i64,
) -> anyhow::Result<()> {
    match mode {
        Mode::At => {
            leg(&ctx.bank_a, id, account_a, -amount).await?;
            leg(&ctx.bank_b, id, account_b, amount).await
        }
        Mode::Tcc => {
            let (debit, credit) = ctx.tcc.as_ref().context("TCC resources missing")?;
            let p =
                |account| serde_json::json!({"transfer": id, "account": account, "amount": amount});
            debit.call(p(account_a)).await?;
            credit.call(p(account_b)).await?;
            Ok(())
        }
        Mode::Xa => {
            let (xa_a, xa_b) = ctx.xa.as_ref().context("XA resources missing")?;
            xa_leg(xa_a, id, account_a, -amount).await?;
            xa_leg(xa_b, id, account_b, amount).await
        }
    }
}

/// One leg: the balance change and its ledger row, one local transaction and AT branch.
async fn leg(ds: &DataSourceProxy, id: i64, account: i64, delta: i64) -> anyhow::Result<()> {
    let mut c = ds.get_conn().await?;
    c.begin().await?;
    let r = async {
        c.exec_drop(MOVE, (delta, account)).await?;
        c.exec_drop(RECORD, (id, account, delta)).await?;
        c.commit().await
    }
    .await;
    if r.is_err() && c.in_local_transaction() {
        let _ = c.rollback().await;
    }
    Ok(r?)
}

async fn transfer(ctx: &Ctx, rng: &mut fastrand::Rng) {
    let a = &ctx.args;
    let want = if rng.u32(..100) < a.rollback_percent {
        Want::Rollback
    } else {
        Want::Commit
    };
    let (mode, account_a, account_b) = pick(rng, &ctx.modes, a.accounts);
    let amount = rng.i64(1..=100);
    let tx = match ctx.tm.begin("chaos-transfer", TX_TIMEOUT).await {
        Ok(tx) => tx,
        Err(_) => {
            // No leg ran: nothing to record. The TC is probably restarting.
            sleep(RETRY_PAUSE).await;
            return;
        }
    };
    let t = Transfer {
        id: a.generation * 1_000_000_000 + ctx.next_seq.fetch_add(1, Ordering::Relaxed),
        xid: tx.xid().to_owned(),
        want,
        account_a,
        account_b,
        amount,
        result: None,
        settled: None,
    };
    // Before the first leg, so a transfer that may have touched data is always journaled.
    emit(&intent_line(&t));
    let legs = with_xid(
        t.xid.clone(),
        legs(ctx, mode, t.id, account_a, account_b, amount),
    )
    .await;
    let commit = legs.is_ok() && want == Want::Commit;
    let (outcome, why) = decide(&ctx.tm, &t.xid, commit).await;
    let reason = match (&legs, why) {
        (_, Some(e)) => e,
        (Err(e), None) => format!("leg failed: {e:#}"),
        (Ok(()), None) => String::new(),
    };
    emit(&format!("R {} {outcome} {}", t.id, one_line(&reason)));
    if outcome == Outcome::Unknown {
        // Until settled; once the load is stopping, for SETTLE_AFTER_STOP more at most (the
        // orchestrator settles what is left).
        let mut stop_deadline = None;
        let settled = loop {
            let s = settle(&ctx.tm, &t.xid, Some(commit), Instant::now() + TX_TIMEOUT).await;
            if s != Outcome::Unknown {
                break s;
            }
            if ctx.stop.load(Ordering::SeqCst) {
                let d = *stop_deadline.get_or_insert_with(|| Instant::now() + SETTLE_AFTER_STOP);
                if Instant::now() > d {
                    break s;
                }
            }
        };
        if settled != Outcome::Unknown {
            emit(&format!("S {} {settled}", t.id));
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Sends the decision once (with the TM's own retries) and classifies the answer.
async fn decide(tm: &TmClient, xid: &str, commit: bool) -> (Outcome, Option<String>) {
    let r = if commit {
        tm.commit(xid).await
    } else {
        tm.rollback(xid).await
    };
    match r {
        Ok(_) if commit => (Outcome::Committed, None),
        Ok(_) => (Outcome::RolledBack, None),
        Err(e) => (classify(&e), Some(e.to_string())),
    }
}

fn classify(e: &TmError) -> Outcome {
    match e {
        TmError::RolledBackInstead { .. } => Outcome::RolledBack,
        TmError::CommittedInstead { .. } => Outcome::Committed,
        TmError::CommitFailed { .. } | TmError::RollbackFailed { .. } => Outcome::Failed,
        _ => Outcome::Unknown,
    }
}

/// What a status says about the outcome; `None` while it says nothing yet.
fn outcome_of(status: GlobalStatus) -> Option<Outcome> {
    use GlobalStatus as G;
    match status {
        G::Committing | G::CommitRetrying | G::AsyncCommitting | G::Committed => {
            Some(Outcome::Committed)
        }
        G::Rollbacking
        | G::RollbackRetrying
        | G::TimeoutRollbacking
        | G::TimeoutRollbackRetrying
        | G::Rollbacked
        | G::TimeoutRollbacked => Some(Outcome::RolledBack),
        G::CommitFailed | G::RollbackFailed | G::TimeoutRollbackFailed => Some(Outcome::Failed),
        G::Finished => Some(Outcome::Finished),
        G::Begin | G::UnKnown => None,
    }
}

/// Settles an unknown outcome by asking the TC until it says something or `deadline` passes
/// (then `Unknown`). While the TC holds the transaction in `Begin` the decision never got
/// recorded: `decision` is sent again (`Some(true)` commit, `Some(false)` rollback; `None`,
/// for a transfer whose worker died before deciding, rolls back, which is what the TC's
/// timeout would do anyway).
pub async fn settle(
    tm: &TmClient,
    xid: &str,
    decision: Option<bool>,
    deadline: Instant,
) -> Outcome {
    loop {
        match tm.status(xid).await {
            Ok(GlobalStatus::Begin) => {
                let _ = decide(tm, xid, decision.unwrap_or(false)).await;
            }
            Ok(s) => {
                if let Some(o) = outcome_of(s) {
                    return o;
                }
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Outcome::Unknown;
        }
        sleep(RETRY_PAUSE).await;
    }
}
