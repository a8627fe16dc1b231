//! XA (§6.6) on MariaDB: a branch service whose local part runs `XA START` … `XA PREPARE` and
//! registers its phase-two URL, and whose phase-two handler runs `XA COMMIT` / `XA ROLLBACK`.
//! The TC drives phase two in registration order; the database shows the outcome.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};
use seata_it::dtm::{branch_rows, call_branch, rows, trans, Dtm, Reply};
use seata_it::mysql::TestDb;
use serde_json::json;

use super::{assert_branch_call, Env};

const DDL: &str = "CREATE TABLE t (id INT PRIMARY KEY, branch VARCHAR(8) NOT NULL)";

/// `'gid-branch'`, the xid of §6.6. The gid comes from newGid (URL-safe, no quotes: §3.1), and
/// XA statements take no placeholders, so it is checked and quoted here.
fn xid(gid: &str, branch_id: &str) -> String {
    let id = format!("{gid}-{branch_id}");
    assert!(
        id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "xid {id:?} does not fit an XA gtrid (§3.1: newGid is URL-safe and ≤ 64)"
    );
    format!("'{id}'")
}

/// MySQL error code of a failed statement, if it is a server error.
fn code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// The local part of an XA branch (§6.6 step 3): its own connection, the insert, registerBranch
/// with the phase-two URL, XA END, XA PREPARE; the connection is closed afterwards so that the
/// prepared branch can be finished from another one.
async fn local_part(
    db: Opts,
    dtm: Dtm,
    gid: &str,
    branch_id: &str,
    phase2_url: &str,
) -> Result<(), String> {
    let xid = xid(gid, branch_id);
    let mut conn = Conn::new(db).await.map_err(|e| e.to_string())?;
    let id: i32 = branch_id.parse().map_err(|_| "numeric branch ids here")?;
    let work = async {
        conn.query_drop(format!("XA START {xid}")).await?;
        conn.exec_drop("INSERT INTO t (id, branch) VALUES (?, ?)", (id, branch_id))
            .await?;
        Ok::<_, mysql_async::Error>(())
    };
    if let Err(e) = work.await {
        let _ = conn.disconnect().await;
        return Err(e.to_string());
    }
    let reg = dtm
        .register_branch(&json!({
            "gid": gid,
            "trans_type": "xa",
            "branch_id": branch_id,
            "url": phase2_url,
        }))
        .await;
    let end = async {
        conn.query_drop(format!("XA END {xid}")).await?;
        if reg.status == 200 {
            conn.query_drop(format!("XA PREPARE {xid}")).await
        } else {
            conn.query_drop(format!("XA ROLLBACK {xid}")).await
        }
    };
    let ended = end.await.map_err(|e| e.to_string());
    let _ = conn.disconnect().await;
    ended?;
    if reg.status != 200 {
        return Err(format!(
            "registerBranch answered {} {}",
            reg.status, reg.text
        ));
    }
    Ok(())
}

/// Phase two (§6.6 step 6): XA COMMIT or XA ROLLBACK; unknown XID (1397) means already done.
async fn phase_two(db: Opts, gid: &str, branch_id: &str, op: &str) -> Result<(), String> {
    let verb = match op {
        "commit" => "COMMIT",
        "rollback" => "ROLLBACK",
        other => return Err(format!("unexpected op {other:?}")),
    };
    let mut conn = Conn::new(db).await.map_err(|e| e.to_string())?;
    let r = conn
        .query_drop(format!("XA {verb} {}", xid(gid, branch_id)))
        .await;
    let _ = conn.disconnect().await;
    match r {
        Ok(()) => Ok(()),
        Err(e) if code(&e) == Some(1397) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Installs the two handlers of the XA branch service: `/xa/action` (local part, called by the
/// test as initiator) and `/xa/phase2` (called by the TC).
fn serve_xa(env: &Env, db: &TestDb) {
    let (opts, dtm) = (db.opts(4), env.dtm.clone());
    env.svc.handle("/xa/action", move |call| {
        let (opts, dtm) = (opts.clone(), dtm.clone());
        async move {
            let p = |k: &str| call.param(k).unwrap_or_default().to_owned();
            match local_part(opts, dtm, &p("gid"), &p("branch_id"), &p("phase2_url")).await {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::json(500, &json!({"error": e}).to_string()),
            }
        }
    });
    let opts = db.opts(4);
    env.svc.handle("/xa/phase2", move |call| {
        let opts = opts.clone();
        async move {
            let p = |k: &str| call.param(k).unwrap_or_default().to_owned();
            match phase_two(opts, &p("gid"), &p("branch_id"), &p("op")).await {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::json(500, &json!({"error": e}).to_string()),
            }
        }
    });
}

/// What the Go client's initiator does per branch (§6.6 step 2).
async fn call_local_part(env: &Env, gid: &str, branch_id: &str) {
    let phase2 = env.url("/xa/phase2");
    let params = [
        ("dtm", env.dtm.base()),
        ("gid", gid),
        ("trans_type", "xa"),
        ("branch_id", branch_id),
        ("op", "action"),
        ("phase2_url", &phase2),
    ];
    let status = call_branch(&env.url("/xa/action"), &params, "{}").await;
    assert_eq!(
        status,
        200,
        "local part of {branch_id}: {:?}",
        env.svc.calls()
    );
}

/// xids still prepared in the database that belong to `gid`.
async fn xa_pending(db: &TestDb, gid: &str) -> Vec<String> {
    db.rows("XA RECOVER")
        .await
        .into_iter()
        .filter_map(|row| match row.get(3) {
            Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .filter(|data| data.starts_with(gid))
        .collect()
}

/// Prepares an XA transaction with two prepared branches (ids 1 and 2 inserted).
async fn two_prepared_branches(env: &Env, db: &TestDb) -> String {
    serve_xa(env, db);
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "xa", json!({"retry_interval": 1})))
        .await
        .expect_success();
    call_local_part(env, &gid, "01").await;
    call_local_part(env, &gid, "02").await;
    assert_eq!(
        xa_pending(db, &gid).await.len(),
        2,
        "both branches prepared"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM t").await,
        0,
        "not visible yet"
    );
    gid
}

/// The TC's phase-two calls: POST even without a body (§4.1), registration order (§6.6).
#[track_caller]
fn assert_phase_two(env: &Env, gid: &str, op: &str) {
    let calls = env.svc.calls_to("/xa/phase2");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_branch_call(&calls[0], gid, "xa", ("01", op), "");
    assert_branch_call(&calls[1], gid, "xa", ("02", op), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_submit_commits_every_branch() {
    let db = TestDb::create("dtm_xa", &[DDL]).await;
    let env = Env::start().await;
    let gid = two_prepared_branches(&env, &db).await;
    let q = env.dtm.query(&gid).await;
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "rollback", "prepared"),
            ("01", "commit", "prepared"),
            ("02", "rollback", "prepared"),
            ("02", "commit", "prepared"),
        ]),
        "§3.5 xa rows; query: {q:#}"
    );

    env.dtm
        .submit(&trans(&gid, "xa", json!({})))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "succeed").await;
    assert_phase_two(&env, &gid, "commit");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM t").await,
        2,
        "committed rows"
    );
    assert!(xa_pending(&db, &gid).await.is_empty());
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_abort_rolls_every_branch_back() {
    let db = TestDb::create("dtm_xa", &[DDL]).await;
    let env = Env::start().await;
    let gid = two_prepared_branches(&env, &db).await;
    env.dtm
        .abort(&trans(&gid, "xa", json!({})))
        .await
        .expect_success();
    let q = env.dtm.wait_status(&gid, "failed").await;
    assert_phase_two(&env, &gid, "rollback");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM t").await, 0, "rolled back");
    assert!(xa_pending(&db, &gid).await.is_empty());
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "rollback", "succeed"),
            ("01", "commit", "prepared"),
            ("02", "rollback", "succeed"),
            ("02", "commit", "prepared"),
        ])
    );
    db.cleanup().await;
}
