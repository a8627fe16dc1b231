//! Coordinator behaviour with a scripted RM gateway (helpers here, tests per area in the
//! submodules). Time is passed explicitly to the job
//! ticks (`check_timeouts`, `run_retry_queue`), never slept on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use seata_protocol::{
    BranchRegisterRequest, BranchReportRequest, BranchStatus, BranchType, GlobalBeginRequest,
    GlobalCommitRequest, GlobalLockQueryRequest, GlobalRollbackRequest, GlobalStatus,
    GlobalStatusRequest,
};

mod admin;
mod phase_two;
mod recovery;
mod requests;
mod shared;
mod spans;

use super::*;
use crate::gateway::{BranchTarget, GatewayError};
use crate::store::{ready, BranchRow, GlobalRow, StoreFuture, StoredBranch, StoredGlobal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Commit,
    Rollback,
}

type Answer = Result<BranchStatus, GatewayError>;

/// Answers per resource id from a script; when the script is empty: success, or NotConnected
/// for a resource marked disconnected.
#[derive(Debug, Default)]
struct FakeGateway {
    script: Mutex<HashMap<String, VecDeque<Answer>>>,
    disconnected: Mutex<HashSet<String>>,
    calls: Mutex<Vec<(Op, String)>>,
    broadcasts: AtomicUsize,
}

impl FakeGateway {
    fn answer(&self, resource: &str, a: Answer) {
        let mut s = self.script.lock().unwrap();
        s.entry(resource.to_owned()).or_default().push_back(a);
    }
    fn disconnect(&self, resource: &str) {
        self.disconnected
            .lock()
            .unwrap()
            .insert(resource.to_owned());
    }
    fn connect(&self, resource: &str) {
        self.disconnected.lock().unwrap().remove(resource);
    }
    fn calls(&self) -> Vec<(Op, String)> {
        self.calls.lock().unwrap().clone()
    }
    fn reply(&self, op: Op, t: BranchTarget) -> Answer {
        self.calls.lock().unwrap().push((op, t.resource_id.clone()));
        if let Some(a) = self
            .script
            .lock()
            .unwrap()
            .get_mut(&t.resource_id)
            .and_then(VecDeque::pop_front)
        {
            return a;
        }
        if self.disconnected.lock().unwrap().contains(&t.resource_id) {
            return Err(GatewayError::NotConnected {
                resource_id: t.resource_id,
                client_id: t.client_id,
            });
        }
        Ok(match op {
            Op::Commit => BranchStatus::PhaseTwoCommitted,
            Op::Rollback => BranchStatus::PhaseTwoRollbacked,
        })
    }
}

impl BranchGateway for FakeGateway {
    fn branch_commit(&self, t: BranchTarget) -> BoxFuture<'_, Answer> {
        let a = self.reply(Op::Commit, t);
        Box::pin(async move { a })
    }
    fn branch_rollback(&self, t: BranchTarget) -> BoxFuture<'_, Answer> {
        let a = self.reply(Op::Rollback, t);
        Box::pin(async move { a })
    }
    fn broadcast_undo_log_delete(&self, _save_days: i16) {
        self.broadcasts.fetch_add(1, Ordering::SeqCst);
    }
}

async fn setup_with(store: Arc<dyn SessionStore>) -> (Arc<Coordinator>, Arc<FakeGateway>) {
    let gw = Arc::new(FakeGateway::default());
    let c = Coordinator::new(
        &TcConfig::default(),
        "10.0.0.1".parse().unwrap(),
        8091,
        store,
        gw.clone(),
    )
    .await
    .unwrap();
    (c, gw)
}

async fn setup() -> (Arc<Coordinator>, Arc<FakeGateway>) {
    setup_with(Arc::new(crate::store::MemoryStore::new())).await
}

fn client() -> ClientInfo {
    ClientInfo {
        application_id: "app".into(),
        transaction_service_group: "grp".into(),
        client_id: "app:10.0.0.2:50000".into(),
    }
}

async fn begin_with(c: &Coordinator, timeout: i32) -> String {
    let r = c
        .begin(
            GlobalBeginRequest {
                timeout,
                transaction_name: "test".into(),
            },
            &client(),
        )
        .await;
    assert!(r.result.is_success(), "{:?}", r.result);
    r.xid
}

async fn begin(c: &Coordinator) -> String {
    begin_with(c, 60_000).await
}

async fn register(
    c: &Coordinator,
    xid: &str,
    ty: BranchType,
    resource: &str,
    lock_key: &str,
) -> BranchRegisterResponse {
    c.branch_register(
        BranchRegisterRequest {
            xid: xid.into(),
            branch_type: ty,
            resource_id: resource.into(),
            lock_key: lock_key.into(),
            application_data: String::new(),
        },
        &client(),
    )
    .await
}

async fn register_ok(c: &Coordinator, xid: &str, ty: BranchType, res: &str, key: &str) -> i64 {
    let r = register(c, xid, ty, res, key).await;
    assert!(r.result.is_success(), "{:?}", r.result);
    r.branch_id
}

async fn commit(c: &Coordinator, xid: &str) -> GlobalStatus {
    let r = c
        .commit(GlobalCommitRequest {
            xid: xid.into(),
            extra_data: String::new(),
        })
        .await;
    assert!(r.result.is_success(), "{:?}", r.result);
    r.global_status
}

async fn rollback(c: &Coordinator, xid: &str) -> GlobalStatus {
    let r = c
        .rollback(GlobalRollbackRequest {
            xid: xid.into(),
            extra_data: String::new(),
        })
        .await;
    assert!(r.result.is_success(), "{:?}", r.result);
    r.global_status
}

async fn status(c: &Coordinator, xid: &str) -> GlobalStatus {
    c.status(GlobalStatusRequest {
        xid: xid.into(),
        extra_data: String::new(),
    })
    .await
    .global_status
}

/// Lockable for a transaction that holds nothing (an `@GlobalLock` query).
async fn free(c: &Coordinator, resource: &str, key: &str) -> bool {
    let r = c
        .lock_query(GlobalLockQueryRequest {
            xid: String::new(),
            branch_type: BranchType::At,
            resource_id: resource.into(),
            lock_key: key.into(),
            application_data: String::new(),
        })
        .await;
    assert!(r.result.is_success());
    r.lockable
}

fn rb(resource: &str) -> (Op, String) {
    (Op::Rollback, resource.to_owned())
}

fn cm(resource: &str) -> (Op, String) {
    (Op::Commit, resource.to_owned())
}

#[test]
fn entry_point_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let c: Option<Arc<Coordinator>> = None;
    if let Some(c) = c {
        let ci = client();
        send(&c.begin(GlobalBeginRequest::default(), &ci));
        send(&c.commit(GlobalCommitRequest::default()));
        send(&c.rollback(GlobalRollbackRequest::default()));
        send(&c.branch_register(BranchRegisterRequest::default(), &ci));
        send(&c.branch_report(BranchReportRequest::default()));
        send(&c.lock_query(GlobalLockQueryRequest::default()));
        send(&c.run_retry_queue(RetryQueue::RetryRollbacking, 0));
        send(&c.check_timeouts(0));
    }
}
