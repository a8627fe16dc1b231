//! The db store (`--store db`) while its database fails under it (issue 18): the TC's MySQL
//! connections killed (`KILL CONNECTION`) and the MariaDB server crashed and restarted, both
//! during registers and commits. What must hold: no false success (every acknowledged
//! register, commit and rollback is carried out, and only that decision), the TC serves
//! again once the database is back, and `lock_table` ends consistent (no lock without its
//! branch, nothing left once every transaction ended).
//!
//! Killing connections uses the shared server and kills only the connections of this test's
//! TC (found by its database's name); the restart uses a private server
//! ([`PrivateMariaDb`]). Faults are injected on a rhythm while the workload runs; what is
//! checked never depends on timing: every wait is for an event, bounded by [`WAIT`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use seata_it::clients::{call, status, tm, Phase, PhaseTwoCall, TestRm, WAIT};
use seata_it::db_store::{server_url, TestDb};
use seata_it::private_mariadb::PrivateMariaDb;
use seata_it::tc::TcProcess;
use seata_protocol::rpc::TcClient;
use seata_protocol::{
    BranchRegisterRequest, BranchRegisterResponse, BranchType, GlobalBeginRequest,
    GlobalBeginResponse, GlobalCommitRequest, GlobalCommitResponse, GlobalRollbackRequest,
    GlobalRollbackResponse, GlobalStatus,
};

const RES: &str = "jdbc:mysql://127.0.0.1:3306/db_faults";
/// Lease of the TCs here, ms.
const LEASE_MS: u64 = 3_000;
/// Timeout of the workload's transactions, ms: a begin whose answer was lost is rolled back
/// by the TC's timeout job soon after, so the tables can drain.
const TX_TIMEOUT_MS: i32 = 4_000;
/// Concurrent workers, each running transactions one after another.
const WORKERS: usize = 3;

/// What the TC answered to one transaction of the workload.
#[derive(Debug, Clone)]
struct TxRecord {
    xid: String,
    /// The branch, if its register was acknowledged.
    branch: Option<i64>,
    /// The decision asked for.
    asked: Phase,
    /// Whether the decision was acknowledged as taken (commit: Committed or AsyncCommitting;
    /// rollback: Rollbacked or Rollbacking).
    acknowledged: bool,
}

/// Counters of refused or unanswered requests, to show the faults were felt.
#[derive(Debug, Default)]
struct Failures {
    begins: AtomicUsize,
    registers: AtomicUsize,
    decisions: AtomicUsize,
}

/// Runs transactions (begin, one AT branch, commit or rollback) on `WORKERS` workers until
/// `stop` is set; each request's failure is counted and the transaction moves on.
async fn workload(
    tm: TcClient,
    rm: TestRm,
    stop: Arc<AtomicBool>,
    failures: Arc<Failures>,
) -> Vec<TxRecord> {
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (tm, rm, stop, failures) = (tm.clone(), rm.clone(), stop.clone(), failures.clone());
            tokio::spawn(async move {
                let mut records = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    if let Some(r) = one_transaction(&tm, &rm, w, i, &failures).await {
                        records.push(r);
                    }
                }
                records
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    all
}

async fn one_transaction(
    tm: &TcClient,
    rm: &TestRm,
    worker: usize,
    i: usize,
    failures: &Failures,
) -> Option<TxRecord> {
    let begun: Result<GlobalBeginResponse, _> = tm
        .request(GlobalBeginRequest {
            timeout: TX_TIMEOUT_MS,
            transaction_name: "db-faults".into(),
        })
        .await;
    let xid = match begun {
        Ok(r) if r.result.is_success() => r.xid,
        _ => {
            failures.begins.fetch_add(1, Ordering::Relaxed);
            // The database is away: do not spin on 2 cores while it restarts.
            tokio::time::sleep(Duration::from_millis(10)).await;
            return None;
        }
    };
    let registered: Result<BranchRegisterResponse, _> = rm
        .client
        .request(BranchRegisterRequest {
            xid: xid.clone(),
            branch_type: BranchType::At,
            resource_id: RES.into(),
            lock_key: format!("t:{worker}_{i}"),
            application_data: String::new(),
        })
        .await;
    let branch = match registered {
        Ok(r) if r.result.is_success() => Some(r.branch_id),
        _ => {
            failures.registers.fetch_add(1, Ordering::Relaxed);
            None
        }
    };
    // Commit every other transaction whose branch is in; roll back the rest.
    let asked = if branch.is_some() && i.is_multiple_of(2) {
        Phase::Commit
    } else {
        Phase::Rollback
    };
    let acknowledged = match asked {
        Phase::Commit => {
            let r: Result<GlobalCommitResponse, _> = tm
                .request(GlobalCommitRequest {
                    xid: xid.clone(),
                    extra_data: String::new(),
                })
                .await;
            matches!(r, Ok(ref r) if r.result.is_success()
                && matches!(r.global_status, GlobalStatus::Committed | GlobalStatus::AsyncCommitting))
        }
        Phase::Rollback => {
            let r: Result<GlobalRollbackResponse, _> = tm
                .request(GlobalRollbackRequest {
                    xid: xid.clone(),
                    extra_data: String::new(),
                })
                .await;
            matches!(r, Ok(ref r) if r.result.is_success()
                && matches!(r.global_status, GlobalStatus::Rollbacked | GlobalStatus::Rollbacking))
        }
    };
    if !acknowledged {
        failures.decisions.fetch_add(1, Ordering::Relaxed);
    }
    Some(TxRecord {
        xid,
        branch,
        asked,
        acknowledged,
    })
}

/// Rows of `SELECT COUNT(*) ...` on the server at `url` (no database selected).
async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .expect("connect to the database server");
    let n: Option<i64> = conn.query_first(sql).await.expect("count rows");
    let _ = conn.disconnect().await;
    n.unwrap_or(0)
}

/// Lock rows of `db` whose branch is not stored: a lock nobody can release.
async fn orphan_locks(url: &str, db: &str) -> i64 {
    count(
        url,
        &format!(
            "SELECT COUNT(*) FROM `{db}`.lock_table l \
             LEFT JOIN `{db}`.branch_table b ON b.branch_id = l.branch_id \
             WHERE b.branch_id IS NULL"
        ),
    )
    .await
}

/// After the faults: every acknowledged decision is carried out and no branch gets both
/// phases; undecided transactions are rolled back (or finished as stored); the TC serves a
/// fresh transaction; then the tables drain and `lock_table` never held an orphan.
async fn check_after_faults(
    tc: &TcProcess,
    url: &str,
    db: &str,
    records: &[TxRecord],
    workload_rm: &TestRm,
) {
    let tm2 = tm(tc.addr()).await;
    let rm2 = TestRm::connect(tc.addr(), "db-faults-check", &[RES]).await;
    // Phase two may go to the workload's RM or to this one.
    let all_calls = || {
        let mut calls = workload_rm.calls();
        calls.extend(rm2.calls());
        calls
    };
    assert_eq!(
        orphan_locks(url, db).await,
        0,
        "lock rows without their branch after the faults"
    );

    // The TC serves again: a whole transaction goes through, and its row is locked while it
    // runs.
    let xid = seata_it::clients::begin(&tm2, 60_000).await;
    let b = rm2.register(&xid, RES, "t:fresh").await;
    assert!(b.result.is_success(), "{:?}\n{}", b.result, tc.log());
    assert!(!seata_it::clients::lockable(&rm2, RES, "t:fresh").await);
    let c = seata_it::clients::commit(&tm2, &xid).await;
    assert!(c.result.is_success(), "{:?}\n{}", c.result, tc.log());

    // Undecided transactions: whatever the TC stored, it finishes; a still-open one is
    // rolled back now.
    for r in records.iter().filter(|r| !r.acknowledged) {
        if status(&tm2, &r.xid).await == GlobalStatus::Begin {
            let _ = seata_it::clients::rollback(&tm2, &r.xid).await;
        }
    }
    for r in records {
        seata_it::clients::wait_status(&tm2, &r.xid, GlobalStatus::Finished).await;
    }

    // Every acknowledged decision reached its branch, and no branch got both phases.
    let calls_of = |calls: &[PhaseTwoCall]| {
        let mut by_branch: HashMap<i64, Vec<Phase>> = HashMap::new();
        for c in calls {
            by_branch.entry(c.branch_id).or_default().push(c.phase);
        }
        by_branch
    };
    let wanted: Vec<&TxRecord> = records
        .iter()
        .filter(|r| r.acknowledged && r.branch.is_some())
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let by_branch = calls_of(&all_calls());
        let missing: Vec<&&TxRecord> = wanted
            .iter()
            .filter(|r| {
                r.branch
                    .and_then(|b| by_branch.get(&b))
                    .is_none_or(|p| !p.contains(&r.asked))
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledged decisions never reached their branch: {missing:#?}\n{}",
            tc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let by_branch = calls_of(&all_calls());
    for (branch, phases) in &by_branch {
        assert!(
            phases.iter().all(|p| *p == phases[0]),
            "branch {branch} got both phases: {phases:?}"
        );
    }
    for r in records {
        let Some(phases) = r.branch.and_then(|b| by_branch.get(&b)) else {
            continue;
        };
        if r.acknowledged {
            assert!(
                phases.iter().all(|p| *p == r.asked),
                "{} acknowledged {:?} but got {phases:?}",
                r.xid,
                r.asked
            );
        }
    }

    // Everything ends: lock rows included.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut left = Vec::new();
        for t in ["global_table", "branch_table", "lock_table"] {
            left.push(count(url, &format!("SELECT COUNT(*) FROM `{db}`.{t}")).await);
        }
        if left.iter().all(|n| *n == 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "global/branch/lock rows left: {left:?}\n{}",
            tc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seata_it::clients::lockable(&rm2, RES, "t:fresh").await);
}

/// Kills every connection of database `db` on the shared server; returns how many.
async fn kill_connections_of(admin: &mut mysql_async::Conn, db: &str) -> usize {
    let ids: Vec<u64> = admin
        .exec(
            "SELECT id FROM information_schema.processlist WHERE db = ?",
            (db,),
        )
        .await
        .expect("list the TC's connections");
    let mut killed = 0;
    for id in ids {
        // Gone already is fine: it was closed or killed meanwhile.
        if admin
            .query_drop(format!("KILL CONNECTION {id}"))
            .await
            .is_ok()
        {
            killed += 1;
        }
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_db_connections_during_registers_and_commits_give_no_false_success() {
    let db = TestDb::create().await;
    let name = db
        .url()
        .rsplit('/')
        .next()
        .expect("database in the URL")
        .to_owned();
    let tc = db.start_tc(LEASE_MS);
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "db-faults-rm", &[RES]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Failures::default());
    let work = tokio::spawn(workload(tm1, rm1.clone(), stop.clone(), failures.clone()));

    let mut admin = mysql_async::Conn::from_url(server_url())
        .await
        .expect("shared MariaDB");
    let mut killed = 0;
    for _ in 0..25 {
        // The fault's rhythm: a round of kills every 80 ms while the workload runs.
        tokio::time::sleep(Duration::from_millis(80)).await;
        killed += kill_connections_of(&mut admin, &name).await;
    }
    stop.store(true, Ordering::SeqCst);
    let records = work.await.expect("workload");
    let _ = admin.disconnect().await;
    eprintln!(
        "killed {killed} connections; {} transactions; failed: {failures:?}",
        records.len()
    );
    assert!(killed > 0, "no connection of the TC was killed");
    assert!(!records.is_empty());
    check_after_faults(&tc, &server_url(), &name, &records, &rm1).await;
}

// Two threads: the server's restart blocks one while the workload goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_crashed_and_restarted_during_registers_and_commits_gives_no_false_success() {
    let mut server = PrivateMariaDb::start();
    let url = server.url();
    {
        let mut admin = mysql_async::Conn::from_url(url.clone())
            .await
            .expect("private MariaDB");
        admin
            .query_drop("CREATE DATABASE seata")
            .await
            .expect("create database");
        let _ = admin.disconnect().await;
    }
    let config = tempfile::tempdir().expect("config dir");
    let path = config.path().join("tc.toml");
    std::fs::write(&path, format!("db-lease-ms = {LEASE_MS}\n")).expect("config written");
    let db_url = format!("{url}/seata");
    let tc = TcProcess::start_with(&[
        "--config",
        path.to_str().expect("utf-8 temp path"),
        "--store",
        "db",
        "--db-url",
        &db_url,
        "--init-db",
    ]);
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "db-faults-rm", &[RES]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Failures::default());
    let work = tokio::spawn(workload(
        tm1.clone(),
        rm1.clone(),
        stop.clone(),
        failures.clone(),
    ));
    for _ in 0..2 {
        // Let the workload run, then crash the server under it; it restarts (with crash
        // recovery) while requests keep coming.
        tokio::time::sleep(Duration::from_millis(700)).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| server.restart());
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let records = work.await.expect("workload");
    eprintln!("{} transactions; failed: {failures:?}", records.len());
    assert!(
        failures.begins.load(Ordering::Relaxed)
            + failures.registers.load(Ordering::Relaxed)
            + failures.decisions.load(Ordering::Relaxed)
            > 0,
        "no request failed while the database was down"
    );
    check_after_faults(&tc, &url, "seata", &records, &rm1).await;
    // Call once more through the first clients: they were never dropped by the TC.
    let _: GlobalBeginResponse = call(&tm1, || GlobalBeginRequest {
        timeout: 60_000,
        transaction_name: "after".into(),
    })
    .await;
}
