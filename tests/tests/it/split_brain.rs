//! Split brain on the db store (issue 18): a TC frozen (SIGSTOP) for longer than
//! `db-lease-ms` while it retries a rollback, another TC taking the rollback over, and the
//! first one resuming (SIGCONT) while the second still drives it. What must hold: the frozen
//! TC's row locks keep refusing the other TC's registers (until the rollback really ends),
//! the survivor takes over, the resumed TC sends that branch nothing more (one driver per
//! branch), and the decision never flips. Every wait is for an event, bounded by [`WAIT`].

use seata_it::clients::{
    begin, commit, rollback, status, tm, wait_status, Answer, Phase, PhaseTwoCall, TestRm, WAIT,
};
use seata_it::db_store::TestDb;
use seata_it::tc::TcProcess;
use seata_protocol::{BranchRegisterResponse, GlobalStatus};

const RES: &str = "jdbc:mysql://127.0.0.1:3306/split_brain";
/// Lease of both TCs, ms: short, so the takeover comes soon after the freeze.
const LEASE_MS: u64 = 1_500;

fn signal(tc: &TcProcess, sig: &str) {
    let pid = tc.pid().expect("TC runs").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("runs kill")
        .success();
    assert!(ok, "kill {sig} {pid} failed");
}

/// Calls of `branch` among `calls`.
fn of(calls: &[PhaseTwoCall], branch: i64) -> Vec<Phase> {
    calls
        .iter()
        .filter(|c| c.branch_id == branch)
        .map(|c| c.phase)
        .collect()
}

fn conflict(r: &BranchRegisterResponse) -> bool {
    !r.result.is_success()
}

#[tokio::test]
async fn frozen_tc_resuming_after_a_takeover_does_not_drive_the_rollback_again() {
    let db = TestDb::create().await;
    let (a, b) = (db.start_tc(LEASE_MS), db.start_tc(LEASE_MS));
    let tm_a = tm(a.addr()).await;
    let tm_b = tm(b.addr()).await;
    let rm_a = TestRm::connect(a.addr(), "sb-rm", &[RES]).await;
    let rm_b = TestRm::connect(b.addr(), "sb-rm", &[RES]).await;
    rm_a.answer(Answer::Retryable);
    rm_b.answer(Answer::Retryable);

    // A decides a rollback its RM keeps failing: A drives the retries under its lease.
    let xid = begin(&tm_a, 60_000).await;
    let br = rm_a.register(&xid, RES, "sb:1").await;
    assert!(br.result.is_success(), "{:?}", br.result);
    let branch = br.branch_id;
    assert_eq!(
        rollback(&tm_a, &xid).await.global_status,
        GlobalStatus::RollbackRetrying
    );
    // Freeze A right after one of its retries (between two passes).
    rm_a.wait_for(WAIT, |c| of(c, branch).len() >= 2).await;
    signal(&a, "-STOP");
    let before_freeze = of(&rm_a.calls(), branch).len();

    // A's row lock holds for B's registers while A is frozen.
    let other = begin(&tm_b, 60_000).await;
    assert!(conflict(&rm_b.register(&other, RES, "sb:1").await));
    assert_eq!(status(&tm_b, &xid).await, GlobalStatus::RollbackRetrying);

    // B takes the rollback over once A's lease ran out; the rows stay locked while the
    // rollback is not done.
    rm_b.wait_for(WAIT, |c| !of(c, branch).is_empty()).await;
    assert!(conflict(&rm_b.register(&other, RES, "sb:1").await));

    // A resumes while B still drives. A new RM of the resource on A makes A retry its copy
    // of the transaction at once (a returning RM resets the back-off); a second transaction
    // rolled back on A, retried by A's job after that, shows that A's retry passes ran.
    signal(&a, "-CONT");
    let rm_a2 = TestRm::connect(a.addr(), "sb-rm-2", &[RES]).await;
    rm_a2.answer(Answer::Retryable);
    let probe = begin(&tm_a, 60_000).await;
    let pb = rm_a2.register(&probe, RES, "sb:probe").await;
    assert!(pb.result.is_success(), "{:?}", pb.result);
    assert_eq!(
        rollback(&tm_a, &probe).await.global_status,
        GlobalStatus::RollbackRetrying
    );
    let probe_calls = |c: &[PhaseTwoCall]| c.iter().filter(|c| c.xid == probe).count();
    let until = tokio::time::Instant::now() + WAIT;
    while probe_calls(&rm_a.calls()) + probe_calls(&rm_a2.calls()) < 2 {
        assert!(
            tokio::time::Instant::now() < until,
            "A never retried the probe transaction:\n{}",
            a.log()
        );
        // Polling the recorded calls of two RMs; the outcome does not depend on this interval.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = of(&rm_a.calls(), branch).len() - before_freeze + of(&rm_a2.calls(), branch).len();
    assert_eq!(
        after,
        0,
        "A drove the branch again after B took it over:\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );

    // The decision never flips: a late commit through A is not a commit, B finishes the
    // rollback, and only then are the rows free.
    let late = commit(&tm_a, &xid).await.global_status;
    assert!(
        !matches!(
            late,
            GlobalStatus::Committed | GlobalStatus::Committing | GlobalStatus::AsyncCommitting
        ),
        "late commit through A answered {late}"
    );
    rm_b.answer(Answer::Done);
    wait_status(&tm_b, &xid, GlobalStatus::Finished).await;
    wait_status(&tm_a, &xid, GlobalStatus::Finished).await;
    let every: Vec<PhaseTwoCall> = [rm_a.calls(), rm_a2.calls(), rm_b.calls()].concat();
    let phases = of(&every, branch);
    assert!(phases.iter().all(|p| *p == Phase::Rollback), "{phases:?}");
    let got = rm_b.register(&other, RES, "sb:1").await;
    assert!(got.result.is_success(), "{:?}", got.result);

    // Clean up the probe and the other transaction.
    rm_a2.answer(Answer::Done);
    rm_a.answer(Answer::Done);
    wait_status(&tm_a, &probe, GlobalStatus::Finished).await;
    assert!(rollback(&tm_b, &other).await.result.is_success());
    assert_eq!(db.count("lock_table").await, 0);
}
