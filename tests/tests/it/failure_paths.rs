//! Failure paths against the real `seata-tc` (issue 18): an RM that does its phase-two work and
//! dies before answering, the TC killed between a durable decision and its answer to the TM,
//! SIGTERM with requests in flight, configuration nothing else exercises (`--host`,
//! `max-connections` held by registered clients, the phase-two retry timeouts and
//! `rollback-retry-timeout-unlock-enable`), and the file store on a full disk (a small tmpfs,
//! so these tests need root) or with a failing `fdatasync` (injected with `strace`). Every wait
//! is for an event, bounded by [`WAIT`].

use std::sync::{Arc, Mutex};

use seata_it::clients::{
    begin, commit, lockable, rollback, status, tm, wait_status, Answer, Phase, PhaseTwoCall,
    TestRm, WAIT,
};
use seata_it::mysql::TestDb;
use seata_it::tc::TcProcess;
use seata_protocol::rpc::RpcError;
use seata_protocol::{
    BranchStatus, BranchType, GlobalBeginRequest, GlobalBeginResponse, GlobalCommitRequest,
    GlobalCommitResponse, GlobalRollbackRequest, GlobalRollbackResponse, GlobalStatus,
};
use seata_rm::client::{RmClient, RmClientConfig};
use seata_tm::{TmClient, TmConfig};

const TCC: &str = "tcc-failure-paths";
const DB: &str = "jdbc:mysql://127.0.0.1:3306/failure_paths";

fn file_tc() -> TcProcess {
    TcProcess::start_with(&["--store", "file"])
}

/// The calls of `phase` for `branch_id`.
fn count(calls: &[PhaseTwoCall], phase: Phase, branch_id: i64) -> usize {
    calls
        .iter()
        .filter(|c| c.phase == phase && c.branch_id == branch_id)
        .count()
}

/// Waits until one line of the TC's log contains every one of `needles`.
async fn wait_log_line(tc: &TcProcess, needles: &[&str]) {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let log = tc.log();
        if log.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no log line with all of {needles:?}:\n{log}"
        );
        // Polling the collected log; the outcome does not depend on this interval.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

// ---- (a) an RM that does its phase-two work and dies before answering -----------------------

/// A real AT resource (MariaDB, the `seata-rm` proxy and undo executor) whose phase two is
/// served by a protocol-level test RM that runs the real manager's `branch_commit` /
/// `branch_rollback` and dies before answering the first time.
struct AtRig {
    tc: TcProcess,
    db: TestDb,
    /// Serves the resource once the phase-one RM is gone.
    rm: TestRm,
    /// The status the real manager returned for each phase-two request, in order.
    answers: Arc<Mutex<Vec<BranchStatus>>>,
    resource: String,
}

impl AtRig {
    /// Runs one global transaction that takes 10 from account 1 (balance 100) and ends it
    /// with a commit or (with `roll_back`) a rollback; the phase-one RM leaves before phase two.
    /// `between` runs, on the plain pool, after the first (dying) phase-two work.
    async fn run(tag: &str, roll_back: bool, between: Option<&'static str>) -> (AtRig, String) {
        let tc = file_tc();
        let db = TestDb::create(
            tag,
            &[
                "CREATE TABLE account (id INT PRIMARY KEY, balance BIGINT NOT NULL)",
                "INSERT INTO account VALUES (1, 100)",
            ],
        )
        .await;
        let tm = TmClient::connect(TmConfig::new("it-fp-tm", vec![tc.addr().to_owned()]))
            .await
            .expect("TM connects");
        let real = RmClient::connect(RmClientConfig::new("it-fp-at", vec![tc.addr().to_owned()]))
            .await
            .expect("RM connects");
        let at = real.at(Default::default()).expect("AT resource manager");
        let ds = real
            .at_data_source(&at, db.opts(4))
            .await
            .expect("AT data source");
        let resource = ds.resource_id().to_owned();
        let rm = TestRm::connect(tc.addr(), "it-fp-phase-two", &[&resource]).await;
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (work_at, work_answers, plain) = (at.clone(), answers.clone(), db.plain().clone());
        rm.work(Arc::new(move |c: PhaseTwoCall| {
            let (at, answers, plain) = (work_at.clone(), work_answers.clone(), plain.clone());
            Box::pin(async move {
                let s = match c.phase {
                    Phase::Commit => at.branch_commit(&c.xid, c.branch_id, &c.resource_id).await,
                    Phase::Rollback => {
                        at.branch_rollback(&c.xid, c.branch_id, &c.resource_id)
                            .await
                    }
                };
                let first = {
                    let mut a = answers.lock().unwrap();
                    a.push(s);
                    a.len() == 1
                };
                if let (true, Some(sql)) = (first, between) {
                    use mysql_async::prelude::Queryable;
                    plain
                        .get_conn()
                        .await
                        .expect("plain connection")
                        .query_drop(sql)
                        .await
                        .expect("local write between the two phase-two calls");
                }
                s
            })
        }));
        rm.die_before_answering(1);

        let xid = Arc::new(Mutex::new(String::new()));
        let seen = xid.clone();
        let real_rm = real.clone();
        let result = tm
            .run(
                "it-fp",
                std::time::Duration::from_secs(60),
                |ctx| async move {
                    *seen.lock().unwrap() = ctx.xid().unwrap_or_default().to_owned();
                    ds.get_conn()
                        .await?
                        .exec_drop(
                            "UPDATE account SET balance = balance - 10 WHERE id = ?",
                            (1,),
                        )
                        .await?;
                    // Phase one is over (the branch registered and its undo log written): the
                    // phase-one RM leaves, so only the test RM can get phase two.
                    real_rm.shutdown();
                    if roll_back {
                        anyhow::bail!("rolled back on purpose by the test");
                    }
                    anyhow::Ok(())
                },
            )
            .await;
        // The TM's own outcome is not the point here (a rollback that meets a dead RM is
        // "retrying"); what the TC and the data end up with is.
        drop(result);
        let xid = xid.lock().unwrap().clone();
        assert!(!xid.is_empty(), "the closure ran in a global transaction");
        (
            AtRig {
                tc,
                db,
                rm,
                answers,
                resource,
            },
            xid,
        )
    }
}

#[tokio::test]
async fn rm_dying_after_its_undo_gets_the_rollback_again_and_the_data_is_restored_once() {
    // After the first undo (balance back to 100) and before the retry, a local write outside
    // any global transaction adds 1. A second undo would either revert it (100) or refuse it
    // as a dirty write (the TC would end in a failed rollback): only an undo applied exactly
    // once leaves 101.
    let (rig, xid) = AtRig::run(
        "fp_rollback",
        true,
        Some("UPDATE account SET balance = balance + 1 WHERE id = 1"),
    )
    .await;
    let calls = rig
        .rm
        .wait_for(WAIT, |c| c.iter().filter(|c| c.xid == xid).count() >= 2)
        .await;
    assert!(
        calls
            .iter()
            .filter(|c| c.xid == xid)
            .all(|c| c.phase == Phase::Rollback),
        "{calls:?}"
    );
    let probe = tm(rig.tc.addr()).await;
    wait_status(&probe, &xid, GlobalStatus::Finished).await;
    let answers = rig.answers.lock().unwrap().clone();
    assert_eq!(
        answers[..2],
        [
            BranchStatus::PhaseTwoRollbacked,
            BranchStatus::PhaseTwoRollbacked
        ],
        "the returning RM is idempotent"
    );
    assert_eq!(
        rig.db
            .scalar("SELECT balance FROM account WHERE id = 1")
            .await,
        101
    );
    assert_eq!(
        rig.db
            .scalar("SELECT COUNT(*) FROM undo_log WHERE log_status = 0")
            .await,
        0,
        "no undo log left to apply"
    );
    assert!(lockable(&rig.rm, &rig.resource, "account:1").await);
    rig.db.cleanup().await;
}

#[tokio::test]
async fn rm_dying_after_its_commit_gets_the_commit_again_and_the_data_stays_committed() {
    let (rig, xid) = AtRig::run("fp_commit", false, None).await;
    let calls = rig
        .rm
        .wait_for(WAIT, |c| c.iter().filter(|c| c.xid == xid).count() >= 2)
        .await;
    assert!(
        calls
            .iter()
            .filter(|c| c.xid == xid)
            .all(|c| c.phase == Phase::Commit),
        "{calls:?}"
    );
    let probe = tm(rig.tc.addr()).await;
    wait_status(&probe, &xid, GlobalStatus::Finished).await;
    let answers = rig.answers.lock().unwrap().clone();
    assert!(
        answers
            .iter()
            .all(|s| *s == BranchStatus::PhaseTwoCommitted),
        "{answers:?}"
    );
    assert_eq!(
        rig.db
            .scalar("SELECT balance FROM account WHERE id = 1")
            .await,
        90
    );
    rig.db.wait_undo_empty().await;
    rig.db.cleanup().await;
}

// ---- (b) the TC dies after a durable decision, before answering the TM ----------------------

/// Begins a transaction with one TCC branch on a TC whose RM withholds its first phase-two
/// answer, sends the TM's `decide` without waiting, and kills the TC once the RM has the
/// phase-two request (so the decision was made, and must have been stored first). Returns
/// the TM's outcome, the restarted TC, the XID and the branch id.
async fn kill_after_decision(
    decide: Phase,
) -> (Result<GlobalStatus, RpcError>, TcProcess, String, i64) {
    let mut tc = file_tc();
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "it-fp-rm", &[TCC]).await;
    let xid = begin(&tm1, 60_000).await;
    let b = rm1.register_typed(&xid, BranchType::Tcc, TCC, "").await;
    assert!(b.result.is_success(), "{:?}", b.result);
    rm1.withhold(1);
    let (client, x) = (tm1.clone(), xid.clone());
    let pending = tokio::spawn(async move {
        match decide {
            Phase::Commit => client
                .request::<GlobalCommitResponse>(GlobalCommitRequest {
                    xid: x,
                    extra_data: String::new(),
                })
                .await
                .map(|r| r.global_status),
            Phase::Rollback => client
                .request::<GlobalRollbackResponse>(GlobalRollbackRequest {
                    xid: x,
                    extra_data: String::new(),
                })
                .await
                .map(|r| r.global_status),
        }
    });
    rm1.wait_for(WAIT, |c| count(c, decide, b.branch_id) == 1)
        .await;
    tc.kill();
    let outcome = pending.await.expect("TM task");
    tm1.shutdown();
    rm1.client.shutdown();
    tc.restart();
    (outcome, tc, xid, b.branch_id)
}

/// What the TM's request must have ended with: "outcome unknown", never an answer.
fn assert_unknown(outcome: &Result<GlobalStatus, RpcError>) {
    match outcome {
        Err(e) => assert!(e.is_undetermined(), "{e}"),
        Ok(s) => panic!("the TC was killed before answering, yet the TM got {s}"),
    }
}

#[tokio::test]
async fn tc_killed_after_a_durable_commit_decision_finishes_the_commit_after_restart() {
    let (outcome, tc, xid, branch) = kill_after_decision(Phase::Commit).await;
    assert_unknown(&outcome);
    let tm2 = tm(tc.addr()).await;
    // No RM yet: the transaction cannot have finished, so its status is the stored decision.
    let s = status(&tm2, &xid).await;
    assert!(
        matches!(s, GlobalStatus::Committing | GlobalStatus::CommitRetrying),
        "{s}"
    );
    // A late rollback cannot flip it.
    let late = rollback(&tm2, &xid).await.global_status;
    assert!(
        matches!(
            late,
            GlobalStatus::Committing | GlobalStatus::CommitRetrying
        ),
        "{late}"
    );
    let rm2 = TestRm::connect(tc.addr(), "it-fp-rm", &[TCC]).await;
    let calls = rm2
        .wait_for(WAIT, |c| count(c, Phase::Commit, branch) >= 1)
        .await;
    assert_eq!(count(&calls, Phase::Rollback, branch), 0, "{calls:?}");
    wait_status(&tm2, &xid, GlobalStatus::Finished).await;
}

#[tokio::test]
async fn tc_killed_after_a_durable_rollback_decision_finishes_the_rollback_after_restart() {
    let (outcome, tc, xid, branch) = kill_after_decision(Phase::Rollback).await;
    assert_unknown(&outcome);
    let tm2 = tm(tc.addr()).await;
    let s = status(&tm2, &xid).await;
    assert!(
        matches!(
            s,
            GlobalStatus::Rollbacking | GlobalStatus::RollbackRetrying
        ),
        "{s}"
    );
    let late = commit(&tm2, &xid).await.global_status;
    assert!(
        matches!(
            late,
            GlobalStatus::Rollbacking | GlobalStatus::RollbackRetrying
        ),
        "{late}"
    );
    let rm2 = TestRm::connect(tc.addr(), "it-fp-rm", &[TCC]).await;
    let calls = rm2
        .wait_for(WAIT, |c| count(c, Phase::Rollback, branch) >= 1)
        .await;
    assert_eq!(count(&calls, Phase::Commit, branch), 0, "{calls:?}");
    wait_status(&tm2, &xid, GlobalStatus::Finished).await;
}

// ---- (c) SIGTERM with requests in flight -----------------------------------------------------

#[tokio::test]
async fn sigterm_answers_requests_in_flight_before_exit() {
    let mut tc = file_tc();
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "it-fp-rm", &[TCC]).await;
    let xid = begin(&tm1, 60_000).await;
    let b = rm1.register_typed(&xid, BranchType::Tcc, TCC, "").await;
    assert!(b.result.is_success(), "{:?}", b.result);
    // The commit stays in flight on the TC: the RM never answers its phase-two request.
    rm1.withhold(1);
    let client = tm1.clone();
    let x = xid.clone();
    let in_flight = tokio::spawn(async move {
        client
            .request::<GlobalCommitResponse>(GlobalCommitRequest {
                xid: x,
                extra_data: String::new(),
            })
            .await
    });
    rm1.wait_for(WAIT, |c| count(c, Phase::Commit, b.branch_id) == 1)
        .await;
    // Begins racing the signal: each is answered or cleanly not sent.
    let begins: Vec<_> = (0..20)
        .map(|_| {
            let client = tm1.clone();
            tokio::spawn(async move {
                client
                    .request::<GlobalBeginResponse>(GlobalBeginRequest {
                        timeout: 60_000,
                        transaction_name: "it-fp-term".into(),
                    })
                    .await
            })
        })
        .collect();
    let clean_exit = tokio::task::spawn_blocking(move || {
        let ok = tc.terminate();
        (ok, tc)
    });
    let answered = in_flight.await.expect("TM task");
    let mut acknowledged = Vec::new();
    let mut unanswered = 0;
    for b in begins {
        match b.await.expect("begin task") {
            Ok(r) if r.result.is_success() => acknowledged.push(r.xid),
            // Refused while the connection closed: nothing was done.
            Ok(_) => {}
            // Only a begin that reached the TC after it closed the connection goes without an
            // answer (the protocol has no "going away" message); the TC never read it, which
            // the restart below checks: no transaction of this name beyond the acknowledged.
            Err(e) if e.is_undetermined() => unanswered += 1,
            Err(_) => {}
        }
    }
    let (ok, mut tc) = clean_exit.await.expect("terminate");
    assert!(ok, "SIGTERM ends the TC cleanly:\n{}", tc.log());
    let commit_status = match answered {
        Ok(r) => r.global_status,
        Err(e) => panic!(
            "commit in flight at SIGTERM got no answer ({e}):\n{}",
            tc.log()
        ),
    };
    assert!(
        matches!(
            commit_status,
            GlobalStatus::Committing | GlobalStatus::CommitRetrying | GlobalStatus::Committed
        ),
        "{commit_status}"
    );
    tm1.shutdown();
    rm1.client.shutdown();

    // What was answered is stored: the begins are live, the commit goes on after a restart.
    tc.restart();
    let tm2 = tm(tc.addr()).await;
    for x in &acknowledged {
        assert_eq!(status(&tm2, x).await, GlobalStatus::Begin, "{x}");
    }
    let listed: serde_json::Value = reqwest::get(format!(
        "http://{}/admin/v1/transactions?kind=seata&limit=1000",
        tc.http_addr()
    ))
    .await
    .expect("admin list")
    .json()
    .await
    .expect("admin list JSON");
    let mut begun: Vec<String> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|t| t["name"] == "it-fp-term")
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    begun.sort();
    acknowledged.sort();
    assert_eq!(
        begun, acknowledged,
        "a begin was carried out without its answer reaching the client ({unanswered} unanswered)"
    );
    let rm2 = TestRm::connect(tc.addr(), "it-fp-rm", &[TCC]).await;
    let calls = rm2
        .wait_for(WAIT, |c| count(c, Phase::Commit, b.branch_id) >= 1)
        .await;
    assert_eq!(count(&calls, Phase::Rollback, b.branch_id), 0, "{calls:?}");
    wait_status(&tm2, &xid, GlobalStatus::Finished).await;
}

// ---- (d) configuration -----------------------------------------------------------------------

#[tokio::test]
async fn host_flag_is_the_ip_xids_name() {
    let tc = TcProcess::start_with(&["--store", "memory", "--host", "10.11.12.13"]);
    let port = tc
        .addr()
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or_default();
    let tm1 = tm(tc.addr()).await;
    let xid = begin(&tm1, 60_000).await;
    assert!(
        xid.starts_with(&format!("10.11.12.13:{port}:")),
        "{xid} does not name --host"
    );
    assert_eq!(status(&tm1, &xid).await, GlobalStatus::Begin);

    // Without it, the listen IP.
    let plain = TcProcess::start_with(&["--store", "memory"]);
    let tm2 = tm(plain.addr()).await;
    let xid = begin(&tm2, 60_000).await;
    assert!(xid.starts_with(&format!("{}:", plain.addr())), "{xid}");
}

#[tokio::test]
async fn max_connections_held_by_registered_clients_makes_a_new_one_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().expect("config dir");
    let path = dir.path().join("tc.toml");
    std::fs::write(
        &path,
        "max-connections = 2\nread-idle-timeout-ms = 600000\n",
    )
    .expect("config written");
    let tc = TcProcess::start_with(&[
        "--store",
        "memory",
        "--config",
        path.to_str().expect("utf-8 temp path"),
    ]);
    let first = tm(tc.addr()).await;
    let second = tm(tc.addr()).await;
    let addr = tc.addr().to_owned();
    let third = tokio::spawn(async move { crate::hardening::raw_tm(&addr).await });
    // Both slots stay taken by registered clients: however many requests they get answered,
    // the third is not (it is never even accepted; registered clients are not evicted).
    for _ in 0..50 {
        begin(&first, 60_000).await;
        begin(&second, 60_000).await;
    }
    assert!(
        !third.is_finished(),
        "a third client registered with max-connections = 2"
    );
    // A slot frees: the waiting client gets it.
    first.shutdown();
    let mut third = third.await.expect("third client registered");
    let r = crate::hardening::raw_begin(&mut third, 7).await;
    assert!(r.result.is_success(), "{:?}", r.result);
    begin(&second, 60_000).await;
}

/// A TC on the memory store with `recovery` (TOML lines of `[recovery]`). Keep the returned
/// directory while the TC runs.
fn tc_with_recovery(recovery: &str) -> (TcProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("config dir");
    let path = dir.path().join("tc.toml");
    std::fs::write(&path, format!("[recovery]\n{recovery}\n")).expect("config written");
    let tc = TcProcess::start_with(&[
        "--store",
        "memory",
        "--config",
        path.to_str().expect("utf-8 temp path"),
    ]);
    (tc, dir)
}

const GIVE_UP: &str = "phase-two retry timeout reached";

#[tokio::test]
async fn max_commit_retry_timeout_stops_retrying_a_commit() {
    let (tc, _dir) = tc_with_recovery("max-commit-retry-timeout-ms = 1");
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "it-fp-rm", &[TCC]).await;
    let xid = begin(&tm1, 60_000).await;
    let b = rm1.register_typed(&xid, BranchType::Tcc, TCC, "").await;
    assert!(b.result.is_success());
    rm1.answer(Answer::Retryable);
    assert_eq!(
        commit(&tm1, &xid).await.global_status,
        GlobalStatus::CommitRetrying
    );
    wait_log_line(&tc, &[GIVE_UP, &xid]).await;
    // Given up, not decided otherwise: still a commit, and only commits were sent.
    assert_eq!(status(&tm1, &xid).await, GlobalStatus::CommitRetrying);
    assert!(rm1.calls().iter().all(|c| c.phase == Phase::Commit));
}

/// Rolls back a transaction whose RM keeps failing on a TC with a 1 ms rollback retry timeout
/// and `unlock` as `rollback-retry-timeout-unlock-enable`; returns whether its row is free
/// once the TC has given up.
async fn row_free_after_rollback_retry_timeout(unlock: bool) -> bool {
    let (tc, _dir) = tc_with_recovery(&format!(
        "max-rollback-retry-timeout-ms = 1\nrollback-retry-timeout-unlock-enable = {unlock}"
    ));
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "it-fp-rm", &[DB]).await;
    let xid = begin(&tm1, 60_000).await;
    assert!(rm1.register(&xid, DB, "t:1").await.result.is_success());
    rm1.answer(Answer::Retryable);
    assert_eq!(
        rollback(&tm1, &xid).await.global_status,
        GlobalStatus::RollbackRetrying
    );
    assert!(!lockable(&rm1, DB, "t:1").await, "held while retrying");
    wait_log_line(&tc, &[GIVE_UP, &xid, &format!("unlocked={unlock}")]).await;
    assert_eq!(status(&tm1, &xid).await, GlobalStatus::RollbackRetrying);
    assert!(rm1.calls().iter().all(|c| c.phase == Phase::Rollback));
    lockable(&rm1, DB, "t:1").await
}

#[tokio::test]
async fn rollback_retry_timeout_keeps_the_rows_locked_by_default() {
    assert!(!row_free_after_rollback_retry_timeout(false).await);
}

#[tokio::test]
async fn rollback_retry_timeout_unlock_enable_frees_the_rows() {
    assert!(row_free_after_rollback_retry_timeout(true).await);
}

// ---- (e) the file store on a full disk -------------------------------------------------------

/// A tmpfs of a given size mounted on a fresh temporary directory (root only), unmounted on
/// drop. Drop the TC using it first.
struct Tmpfs {
    mount_point: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let mount_point = tempfile::tempdir().expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mount_point.path())
            .output()
            .expect("runs mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { mount_point }
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.mount_point.path())
            .status()
            .expect("runs mount")
            .success();
        assert!(ok, "cannot resize the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.mount_point.path())
            .status();
    }
}

#[tokio::test]
async fn full_disk_refuses_what_it_cannot_write_and_a_restart_keeps_every_acknowledged_one() {
    let disk = Tmpfs::mount("256k");
    let data_dir = tempfile::tempdir_in(disk.mount_point.path()).expect("data dir on tmpfs");
    let mut tc = TcProcess::start_in(data_dir, &["--store", "file"]);
    let tm1 = tm(tc.addr()).await;
    // A transaction with a branch, to be committed once the disk is full.
    let rm1 = TestRm::connect(tc.addr(), "it-fp-rm", &[TCC]).await;
    let pending = begin(&tm1, 600_000).await;
    let b = rm1.register_typed(&pending, BranchType::Tcc, TCC, "").await;
    assert!(b.result.is_success(), "{:?}", b.result);
    // Big records fill the disk in a few hundred begins.
    let name = "x".repeat(1000);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for _ in 0..5_000 {
        let r: Result<GlobalBeginResponse, _> = tm1
            .request(GlobalBeginRequest {
                timeout: 600_000,
                transaction_name: name.clone(),
            })
            .await;
        match r {
            Ok(r) if r.result.is_success() => acknowledged.push(r.xid),
            Ok(r) => {
                assert!(
                    r.result.msg.contains("store"),
                    "a refusal names the store: {:?}",
                    r.result
                );
                refused += 1;
                if refused == 20 {
                    break;
                }
            }
            Err(e) => panic!("begin on a full disk got no answer ({e}):\n{}", tc.log()),
        }
    }
    assert_eq!(refused, 20, "the disk never filled:\n{}", tc.log());
    assert!(!acknowledged.is_empty());
    // The commit decision cannot be written either: refused, and nothing committed.
    let c: GlobalCommitResponse = tm1
        .request(GlobalCommitRequest {
            xid: pending.clone(),
            extra_data: String::new(),
        })
        .await
        .expect("commit on a full disk answered");
    assert!(
        !c.result.is_success(),
        "commit acknowledged on a full disk: {c:?}"
    );
    assert_eq!(count(&rm1.calls(), Phase::Commit, b.branch_id), 0);
    tm1.shutdown();
    rm1.client.shutdown();

    // Room again, and a crash: everything acknowledged comes back.
    disk.resize("64m");
    tc.restart();
    let tm2 = tm(tc.addr()).await;
    for x in &acknowledged {
        assert_eq!(
            status(&tm2, x).await,
            GlobalStatus::Begin,
            "{x} was acknowledged"
        );
    }
    // The refused commit left the transaction open, and it can still be committed.
    assert_eq!(status(&tm2, &pending).await, GlobalStatus::Begin);
    let rm2 = TestRm::connect(tc.addr(), "it-fp-rm", &[TCC]).await;
    assert_eq!(
        commit(&tm2, &pending).await.global_status,
        GlobalStatus::Committed
    );
    assert_eq!(count(&rm2.calls(), Phase::Commit, b.branch_id), 1);
    let next = begin(&tm2, 60_000).await;
    assert_eq!(status(&tm2, &next).await, GlobalStatus::Begin);
    drop(tc);
}

/// `strace` attached to every thread of `pid`, making each `fdatasync` fail with EIO; detached
/// (SIGTERM, by its pid) on drop.
struct FailingSync {
    strace: std::process::Child,
    trace: tempfile::NamedTempFile,
}

impl FailingSync {
    fn attach(pid: u32) -> FailingSync {
        use std::io::BufRead;
        let trace = tempfile::NamedTempFile::new().expect("trace file");
        let mut strace = std::process::Command::new("strace")
            .args([
                "-f",
                "-e",
                "trace=fdatasync",
                "-e",
                "inject=fdatasync:error=EIO",
            ])
            .arg("-o")
            .arg(trace.path())
            .args(["-p", &pid.to_string()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("strace runs (install strace)");
        // strace says `Process N attached` per thread on stderr; the first line means it is
        // in place (a failure to attach says something else and ends it).
        let stderr = strace.stderr.take().expect("piped stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(first.contains("attached"), "strace did not attach: {first}");
        // Keep draining so strace never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        FailingSync { strace, trace }
    }

    /// How many `fdatasync` calls were made to fail.
    fn injected(&self) -> usize {
        std::fs::read_to_string(self.trace.path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("fdatasync") && l.contains("INJECTED"))
            .count()
    }
}

impl Drop for FailingSync {
    fn drop(&mut self) {
        let pid = self.strace.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let _ = self.strace.wait();
    }
}

#[tokio::test]
async fn begin_whose_fdatasync_fails_is_not_acknowledged() {
    let mut tc = file_tc();
    let tm1 = tm(tc.addr()).await;
    let before = begin(&tm1, 600_000).await;
    let sync = FailingSync::attach(tc.pid().expect("TC runs"));
    let r: GlobalBeginResponse = tm1
        .request(GlobalBeginRequest {
            timeout: 600_000,
            transaction_name: "it-fp-sync".into(),
        })
        .await
        .expect("begin answered");
    // The answer waits for the sync's result: a TC that answered once the bytes were written
    // (or ignored the error) would acknowledge a begin that is not durable.
    assert!(
        !r.result.is_success(),
        "begin acknowledged although its fdatasync failed ({} injected):\n{}",
        sync.injected(),
        tc.log()
    );
    assert!(r.result.msg.contains("store"), "{:?}", r.result);
    assert!(sync.injected() >= 1, "no fdatasync was made to fail");
    drop(sync);
    tm1.shutdown();

    tc.restart();
    let tm2 = tm(tc.addr()).await;
    assert_eq!(status(&tm2, &before).await, GlobalStatus::Begin);
    let next = begin(&tm2, 60_000).await;
    assert_eq!(status(&tm2, &next).await, GlobalStatus::Begin);
}
