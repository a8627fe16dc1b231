//! Configuration nothing else exercises (issue 18): node ids leased from the database by
//! db-store TCs (`--server-node` is ignored there). The other untested settings of the issue
//! (`--host`, `max-connections`, the phase-two retry timeouts and
//! `rollback-retry-timeout-unlock-enable`) are in `failure_paths.rs`.

use mysql_async::prelude::Queryable;
use seata_it::clients::{begin, tm, WAIT};
use seata_it::db_store::TestDb;
use seata_it::tc::TcProcess;

/// Lease of the TCs here, ms.
const LEASE_MS: u64 = 1_000;

/// A db-store TC on `db` that asks for server node 5 (which the db store must ignore).
fn start_tc(db: &TestDb, config: &tempfile::TempDir) -> TcProcess {
    let path = config.path().join("tc.toml");
    std::fs::write(
        &path,
        format!("db-lease-ms = {LEASE_MS}\nserver-node = 5\n"),
    )
    .expect("config written");
    TcProcess::start_with(&[
        "--config",
        path.to_str().expect("utf-8 temp path"),
        "--store",
        "db",
        "--db-url",
        db.url(),
        "--init-db",
        "--server-node",
        "5",
    ])
}

/// The transaction id of an XID (`ip:port:id`).
fn tid(xid: &str) -> i64 {
    xid.rsplit(':')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not an XID: {xid}"))
}

/// The server node of an id (`tc/src/id.rs`: 41 bits time | 10 bits node | 12 bits sequence).
fn node(id: i64) -> i64 {
    (id >> 12) & 1023
}

/// The node a TC's ids carry, from a transaction it begins.
async fn node_of(tc: &TcProcess) -> (i64, i64) {
    let client = tm(tc.addr()).await;
    let xid = begin(&client, 60_000).await;
    client.shutdown();
    (node(tid(&xid)), tid(&xid))
}

#[tokio::test]
async fn db_store_tcs_lease_distinct_nodes_and_a_dead_ones_node_only_after_its_lease() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("config dir");
    let mut a = start_tc(&db, &dir);
    let b = start_tc(&db, &dir);
    let (node_a, last_a) = node_of(&a).await;
    let (node_b, _) = node_of(&b).await;
    assert_ne!(
        node_a, node_b,
        "two TCs on one database share node {node_a}: --server-node was not ignored"
    );
    for (tc, n) in [(&a, node_a), (&b, node_b)] {
        assert!(
            tc.log()
                .contains(&format!("leased server node from the database node={n}")),
            "{}",
            tc.log()
        );
    }

    // A dies: its node stays leased until its lease runs out, so a TC starting now gets
    // another one.
    a.kill();
    let c = start_tc(&db, &dir);
    let (node_c, _) = node_of(&c).await;
    assert!(
        node_c != node_a && node_c != node_b,
        "node {node_c} handed out while still leased (A {node_a}, B {node_b})"
    );

    // Once A's lease ran out (as the database's clock says), its node is free again, and a
    // TC taking it hands out ids above every id A gave.
    let mut conn = mysql_async::Conn::from_url(db.url())
        .await
        .expect("test database");
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let expired: Option<i64> = conn
            .exec_first(
                "SELECT expires_at < ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) \
                 FROM seata_rs_tc_node WHERE node = ?",
                (node_a,),
            )
            .await
            .expect("read node lease");
        if expired == Some(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "node {node_a} never expired"
        );
        // Polling the lease row; the outcome does not depend on this interval.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = conn.disconnect().await;
    let d = start_tc(&db, &dir);
    let (node_d, first_d) = node_of(&d).await;
    assert_eq!(node_d, node_a, "the lowest expired node is reused");
    assert!(first_d > last_a, "ids repeat after a node is reused");
    drop((b, c, d));
}

/// Waits until the database's clock says the lease of `node` ran out.
async fn wait_node_expired(db: &TestDb, node: i64) {
    let mut conn = mysql_async::Conn::from_url(db.url())
        .await
        .expect("test database");
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let expired: Option<i64> = conn
            .exec_first(
                "SELECT expires_at < ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) \
                 FROM seata_rs_tc_node WHERE node = ?",
                (node,),
            )
            .await
            .expect("read node lease");
        if expired == Some(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "node {node} never expired"
        );
        // Polling the lease row; the outcome does not depend on this interval.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = conn.disconnect().await;
}

#[tokio::test]
async fn tc_frozen_past_its_node_lease_gives_no_ids_under_the_node_another_tc_took() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("config dir");
    let a = start_tc(&db, &dir);
    let (node_a, _) = node_of(&a).await;
    let pid = a.pid().expect("A runs").to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("runs kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    // A freezes past its lease, and a TC starting meanwhile leases A's node.
    signal("-STOP");
    wait_node_expired(&db, node_a).await;
    let d = start_tc(&db, &dir);
    let (node_d, _) = node_of(&d).await;
    assert_eq!(node_d, node_a, "the expired node is taken");
    signal("-CONT");

    // A may not hand out ids under that node any more: its begins are refused (the log says
    // to restart it), or carry another node.
    let client = tm(a.addr()).await;
    for _ in 0..3 {
        let r: seata_protocol::GlobalBeginResponse =
            seata_it::clients::call(&client, || seata_protocol::GlobalBeginRequest {
                timeout: 60_000,
                transaction_name: "frozen".into(),
            })
            .await;
        if r.result.is_success() {
            assert_ne!(
                node(tid(&r.xid)),
                node_a,
                "A gave an id under node {node_a}, which D holds:\n{}",
                a.log()
            );
        } else {
            // The answer's message is cut to Seata's 128 characters; the log has it whole
            // (read from the TC's output by another thread, so it may arrive after the answer).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !a.log().contains("is leased by another TC")
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(
                a.log().contains("is leased by another TC"),
                "{:?}\n{}",
                r.result,
                a.log()
            );
        }
    }
    // D serves as usual.
    let (again, _) = node_of(&d).await;
    assert_eq!(again, node_a);
}
