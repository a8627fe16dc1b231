//! The db store's [`DtmStore`] against a real MariaDB (`SEATA_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306`): each method's contract as the memory store's table keeps it
//! (`dtm_table.rs`), and two stores on one database standing for two TCs. Each test uses a
//! database of its own and drops it; without a server the tests say so and pass.

use std::collections::HashSet;

use futures::future::join;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::dtm_rows::owner_text;
use super::MysqlStore;
use crate::dtm::model::{
    Branch, BranchChange, BranchStatus, Op, Trans, TransOptions, TransRecord, TransStatus,
    TransType,
};
use crate::store::dtm::{BranchesAdded, Created, DtmStore, ListQuery};
use crate::store::SessionStore;

fn server_url() -> String {
    std::env::var("SEATA_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A fresh database: the admin connection, its name and its URL; `None` when no server
/// answers.
async fn database(name: &str) -> Option<(Conn, String, String)> {
    let mut admin = match Conn::from_url(server_url()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("no MariaDB at {}: {e}; skipping", server_url());
            return None;
        }
    };
    let db = format!("seata_rs_dtm_{name}_{}", std::process::id());
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
    admin
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = format!("{}/{db}", server_url());
    Some((admin, db, url))
}

/// One TC's store on the database at `url`.
async fn tc(url: &str) -> MysqlStore {
    MysqlStore::open(url, true, 10_000).await.unwrap()
}

async fn drop_database(mut admin: Conn, db: &str, stores: Vec<MysqlStore>) {
    for s in stores {
        s.close().await.unwrap();
    }
    admin
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

fn owner_of(store: &MysqlStore) -> String {
    owner_text(store.leases.owner())
}

fn record(gid: &str, status: TransStatus) -> TransRecord {
    TransRecord {
        trans: Trans {
            id: 0,
            gid: gid.into(),
            trans_type: TransType::Tcc,
            status,
            protocol: String::new(),
            query_prepared: String::new(),
            custom_data: String::new(),
            options: TransOptions::default(),
            rollback_reason: String::new(),
            result: String::new(),
            create_time: 1,
            update_time: 1,
            finish_time: 0,
            rollback_time: 0,
            next_cron_interval: 10,
            next_cron_time: 100,
            retry_count: 0,
            owner: String::new(),
            ext_data: String::new(),
        },
        branches: vec![],
    }
}

fn op(id: &str, op: Op, url: &str) -> Branch {
    Branch::new(id.into(), op, url.into(), b"{}".to_vec(), 2)
}

async fn stored(store: &MysqlStore, gid: &str) -> TransRecord {
    store.get(gid).await.unwrap().unwrap()
}

#[tokio::test]
async fn create_stores_every_field_and_keeps_the_first_copy() {
    let Some((admin, db, url)) = database("create").await else {
        return;
    };
    let store = tc(&url).await;
    let mut saga = record("a", TransStatus::Submitted);
    let t = &mut saga.trans;
    t.trans_type = TransType::Saga;
    t.protocol = "http".into();
    t.query_prepared = "http://q/prepared".into();
    t.custom_data = r#"{"concurrent":true,"orders":{"1":[0]}}"#.into();
    t.options = TransOptions {
        wait_result: true,
        timeout_to_fail: 35,
        request_timeout: 3,
        retry_interval: 5,
        retry_limit: 2,
        branch_headers: [("x-a".to_string(), "1".to_string())].into(),
        concurrent: true,
    };
    t.rollback_reason = "ünïcode reason".into();
    t.result = "r".into();
    (t.create_time, t.update_time, t.finish_time, t.rollback_time) = (1_700_000_000_123, 5, 6, 7);
    (t.next_cron_interval, t.next_cron_time, t.retry_count) = (20, 9, 3);
    t.owner = "not ours".into();
    t.ext_data = "{}".into();
    let mut body = Branch::new(
        "01".into(),
        Op::Action,
        "http://s/a".into(),
        vec![0xff, 0, 1],
        4,
    );
    body.finish(BranchStatus::Failed, 8);
    saga.branches = vec![
        Branch::new("01".into(), Op::Compensate, "http://s/c".into(), vec![], 4),
        body,
    ];

    let Created::New { id } = store.create(&saga).await.unwrap() else {
        panic!("a new gid was not created");
    };
    let mut expected = saga.clone();
    expected.trans.id = id;
    expected.trans.owner = owner_of(&store);
    assert_eq!(stored(&store, "a").await, expected);

    let mut again = record("a", TransStatus::Prepared);
    again.branches.push(op("09", Op::Confirm, "http://other"));
    assert_eq!(
        store.create(&again).await.unwrap(),
        Created::Exists(Box::new(expected.clone()))
    );
    assert_eq!(stored(&store, "a").await, expected, "nothing written");

    let Created::New { id: id_b } = store
        .create(&record("b", TransStatus::Prepared))
        .await
        .unwrap()
    else {
        panic!("b not created");
    };
    assert!(id_b > id);
    // Gids compare byte for byte, as in memory.
    for gid in ["A", "a "] {
        assert!(matches!(
            store
                .create(&record(gid, TransStatus::Prepared))
                .await
                .unwrap(),
            Created::New { .. }
        ));
    }
    assert_eq!(stored(&store, "A").await.trans.gid, "A");
    assert!(store.get("zz").await.unwrap().is_none());
    assert!(store.dtm().is_some());
    drop_database(admin, &db, vec![store]).await;
}

#[tokio::test]
async fn save_is_conditional_on_the_stored_status() {
    let Some((admin, db, url)) = database("save").await else {
        return;
    };
    let store = tc(&url).await;
    let mut r = record("a", TransStatus::Prepared);
    r.branches.push(op("01", Op::Cancel, "http://c/cancel"));
    r.branches.push(op("01", Op::Confirm, "http://c/confirm"));
    store.create(&r).await.unwrap();
    // Another TC's lease: the save below takes it back.
    let mut sql = Conn::from_url(&url).await.unwrap();
    sql.query_drop("UPDATE trans_global SET owner = 12345")
        .await
        .unwrap();

    let mut next = r.trans.clone();
    next.status = TransStatus::Submitted;
    next.update_time = 50;
    next.next_cron_time = 60;
    next.retry_count = 1;
    next.rollback_reason = "why".into();
    next.create_time = 999;
    next.trans_type = TransType::Saga;
    let confirm = BranchChange {
        branch_id: "01".into(),
        op: Op::Confirm,
        status: BranchStatus::Succeed,
        time_ms: 7,
    };
    let missing = BranchChange {
        branch_id: "77".into(),
        op: Op::Confirm,
        status: BranchStatus::Succeed,
        time_ms: 7,
    };
    assert!(!store
        .save(&next, TransStatus::Aborting, std::slice::from_ref(&confirm))
        .await
        .unwrap());
    let before = stored(&store, "a").await;
    assert_eq!(before.trans.status, TransStatus::Prepared);
    assert_eq!(before.trans.owner, "12345", "a lost save writes nothing");
    assert_eq!(before.branches[1].status, BranchStatus::Prepared);

    assert!(store
        .save(&next, TransStatus::Prepared, &[confirm, missing])
        .await
        .unwrap());
    let after = stored(&store, "a").await;
    let mut expected = next.clone();
    expected.id = before.trans.id;
    expected.create_time = 1;
    expected.trans_type = TransType::Tcc;
    expected.owner = owner_of(&store);
    assert_eq!(
        after.trans, expected,
        "id, type and creation are the store's"
    );
    assert_eq!(
        after.branches.len(),
        2,
        "a change of an unknown op is skipped"
    );
    let c = &after.branches[1];
    assert_eq!(
        (c.status, c.update_time, c.finish_time, c.rollback_time),
        (BranchStatus::Succeed, 7, 7, 0)
    );
    assert_eq!(after.branches[0], r.branches[0]);

    // Without changes (one statement), and a compensating op's rollback time.
    let mut aborting = next.clone();
    aborting.status = TransStatus::Aborting;
    assert!(store
        .save(&aborting, TransStatus::Submitted, &[])
        .await
        .unwrap());
    let cancel = BranchChange {
        branch_id: "01".into(),
        op: Op::Cancel,
        status: BranchStatus::Succeed,
        time_ms: 9,
    };
    let mut failed = aborting.clone();
    failed.status = TransStatus::Failed;
    failed.finish_time = 9;
    assert!(store
        .save(&failed, TransStatus::Aborting, &[cancel])
        .await
        .unwrap());
    let done = stored(&store, "a").await;
    assert_eq!(done.trans.status, TransStatus::Failed);
    let c = &done.branches[0];
    assert_eq!((c.finish_time, c.rollback_time), (9, 9));
    assert!(!store
        .save(
            &record("zz", TransStatus::Prepared).trans,
            TransStatus::Prepared,
            &[]
        )
        .await
        .unwrap());
    drop(sql);
    drop_database(admin, &db, vec![store]).await;
}

#[tokio::test]
async fn registering_twice_is_identical_or_a_conflict_and_only_while_prepared() {
    let Some((admin, db, url)) = database("register").await else {
        return;
    };
    let store = tc(&url).await;
    store
        .create(&record("a", TransStatus::Prepared))
        .await
        .unwrap();
    let ops = [
        op("01", Op::Cancel, "http://x/cancel"),
        op("01", Op::Confirm, "http://x/confirm"),
    ];
    assert_eq!(
        store.add_branches("a", &ops).await.unwrap(),
        BranchesAdded::Added
    );
    assert_eq!(
        store.add_branches("a", &ops).await.unwrap(),
        BranchesAdded::Identical
    );
    let other = [
        op("01", Op::Cancel, "http://y/cancel"),
        op("01", Op::Confirm, "http://x/confirm"),
    ];
    assert_eq!(
        store.add_branches("a", &other).await.unwrap(),
        BranchesAdded::Conflict {
            branch_id: "01".into()
        }
    );
    let second = [
        op("02", Op::Cancel, "http://x/cancel2"),
        op("02", Op::Confirm, "http://x/confirm2"),
    ];
    assert_eq!(
        store.add_branches("a", &second).await.unwrap(),
        BranchesAdded::Added
    );
    let branches = stored(&store, "a").await.branches;
    let expected: Vec<Branch> = ops.iter().chain(&second).cloned().collect();
    assert_eq!(branches, expected, "in registration order");
    assert_eq!(
        store.add_branches("a", &[]).await.unwrap(),
        BranchesAdded::Added
    );
    assert_eq!(
        store.add_branches("zz", &ops).await.unwrap(),
        BranchesAdded::NotPrepared(None)
    );
    store
        .create(&record("s", TransStatus::Submitted))
        .await
        .unwrap();
    assert_eq!(
        store.add_branches("s", &ops).await.unwrap(),
        BranchesAdded::NotPrepared(Some(TransStatus::Submitted))
    );
    assert!(stored(&store, "s").await.branches.is_empty());
    drop_database(admin, &db, vec![store]).await;
}

#[tokio::test]
async fn due_lists_unfinished_work_whose_time_has_come() {
    let Some((admin, db, url)) = database("due").await else {
        return;
    };
    let store = tc(&url).await;
    store
        .create(&record("a", TransStatus::Prepared))
        .await
        .unwrap();
    let mut done = record("b", TransStatus::Succeed);
    done.trans.next_cron_time = 0;
    store.create(&done).await.unwrap();
    let mut early = record("c", TransStatus::Aborting);
    early.trans.next_cron_time = 50;
    store.create(&early).await.unwrap();
    assert!(store.due(49, 10).await.unwrap().is_empty());
    assert_eq!(store.due(99, 10).await.unwrap(), ["c"]);
    assert_eq!(
        store.due(100, 10).await.unwrap(),
        ["c", "a"],
        "oldest first"
    );
    assert_eq!(store.due(100, 1).await.unwrap(), ["c"]);
    assert!(store.due(100, 0).await.unwrap().is_empty());
    drop_database(admin, &db, vec![store]).await;
}

#[tokio::test]
async fn list_pages_newest_first_and_purge_forgets_old_finished_ones() {
    let Some((admin, db, url)) = database("list").await else {
        return;
    };
    let store = tc(&url).await;
    for (gid, status, finish) in [
        ("a", TransStatus::Succeed, 10),
        ("b", TransStatus::Failed, 20),
        ("c", TransStatus::Prepared, 0),
    ] {
        let mut r = record(gid, status);
        r.trans.finish_time = finish;
        r.trans.create_time = finish + 1;
        r.branches.push(op("01", Op::Confirm, "http://x"));
        store.create(&r).await.unwrap();
    }
    let gids = |page: &crate::store::dtm::ListPage| -> Vec<String> {
        page.transactions.iter().map(|t| t.gid.clone()).collect()
    };
    let page = store
        .list(&ListQuery {
            limit: 2,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(gids(&page), ["c", "b"]);
    let last = page.next_before_id.unwrap();
    assert_eq!(Some(last), page.transactions.last().map(|t| t.id));
    let rest = store
        .list(&ListQuery {
            limit: 2,
            before_id: Some(last),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(gids(&rest), ["a"]);
    assert_eq!(rest.next_before_id, None);
    let failed = store
        .list(&ListQuery {
            status: Some(TransStatus::Failed),
            trans_type: Some(TransType::Tcc),
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(gids(&failed), ["b"]);
    let window = store
        .list(&ListQuery {
            create_time_start: Some(1),
            create_time_end: Some(11),
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(gids(&window), ["c", "a"]);
    let none = store
        .list(&ListQuery {
            trans_type: Some(TransType::Saga),
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert!(none.transactions.is_empty());

    assert_eq!(store.purge(15, 100).await.unwrap(), 1);
    assert!(store.get("a").await.unwrap().is_none());
    assert_eq!(store.purge(0, 0).await.unwrap(), 1);
    assert!(store.get("b").await.unwrap().is_none());
    assert_eq!(store.purge(i64::MAX, 0).await.unwrap(), 0);
    assert!(store.get("c").await.unwrap().is_some(), "never unfinished");
    let mut sql = Conn::from_url(&url).await.unwrap();
    let ops: Option<i64> = sql
        .query_first("SELECT COUNT(*) FROM trans_branch_op")
        .await
        .unwrap();
    assert_eq!(ops, Some(1), "the purged ones' branch ops went with them");
    drop(sql);
    drop_database(admin, &db, vec![store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_keeps_the_newest_finished_ones() {
    let Some((admin, db, url)) = database("keep").await else {
        return;
    };
    let store = tc(&url).await;
    for i in 0..5 {
        let mut r = record(&format!("f{i}"), TransStatus::Succeed);
        r.trans.finish_time = 100 + i;
        store.create(&r).await.unwrap();
    }
    // Older than 102 go; then only the newest two are kept.
    assert_eq!(store.purge(102, 2).await.unwrap(), 3);
    let left: Vec<String> = store
        .list(&ListQuery {
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap()
        .transactions
        .into_iter()
        .map(|t| t.gid)
        .collect();
    assert_eq!(left, ["f4", "f3"]);

    // Two TCs purging at once still keep the newest ones.
    let other = tc(&url).await;
    for i in 5..10 {
        let mut r = record(&format!("f{i}"), TransStatus::Failed);
        r.trans.finish_time = 100 + i;
        store.create(&r).await.unwrap();
    }
    let (one, two) = join(store.purge(0, 3), other.purge(0, 3)).await;
    assert_eq!(one.unwrap() + two.unwrap(), 4);
    let page = store
        .list(&ListQuery {
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    let left: Vec<&str> = page.transactions.iter().map(|t| t.gid.as_str()).collect();
    assert_eq!(left, ["f9", "f8", "f7"]);
    drop_database(admin, &db, vec![store, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tcs_never_get_the_same_gid_from_due() {
    let Some((admin, db, url)) = database("race").await else {
        return;
    };
    let (a, b) = (tc(&url).await, tc(&url).await);
    let all: HashSet<String> = (0..40).map(|i| format!("g{i:02}")).collect();
    for i in 0..40 {
        let mut r = record(&format!("g{i:02}"), TransStatus::Submitted);
        r.trans.next_cron_time = 100 + i;
        a.create(&r).await.unwrap();
    }
    let mut sql = Conn::from_url(&url).await.unwrap();
    let mut split = 0;
    for round in 0..8 {
        // Nobody's (as if written by a TC that is gone): both may take each of them. One
        // of the two sees only some due, so their candidates overlap in part.
        sql.query_drop("UPDATE trans_global SET owner = 0")
            .await
            .unwrap();
        let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let some = 100 + 5 * round;
        let (got_1, got_2) = join(first.due(some, 100), second.due(1_000, 100)).await;
        let (got_1, got_2): (HashSet<String>, HashSet<String>) = (
            got_1.unwrap().into_iter().collect(),
            got_2.unwrap().into_iter().collect(),
        );
        assert!(
            got_1.is_disjoint(&got_2),
            "round {round}: both got {:?}",
            got_1.intersection(&got_2).collect::<Vec<_>>()
        );
        let union: HashSet<String> = got_1.union(&got_2).cloned().collect();
        assert_eq!(union, all, "round {round}: each gid went to one of them");
        split += usize::from(!got_1.is_empty() && !got_2.is_empty());
        for (store, got) in [(first, &got_1), (second, &got_2)] {
            for gid in got {
                assert_eq!(stored(store, gid).await.trans.owner, owner_of(store));
            }
            // Once taken, a gid stays with its TC.
            let again: HashSet<String> = store.due(1_000, 100).await.unwrap().into_iter().collect();
            assert_eq!(&again, got, "round {round}");
        }
    }
    eprintln!("rounds in which both TCs took some: {split} of 8");
    drop(sql);
    drop_database(admin, &db, vec![a, b]).await;
}

#[tokio::test]
async fn a_live_owner_keeps_its_transactions_and_a_dead_ones_are_taken_over() {
    let Some((admin, db, url)) = database("takeover").await else {
        return;
    };
    let (a, b) = (tc(&url).await, tc(&url).await);
    a.create(&record("t1", TransStatus::Prepared))
        .await
        .unwrap();
    assert_eq!(stored(&a, "t1").await.trans.owner, owner_of(&a));
    // Past its cron time, but its creator lives.
    assert!(b.due(1_000, 10).await.unwrap().is_empty());
    assert_eq!(a.due(1_000, 10).await.unwrap(), ["t1"]);

    // A save on B takes the lease.
    let mut t1 = stored(&b, "t1").await.trans;
    t1.status = TransStatus::Aborting;
    assert!(b.save(&t1, TransStatus::Prepared, &[]).await.unwrap());
    assert_eq!(stored(&a, "t1").await.trans.owner, owner_of(&b));
    assert!(a.due(1_000, 10).await.unwrap().is_empty());
    assert_eq!(b.due(1_000, 10).await.unwrap(), ["t1"]);

    // A stops renewing and its node lease runs out: B takes what A held.
    a.create(&record("t2", TransStatus::Submitted))
        .await
        .unwrap();
    assert_eq!(b.due(1_000, 10).await.unwrap(), ["t1"]);
    let mut sql = Conn::from_url(&url).await.unwrap();
    sql.exec_drop(
        "UPDATE seata_rs_tc_node SET expires_at = 0 WHERE node = ?",
        (a.server_node().unwrap(),),
    )
    .await
    .unwrap();
    let taken: HashSet<String> = b.due(1_000, 10).await.unwrap().into_iter().collect();
    assert_eq!(taken, HashSet::from(["t1".to_string(), "t2".to_string()]));
    assert_eq!(stored(&b, "t2").await.trans.owner, owner_of(&b));
    assert!(
        a.due(1_000, 10).await.unwrap().is_empty(),
        "B is alive and owns them now"
    );
    drop(sql);
    drop_database(admin, &db, vec![a, b]).await;
}
