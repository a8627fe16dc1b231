//! Group-commit behaviour against a real MariaDB (`SEATA_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306`): units queued together share one DB transaction, and each
//! still gets its own answer. Each test uses a database of its own and drops it. Without a
//! server they fail (a test that passes without running proves nothing): start one with
//! `scripts/ensure-mariadb.sh`, or point `SEATA_TEST_MYSQL_URL` at one.

use futures::future::join_all;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use seata_protocol::{BranchStatus, BranchType, GlobalStatus};

use super::MysqlStore;
use crate::lock::LockError;
use crate::store::{BranchAdded, BranchRow, GlobalRow, SessionStore, Transition};

fn server_url() -> String {
    std::env::var("SEATA_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A fresh database and a store on it; fails the test when no server answers.
async fn store(name: &str) -> Option<(MysqlStore, Conn, String)> {
    let mut admin = match Conn::from_url(server_url()).await {
        Ok(c) => c,
        Err(e) => panic!(
            "no MariaDB at {}: {e}; start one (scripts/ensure-mariadb.sh) or set SEATA_TEST_MYSQL_URL",
            server_url()
        ),
    };
    let db = format!("seata_rs_store_{name}_{}", std::process::id());
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
    admin
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let store = MysqlStore::open(&format!("{}/{db}", server_url()), true, 10_000)
        .await
        .unwrap();
    Some((store, admin, db))
}

fn global(xid: &str, tid: i64) -> GlobalRow<'_> {
    GlobalRow {
        transaction_id: tid,
        xid,
        status: GlobalStatus::Begin,
        application_id: "app",
        transaction_service_group: "group",
        transaction_name: "test",
        timeout_ms: 60_000,
        begin_time_ms: 0,
    }
}

fn branch<'a>(xid: &'a str, tid: i64, branch_id: i64, lock_key: &'a str) -> BranchRow<'a> {
    BranchRow {
        transaction_id: tid,
        xid,
        branch_id,
        branch_type: BranchType::At,
        status: BranchStatus::Registered,
        resource_id: "jdbc:mysql://db/x",
        lock_key,
        client_id: "app:127.0.0.1:1",
        application_data: "",
    }
}

async fn register(store: &MysqlStore, b: BranchRow<'_>) -> BranchAdded {
    store.register_branch(b).unwrap().await.unwrap()
}

#[tokio::test]
async fn units_queued_together_get_their_own_answers() {
    let Some((store, mut admin, db)) = store("answers").await else {
        return;
    };
    let (x1, x2, x3) = ("10.0.0.1:8091:1", "10.0.0.1:8091:2", "10.0.0.1:8091:3");
    for r in join_all(
        [x1, x2, x3]
            .into_iter()
            .zip(1..)
            .map(|(x, t)| store.add_global(global(x, t))),
    )
    .await
    {
        r.unwrap();
    }
    // Two registers at once want row 1: one wins, and nothing of the loser is kept (not even
    // x2's free row 9 when x2 loses). The winner then re-enters its own row.
    let added = join_all([
        register(&store, branch(x1, 1, 11, "t:1")),
        register(&store, branch(x2, 2, 21, "t:1;t:9")),
    ])
    .await;
    let winners = added
        .iter()
        .filter(|a| matches!(a, BranchAdded::Added))
        .count();
    assert_eq!(winners, 1, "{added:?}");
    assert!(added
        .iter()
        .any(|a| matches!(a, BranchAdded::Lock(LockError::Conflict { .. }))));
    let (winner, wx, wt) = if matches!(added[0], BranchAdded::Added) {
        (11, x1, 1)
    } else {
        (21, x2, 2)
    };
    let again = register(&store, branch(wx, wt, winner + 1, "t:1;t:5")).await;
    assert!(matches!(again, BranchAdded::Added), "{again:?}");
    let rows: Vec<(String, i64)> = admin
        .query(format!(
            "SELECT row_key, branch_id FROM {db}.lock_table ORDER BY row_key"
        ))
        .await
        .unwrap();
    let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    let mut expected = vec!["jdbc:mysql://db/x^^^t^^^1", "jdbc:mysql://db/x^^^t^^^5"];
    if wx == x2 {
        expected.push("jdbc:mysql://db/x^^^t^^^9");
    }
    assert_eq!(keys, expected);

    // Decisions at once: x3 wins, a second decision of x3 in the same batch loses to it.
    let decided = join_all([
        store.transition_global(3, x3, GlobalStatus::Begin, GlobalStatus::Rollbacking),
        store.transition_global(3, x3, GlobalStatus::Begin, GlobalStatus::AsyncCommitting),
        store.transition_global(wt, wx, GlobalStatus::Begin, GlobalStatus::AsyncCommitting),
    ])
    .await;
    let decided: Vec<Transition> = decided.into_iter().map(|d| d.unwrap()).collect();
    let applied_x3 = decided[..2]
        .iter()
        .filter(|d| matches!(d, Transition::Applied { .. }))
        .count();
    assert_eq!(applied_x3, 1, "{decided:?}");
    assert!(decided[..2].iter().any(|d| matches!(
        d,
        Transition::Lost {
            current: Some(GlobalStatus::Rollbacking | GlobalStatus::AsyncCommitting)
        }
    )));
    match &decided[2] {
        Transition::Applied {
            branches: Some(list),
        } => {
            let ids: Vec<i64> = list.iter().map(|b| b.branch_id).collect();
            assert_eq!(ids, [winner, winner + 1]);
        }
        other => panic!("commit of {wx} not applied: {other:?}"),
    }
    // The commit released the winner's rows with the decision.
    let left: Option<i64> = admin
        .query_first(format!("SELECT COUNT(*) FROM {db}.lock_table"))
        .await
        .unwrap();
    assert_eq!(left, Some(0));

    // A register after the decision is refused; removals forget everything.
    let late = register(&store, branch(wx, wt, winner + 2, "t:7")).await;
    assert!(
        matches!(late, BranchAdded::Refused(GlobalStatus::AsyncCommitting)),
        "{late:?}"
    );
    for r in join_all(
        [x1, x2, x3]
            .into_iter()
            .zip(1..)
            .map(|(x, t)| store.remove_global(t, x)),
    )
    .await
    {
        r.unwrap();
    }
    assert!(store.find(1, x1).await.unwrap().is_none());
    let leases: Option<i64> = admin
        .query_first(format!("SELECT COUNT(*) FROM {db}.seata_rs_tx_lease"))
        .await
        .unwrap();
    assert_eq!(leases, Some(0));
    store.close().await.unwrap();
    admin
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}
