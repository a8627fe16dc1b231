//! File store: `kill -9` the real `seata-tc` at several points of a transaction's life and
//! restart it on the same data directory. Every acknowledged begin, branch and decision must
//! be there afterwards, and the transaction must reach the final state it would have reached
//! without the crash. Row locks held before the crash must still refuse other transactions.

use std::process::{Command, Stdio};

use seata_it::clients::{
    begin, commit, rollback, status, tm, wait_status, Answer, Phase, PhaseTwoCall, TestRm, WAIT,
};
use seata_it::tc::{tc_binary, TcProcess};
use seata_protocol::rpc::TcClient;
use seata_protocol::{BranchRegisterResponse, BranchType, GlobalStatus, TransactionExceptionCode};

const DB: &str = "jdbc:mysql://127.0.0.1:3306/durability";
const TCC: &str = "tcc-durability";

fn file_tc() -> TcProcess {
    TcProcess::start_with(&["--store", "file"])
}

/// An RM connection that serves no resource, so the TC never sends it phase two: it only
/// probes row locks by registering branches.
async fn probe(addr: &str) -> TestRm {
    TestRm::connect(addr, "it-probe", &[]).await
}

fn conflict(r: &BranchRegisterResponse) -> bool {
    !r.result.is_success()
        && r.result.transaction_exception_code == TransactionExceptionCode::LockKeyConflict
}

/// Kills the TC, drops the clients of the old process (so they do not reconnect and take
/// part), and restarts it on the same address and data directory.
fn crash_and_restart(tc: &mut TcProcess, clients: &[&TcClient]) {
    tc.kill();
    for c in clients {
        c.shutdown();
    }
    tc.restart();
}

#[tokio::test]
async fn begin_acknowledged_before_a_crash_is_still_there_after_it() {
    // No `--store`: the file store is the default.
    let mut tc = TcProcess::start();
    let tm1 = tm(tc.addr()).await;
    let xid = begin(&tm1, 60_000).await;
    crash_and_restart(&mut tc, &[&tm1]);

    let tm2 = tm(tc.addr()).await;
    assert_eq!(status(&tm2, &xid).await, GlobalStatus::Begin);
    // Still a live transaction: it can be committed, and a new one gets a fresh id.
    assert_eq!(
        commit(&tm2, &xid).await.global_status,
        GlobalStatus::Committed
    );
    let next = begin(&tm2, 60_000).await;
    assert_ne!(next, xid);
    assert_eq!(status(&tm2, &next).await, GlobalStatus::Begin);
}

#[tokio::test]
async fn locks_held_before_a_crash_still_block_conflicting_registers_after_it() {
    let mut tc = file_tc();
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let holder = begin(&tm1, 60_000).await;
    let b = rm1.register(&holder, DB, "stock:1,2").await;
    assert!(b.result.is_success(), "{:?}", b.result);
    crash_and_restart(&mut tc, &[&tm1, &rm1.client]);

    let tm2 = tm(tc.addr()).await;
    let probe = probe(tc.addr()).await;
    assert_eq!(status(&tm2, &holder).await, GlobalStatus::Begin);
    let other = begin(&tm2, 60_000).await;
    let refused = probe.register(&other, DB, "stock:2").await;
    assert!(conflict(&refused), "{:?}", refused.result);
    // Rows the holder never locked are free.
    assert!(probe
        .register(&other, DB, "stock:3")
        .await
        .result
        .is_success());

    // Rolling the holder back undoes its branch (through an RM serving the resource) and
    // frees the rows.
    let rm2 = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    assert_eq!(
        rollback(&tm2, &holder).await.global_status,
        GlobalStatus::Rollbacked
    );
    let calls = rm2.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].phase, calls[0].branch_id),
        (Phase::Rollback, b.branch_id)
    );
    let retried = probe.register(&other, DB, "stock:2").await;
    assert!(retried.result.is_success(), "{:?}", retried.result);
}

#[tokio::test]
async fn rollback_interrupted_mid_retry_finishes_after_a_crash() {
    let mut tc = file_tc();
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let xid = begin(&tm1, 60_000).await;
    let b = rm1.register(&xid, DB, "order:9").await;
    assert!(b.result.is_success());
    rm1.answer(Answer::Retryable);
    let r = rollback(&tm1, &xid).await;
    assert_eq!(r.global_status, GlobalStatus::RollbackRetrying);
    crash_and_restart(&mut tc, &[&tm1, &rm1.client]);

    let tm2 = tm(tc.addr()).await;
    let probe = probe(tc.addr()).await;
    assert_eq!(status(&tm2, &xid).await, GlobalStatus::RollbackRetrying);
    // The rows were not restored yet, so they stay locked across the crash.
    let other = begin(&tm2, 60_000).await;
    assert!(conflict(&probe.register(&other, DB, "order:9").await));

    let rm2 = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    rm2.wait_for(WAIT, |c| {
        c.iter()
            .any(|c| c.phase == Phase::Rollback && c.branch_id == b.branch_id)
    })
    .await;
    wait_status(&tm2, &xid, GlobalStatus::Finished).await;
    assert!(probe
        .register(&other, DB, "order:9")
        .await
        .result
        .is_success());
}

#[tokio::test]
async fn synchronous_commit_interrupted_mid_retry_finishes_after_a_crash() {
    let mut tc = file_tc();
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "it-rm", &[TCC]).await;
    let xid = begin(&tm1, 60_000).await;
    let b = rm1.register_typed(&xid, BranchType::Tcc, TCC, "").await;
    assert!(b.result.is_success());
    rm1.answer(Answer::Retryable);
    let r = commit(&tm1, &xid).await;
    assert_eq!(r.global_status, GlobalStatus::CommitRetrying);
    crash_and_restart(&mut tc, &[&tm1, &rm1.client]);

    let tm2 = tm(tc.addr()).await;
    assert_eq!(status(&tm2, &xid).await, GlobalStatus::CommitRetrying);
    // The decision was commit: a late rollback from the TM cannot change it.
    assert_eq!(
        rollback(&tm2, &xid).await.global_status,
        GlobalStatus::CommitRetrying
    );
    let rm2 = TestRm::connect(tc.addr(), "it-rm", &[TCC]).await;
    let calls = rm2
        .wait_for(WAIT, |c| c.iter().any(|c| c.branch_id == b.branch_id))
        .await;
    assert!(calls.iter().all(|c| c.phase == Phase::Commit), "{calls:?}");
    wait_status(&tm2, &xid, GlobalStatus::Finished).await;
}

#[tokio::test]
async fn async_commit_interrupted_mid_retry_finishes_after_a_crash() {
    let mut tc = file_tc();
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let xid = begin(&tm1, 60_000).await;
    let b1 = rm1.register(&xid, DB, "account:1").await;
    let b2 = rm1.register(&xid, DB, "account:2").await;
    assert!(b1.result.is_success() && b2.result.is_success());
    rm1.answer(Answer::Retryable);
    assert_eq!(
        commit(&tm1, &xid).await.global_status,
        GlobalStatus::Committed
    );
    // The async job has tried (and failed) at least once: the TC is mid-retry.
    rm1.wait_for(WAIT, |c| c.iter().any(|c| c.phase == Phase::Commit))
        .await;
    crash_and_restart(&mut tc, &[&tm1, &rm1.client]);

    let tm2 = tm(tc.addr()).await;
    let probe = probe(tc.addr()).await;
    assert_eq!(status(&tm2, &xid).await, GlobalStatus::AsyncCommitting);
    // AT commit released the rows when it was decided; the restart does not re-take them.
    let other = begin(&tm2, 60_000).await;
    assert!(probe
        .register(&other, DB, "account:1")
        .await
        .result
        .is_success());

    let rm2 = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let calls = rm2
        .wait_for(WAIT, |c| {
            [b1.branch_id, b2.branch_id]
                .iter()
                .all(|id| c.iter().any(|c| c.branch_id == *id))
        })
        .await;
    assert!(calls.iter().all(|c| c.phase == Phase::Commit), "{calls:?}");
    wait_status(&tm2, &xid, GlobalStatus::Finished).await;
}

#[tokio::test]
async fn mixed_transactions_each_reach_their_final_state_across_two_crashes() {
    let mut tc = file_tc();
    let tm1 = tm(tc.addr()).await;
    let rm1 = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let mut open = Vec::new();
    let mut rolled_back = Vec::new();
    let mut committed = Vec::new();
    for i in 0..24 {
        let xid = begin(&tm1, 60_000).await;
        let key = format!("mix:{i}");
        assert!(rm1.register(&xid, DB, &key).await.result.is_success());
        match i % 3 {
            0 => open.push((xid, key)),
            1 => {
                let r = rollback(&tm1, &xid).await;
                assert_eq!(r.global_status, GlobalStatus::Rollbacked);
                rolled_back.push((xid, key));
            }
            _ => {
                let r = commit(&tm1, &xid).await;
                assert_eq!(r.global_status, GlobalStatus::Committed);
                committed.push((xid, key));
            }
        }
    }
    crash_and_restart(&mut tc, &[&tm1, &rm1.client]);
    // A second crash right after recovery: what recovery itself wrote must hold too.
    let tm2 = tm(tc.addr()).await;
    crash_and_restart(&mut tc, &[&tm2]);

    let tm3 = tm(tc.addr()).await;
    let rm3 = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let probe = probe(tc.addr()).await;
    let other = begin(&tm3, 60_000).await;
    for (xid, key) in &open {
        assert_eq!(status(&tm3, xid).await, GlobalStatus::Begin, "{xid}");
        assert!(conflict(&probe.register(&other, DB, key).await), "{key}");
    }
    // The TC says `Finished` of any XID it does not know, so the status of what finished
    // before the crash proves nothing. The RM's calls do: every committed branch gets its
    // commit (before the crash, or after it from the recovered record of an AT commit that
    // was still asynchronous), every rolled back one got its rollback, and no branch ever
    // gets the other phase, or any phase-two call while its transaction is open.
    let before = rm1.calls();
    let got = |calls: &[PhaseTwoCall], xid: &str, phase: Phase| {
        before
            .iter()
            .chain(calls)
            .any(|c| c.xid == xid && c.phase == phase)
    };
    let calls = rm3
        .wait_for(WAIT, |c| {
            committed.iter().all(|(x, _)| got(c, x, Phase::Commit))
                && rolled_back.iter().all(|(x, _)| got(c, x, Phase::Rollback))
        })
        .await;
    for c in before.iter().chain(&calls) {
        let want = if committed.iter().any(|(x, _)| *x == c.xid) {
            Phase::Commit
        } else {
            assert!(
                rolled_back.iter().any(|(x, _)| *x == c.xid),
                "phase two for an open transaction: {c:?}"
            );
            Phase::Rollback
        };
        assert_eq!(c.phase, want, "{c:?}");
    }
    // Their rows are free again.
    for (xid, key) in committed.iter().chain(&rolled_back) {
        let r = probe.register(&other, DB, key).await;
        assert!(r.result.is_success(), "{xid} {key}: {:?}", r.result);
        wait_status(&tm3, xid, GlobalStatus::Finished).await;
    }
    for (xid, _) in &open {
        assert_eq!(
            commit(&tm3, xid).await.global_status,
            GlobalStatus::Committed
        );
    }
    for (xid, _) in &open {
        wait_status(&tm3, xid, GlobalStatus::Finished).await;
    }
}

#[test]
fn a_second_tc_on_the_same_data_dir_is_refused() {
    let tc = file_tc();
    let out = Command::new(tc_binary())
        .args(["--listen", "127.0.0.1:0", "--store", "file", "--data-dir"])
        .arg(tc.data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("runs seata-tc");
    assert!(!out.status.success(), "second TC must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another seata-tc"), "{stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
}
