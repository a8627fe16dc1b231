//! Phase two spread over RM instances (issue 14): three RMs of one application hold the same
//! resource. A branch goes to the instance that registered it while that one is connected;
//! branches whose own instance is gone are spread over the others instead of all landing on
//! the first one found (Seata's behaviour); XA stays pinned to its instance while connected.

use seata_it::clients::{self, Phase, PhaseTwoCall, TestRm};
use seata_it::tc::TcProcess;
use seata_protocol::{BranchType, GlobalStatus};

const RESOURCE: &str = "spread-resource";
const APP: &str = "it-spread";

/// Begins a transaction with one branch of `branch_type` registered by `by`; returns the XID.
async fn branch(
    tm: &seata_protocol::rpc::TcClient,
    by: &TestRm,
    branch_type: BranchType,
) -> String {
    let xid = clients::begin(tm, 60_000).await;
    let r = by.register_typed(&xid, branch_type, RESOURCE, "").await;
    assert!(r.result.is_success(), "{:?}", r.result);
    xid
}

async fn roll_back(tm: &seata_protocol::rpc::TcClient, xid: &str) {
    clients::rollback(tm, xid).await;
    clients::wait_status(tm, xid, GlobalStatus::Finished).await;
}

fn rollbacks(calls: &[PhaseTwoCall]) -> usize {
    calls.iter().filter(|c| c.phase == Phase::Rollback).count()
}

async fn three_rms(tc: &TcProcess) -> [TestRm; 3] {
    [
        TestRm::connect(tc.addr(), APP, &[RESOURCE]).await,
        TestRm::connect(tc.addr(), APP, &[RESOURCE]).await,
        TestRm::connect(tc.addr(), APP, &[RESOURCE]).await,
    ]
}

#[tokio::test]
async fn orphaned_branches_are_spread_over_the_holders() {
    let tc = TcProcess::start();
    let tm = clients::tm(tc.addr()).await;
    let rms = three_rms(&tc).await;
    // The registering instance holds another resource only: for RESOURCE's phase two its own
    // connection is not a candidate, as when the instance that registered has gone.
    let registrar = TestRm::connect(tc.addr(), APP, &["spread-other"]).await;
    for branch_type in [BranchType::Tcc, BranchType::At, BranchType::Xa] {
        for _ in 0..3 {
            let xid = branch(&tm, &registrar, branch_type).await;
            roll_back(&tm, &xid).await;
        }
    }
    let counts: Vec<usize> = rms.iter().map(|rm| rollbacks(&rm.calls())).collect();
    assert_eq!(counts.iter().sum::<usize>(), 9, "{counts:?}");
    assert!(counts.iter().all(|&n| n >= 1), "not spread: {counts:?}");
    assert!(registrar.calls().is_empty());
}

#[tokio::test]
async fn own_instance_is_preferred_and_xa_stays_pinned() {
    let tc = TcProcess::start();
    let tm = clients::tm(tc.addr()).await;
    let [a, b, c] = three_rms(&tc).await;
    for branch_type in [BranchType::Tcc, BranchType::At, BranchType::Xa] {
        for _ in 0..2 {
            let xid = branch(&tm, &a, branch_type).await;
            roll_back(&tm, &xid).await;
        }
    }
    assert_eq!(rollbacks(&a.calls()), 6);
    assert!(b.calls().is_empty() && c.calls().is_empty());
    // XA branches of `a` after `a` is gone: any instance may finish them by XID.
    let xids = [
        branch(&tm, &a, BranchType::Xa).await,
        branch(&tm, &a, BranchType::Xa).await,
        branch(&tm, &a, BranchType::Xa).await,
        branch(&tm, &a, BranchType::Xa).await,
    ];
    a.client.shutdown();
    for xid in &xids {
        clients::rollback(&tm, xid).await;
    }
    for xid in &xids {
        clients::wait_status(&tm, xid, GlobalStatus::Finished).await;
    }
    let (nb, nc) = (rollbacks(&b.calls()), rollbacks(&c.calls()));
    assert_eq!(nb + nc, 4);
    assert!(nb >= 1 && nc >= 1, "not spread: {nb} + {nc}");
    assert_eq!(rollbacks(&a.calls()), 6);
}
