//! The TC crashed at its precise crash points (`tc/src/failpoints.rs`, compiled into
//! `seata-tc-it` by this package's `failpoints` feature of `seata-tc`): each test starts the
//! real process with `FAILPOINTS` naming one point, drives a transaction into it, sees the
//! process die by SIGABRT, restarts a TC on the same data directory and checks what the
//! protocol promises from there: the phase-two calls the RM gets (which branch, commit or
//! rollback, and that nothing done before the crash is repeated when its end was recorded), the
//! status the TC reports, and that the transaction ends (`Finished` after the RM's calls, since
//! the TC answers `Finished` for unknown XIDs too).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use seata_it::clients::{
    begin, commit, lockable, status, tm, wait_status, Phase, PhaseTwoCall, TestRm, WAIT,
};
use seata_it::tc::{tc_binary, TcProcess};
use seata_protocol::rpc::{RpcError, TcClient};
use seata_protocol::{
    BranchType, GlobalCommitRequest, GlobalCommitResponse, GlobalRollbackRequest,
    GlobalRollbackResponse, GlobalStatus,
};

const APP: &str = "it-crash-points";
const TCC_A: &str = "tcc-crash-points-a";
const TCC_B: &str = "tcc-crash-points-b";
const DB: &str = "jdbc:mysql://127.0.0.1:3306/crash_points";
const SIGABRT: i32 = 6;

/// A TC started with `FAILPOINTS`, expected to die at one of them.
struct CrashingTc {
    child: Child,
    addr: Option<String>,
    log: Arc<Mutex<String>>,
}

impl CrashingTc {
    /// Starts the TC on the file store in `dir` with `failpoints`; waits for its address
    /// (`None` if it died before listening, e.g. at a point in start-up's compaction).
    fn start(dir: &Path, failpoints: &str) -> Self {
        let mut child = Command::new(tc_binary())
            .env("FAILPOINTS", failpoints)
            .env("RUST_LOG", "info")
            .args(["--listen", "127.0.0.1:0", "--http-listen", "off"])
            .args(["--grpc-listen", "off", "--store", "file", "--data-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start seata-tc-it (cargo builds it with the tests)");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("listening on ") {
                    let _ = tx.send(a.trim().to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).ok();
        CrashingTc { child, addr, log }
    }

    fn addr(&self) -> &str {
        self.addr.as_deref().expect("the TC printed its address")
    }

    /// Waits until the process died by SIGABRT (the failpoint's crash), at most [`WAIT`].
    fn wait_crash(&mut self) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for seata-tc") {
                assert_eq!(
                    status.signal(),
                    Some(SIGABRT),
                    "the TC ended with {status} instead of crashing at its failpoint; log:\n{}",
                    self.log.lock().unwrap()
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the TC did not crash at its failpoint; log:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CrashingTc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The calls of `phase` for `branch_id`.
fn count(calls: &[PhaseTwoCall], phase: Phase, branch_id: i64) -> usize {
    calls
        .iter()
        .filter(|c| c.phase == phase && c.branch_id == branch_id)
        .count()
}

/// Sends a commit (`true`) or rollback and returns the TC's answer or the RPC error.
async fn decide(tm: &TcClient, xid: &str, commit: bool) -> Result<GlobalStatus, RpcError> {
    let x = xid.to_owned();
    if commit {
        tm.request::<GlobalCommitResponse>(GlobalCommitRequest {
            xid: x,
            extra_data: String::new(),
        })
        .await
        .map(|r| r.global_status)
    } else {
        tm.request::<GlobalRollbackResponse>(GlobalRollbackRequest {
            xid: x,
            extra_data: String::new(),
        })
        .await
        .map(|r| r.global_status)
    }
}

/// The TC died before answering: the TM must get "outcome unknown", never an answer.
fn assert_unknown(outcome: &Result<GlobalStatus, RpcError>) {
    match outcome {
        Err(e) => assert!(e.is_undetermined(), "{e}"),
        Ok(s) => panic!("the TC crashed before answering, yet the TM got {s}"),
    }
}

/// A restarted TC (no failpoints) on `dir`.
fn restart(dir: tempfile::TempDir) -> TcProcess {
    TcProcess::start_in(dir, &["--store", "file", "--grpc-listen", "off"])
}

/// Begins a transaction with a TCC branch on each of `resources`; returns the XID and the
/// branch ids in registration order.
async fn tcc_transaction(tm: &TcClient, rm: &TestRm, resources: &[&str]) -> (String, Vec<i64>) {
    let xid = begin(tm, 60_000).await;
    let mut ids = Vec::new();
    for r in resources {
        let b = rm.register_typed(&xid, BranchType::Tcc, r, "").await;
        assert!(b.result.is_success(), "{:?}", b.result);
        ids.push(b.branch_id);
    }
    (xid, ids)
}

/// A TCC transaction whose commit decision crashes the TC at `failpoints`, before the TM is
/// answered and before any phase two: after a restart on the same data the decision stands
/// (a late rollback cannot flip it) and the branch is committed, never rolled back.
async fn crash_on_the_commit_decision_then_commit_after_restart(failpoints: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut tc = CrashingTc::start(dir.path(), failpoints);
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), APP, &[TCC_A]).await;
    let (xid, b) = tcc_transaction(&tm1, &rm1, &[TCC_A]).await;
    assert_unknown(&decide(&tm1, &xid, true).await);
    tc.wait_crash();
    assert!(
        rm1.calls().is_empty(),
        "no phase two before the crash: {:?}",
        rm1.calls()
    );
    tm1.shutdown();
    rm1.client.shutdown();

    let tc2 = restart(dir);
    let tm2 = tm(tc2.addr()).await;
    let s = status(&tm2, &xid).await;
    assert!(
        matches!(s, GlobalStatus::Committing | GlobalStatus::CommitRetrying),
        "{s}"
    );
    let rm2 = TestRm::connect(tc2.addr(), APP, &[TCC_A]).await;
    let calls = rm2
        .wait_for(WAIT, |c| count(c, Phase::Commit, b[0]) >= 1)
        .await;
    assert_eq!(count(&calls, Phase::Rollback, b[0]), 0, "{calls:?}");
    wait_status(&tm2, &xid, GlobalStatus::Finished).await;
}

#[tokio::test]
async fn crash_after_a_durable_decision_before_its_answer_commits_after_restart() {
    crash_on_the_commit_decision_then_commit_after_restart("tc::decision::after_append=panic")
        .await;
}

#[tokio::test]
async fn crash_after_commit_is_decided_before_any_branch_commit_sends_it_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut tc = CrashingTc::start(dir.path(), "tc::commit::before_branch_commit=panic");
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), APP, &[DB]).await;
    let xid = begin(&tm1, 60_000).await;
    let b = rm1.register(&xid, DB, "account:11").await;
    assert!(b.result.is_success(), "{:?}", b.result);
    // AT commits are answered once decided (the async job sends the branch commits), so the
    // answer usually beats the crash; if not, it is "unknown", never something else.
    match decide(&tm1, &xid, true).await {
        Ok(s) => assert!(
            matches!(s, GlobalStatus::Committed | GlobalStatus::AsyncCommitting),
            "{s}"
        ),
        Err(e) => assert!(e.is_undetermined(), "{e}"),
    }
    tc.wait_crash();
    assert!(
        rm1.calls().is_empty(),
        "no BranchCommit before the crash: {:?}",
        rm1.calls()
    );
    tm1.shutdown();
    rm1.client.shutdown();

    let tc2 = restart(dir);
    let tm2 = tm(tc2.addr()).await;
    assert_eq!(status(&tm2, &xid).await, GlobalStatus::AsyncCommitting);
    let rm2 = TestRm::connect(tc2.addr(), APP, &[DB]).await;
    // Committed rows are final: recovery does not lock them again.
    assert!(lockable(&rm2, DB, "account:11").await);
    let calls = rm2
        .wait_for(WAIT, |c| count(c, Phase::Commit, b.branch_id) >= 1)
        .await;
    assert_eq!(count(&calls, Phase::Rollback, b.branch_id), 0, "{calls:?}");
    wait_status(&tm2, &xid, GlobalStatus::Finished).await;
}

#[tokio::test]
async fn crash_between_two_branches_of_a_rollback_finishes_only_the_rest_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut tc = CrashingTc::start(dir.path(), "tc::phase_two::between_branches=panic");
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), APP, &[TCC_A, TCC_B]).await;
    let (xid, b) = tcc_transaction(&tm1, &rm1, &[TCC_A, TCC_B]).await;
    assert_unknown(&decide(&tm1, &xid, false).await);
    tc.wait_crash();
    // Reverse registration order: the second branch was rolled back (and its end recorded),
    // the first one not yet.
    let before = rm1.calls();
    assert_eq!(count(&before, Phase::Rollback, b[1]), 1, "{before:?}");
    assert_eq!(count(&before, Phase::Rollback, b[0]), 0, "{before:?}");
    tm1.shutdown();
    rm1.client.shutdown();

    let tc2 = restart(dir);
    let tm2 = tm(tc2.addr()).await;
    let s = status(&tm2, &xid).await;
    assert!(
        matches!(
            s,
            GlobalStatus::Rollbacking | GlobalStatus::RollbackRetrying
        ),
        "{s}"
    );
    let rm2 = TestRm::connect(tc2.addr(), APP, &[TCC_A, TCC_B]).await;
    rm2.wait_for(WAIT, |c| count(c, Phase::Rollback, b[0]) >= 1)
        .await;
    wait_status(&tm2, &xid, GlobalStatus::Finished).await;
    let calls = rm2.calls();
    assert_eq!(
        count(&calls, Phase::Rollback, b[1]),
        0,
        "done before the crash: {calls:?}"
    );
    assert!(
        calls.iter().all(|c| c.phase == Phase::Rollback),
        "{calls:?}"
    );
}

#[tokio::test]
async fn crash_in_the_middle_of_a_group_commit_keeps_what_was_written_and_commits_it() {
    // Batches: the begin, the branch, then the commit decision, which crashes after its write
    // and before its fdatasync. The bytes are in the page cache and the decision is read back
    // (a machine crash could lose it; then the transaction would still be Begin and a TM retry
    // or the timeout would end it, consistently).
    crash_on_the_commit_decision_then_commit_after_restart("tc::file::group_commit=2*off->panic")
        .await;
}

#[tokio::test]
async fn crash_during_compaction_loses_nothing_and_the_next_start_compacts() {
    let dir = tempfile::tempdir().unwrap();
    // First run: an open TCC transaction and an open AT one holding a row lock, then kill -9.
    let mut first = CrashingTc::start(dir.path(), "");
    let tm1 = tm(first.addr()).await;
    let rm1 = TestRm::connect(first.addr(), APP, &[TCC_A, DB]).await;
    let (xid, b) = tcc_transaction(&tm1, &rm1, &[TCC_A]).await;
    let at_xid = begin(&tm1, 60_000).await;
    let at = rm1.register(&at_xid, DB, "account:7").await;
    assert!(at.result.is_success(), "{:?}", at.result);
    tm1.shutdown();
    rm1.client.shutdown();
    let _ = first.child.kill();
    let _ = first.child.wait();

    // Second run: opening rolls to a new segment and compacts the old one; it crashes with
    // the snapshot half written.
    let mut second = CrashingTc::start(dir.path(), "tc::file::snapshot=panic");
    second.wait_crash();

    // Third run: everything is still there, and this time compaction completes.
    let tc3 = restart(dir);
    let tm3 = tm(tc3.addr()).await;
    assert_eq!(status(&tm3, &xid).await, GlobalStatus::Begin);
    assert_eq!(status(&tm3, &at_xid).await, GlobalStatus::Begin);
    let rm3 = TestRm::connect(tc3.addr(), APP, &[TCC_A, DB]).await;
    assert!(
        !lockable(&rm3, DB, "account:7").await,
        "the open AT branch's lock is back"
    );
    let r = commit(&tm3, &xid).await;
    assert!(r.result.is_success(), "{:?}", r.result);
    let calls = rm3
        .wait_for(WAIT, |c| count(c, Phase::Commit, b[0]) >= 1)
        .await;
    assert_eq!(count(&calls, Phase::Rollback, b[0]), 0, "{calls:?}");
    wait_status(&tm3, &xid, GlobalStatus::Finished).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !tc3.log().contains("file store compacted") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no compaction:\n{}",
            tc3.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
