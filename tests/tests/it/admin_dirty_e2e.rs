//! The AT dirty-rollback path end to end, with every real piece: the `seata-tc` binary (admin
//! token configured), the seata-tm client, a seata-rm AT resource manager and a MariaDB
//! database. A global transaction updates `account` row 1 through the AT proxy, a plain
//! connection then overwrites that row outside the global lock, and the TM rolls back: the RM
//! refuses (`PhaseTwo_RollbackFailed_Unretryable`, report `{"dirty":"account","pks":["1"],...}`)
//! and the TC keeps the session and its row lock for an operator. Then the three ways out:
//!
//! - [`restoring_the_before_image_then_retry_ends_the_transaction`]: the RM writes the before
//!   image back (`resolve_dirty(RestoreBeforeImage)`), the operator retries at the TC;
//! - [`accepting_the_current_row_then_retry_keeps_the_outside_write`]: the RM accepts the
//!   current data (`AcceptCurrent`), the operator retries;
//! - [`giving_up_the_branch_releases_its_locks_and_keeps_the_undo_log`]: the operator gives the
//!   branch up at the TC without any RM resolution.

use std::sync::Arc;

use seata_it::mysql::{TestDb, PHASE_TWO_WAIT};
use seata_it::tc::TcProcess;
use seata_rm::at::{AtConfig, AtResourceManager, DataSourceProxy, DirtyResolution, TcLink};
use seata_rm::client::{RmClient, RmClientConfig};
use seata_tm::{GlobalStatus, TmClient, TmConfig, TmError, TxError};
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "it-dirty-e2e-token";
const TX_TIMEOUT: Duration = Duration::from_secs(60);
const INTENDED: &str = "rolled back on purpose by the test";
const ACCOUNT: &str = "CREATE TABLE account (
    id INT PRIMARY KEY, owner VARCHAR(32) NOT NULL, balance INT NOT NULL)";
const ACCOUNT_ROWS: &str = "INSERT INTO account VALUES (1, 'a', 100), (2, 'b', 200)";
/// Phase one's debit: 100 → 50.
const PHASE_ONE: &str = "UPDATE account SET balance = balance - 50 WHERE id = 1";
/// The write outside the global lock, after phase one.
const OUTSIDE: &str = "UPDATE account SET balance = 7 WHERE id = 1";
const KEY: &str = "account:1";

/// A TC with an admin token, a TM, an RM with its AT resource manager, and one database
/// registered as an AT resource.
struct Fixture {
    tc: TcProcess,
    _conf: tempfile::TempDir,
    tm: TmClient,
    rm: Arc<RmClient>,
    at: Arc<AtResourceManager>,
    db: TestDb,
    ds: DataSourceProxy,
}

/// A global transaction whose rollback the RM refused for a dirty write, as the TC keeps it.
struct Dirty {
    xid: String,
    branch_id: i64,
}

impl Fixture {
    async fn start(tag: &str) -> Fixture {
        let conf = tempfile::tempdir().expect("config dir");
        let path = conf.path().join("tc.toml");
        std::fs::write(&path, format!("[admin]\ntoken = \"{TOKEN}\"\n")).expect("write config");
        let tc = TcProcess::start_with(&["--config", &path.to_string_lossy()]);
        let tm = TmClient::connect(TmConfig::new("it-dirty-tm", vec![tc.addr().to_owned()]))
            .await
            .expect("TM connects");
        let rm = RmClient::connect(RmClientConfig::new(
            "it-dirty-rm",
            vec![tc.addr().to_owned()],
        ))
        .await
        .expect("RM connects");
        let at = rm.at(AtConfig::default()).expect("AT resource manager");
        let db = TestDb::create(tag, &[ACCOUNT, ACCOUNT_ROWS]).await;
        let ds = rm
            .at_data_source(&at, db.opts(4))
            .await
            .expect("AT data source registered with the TC");
        Fixture {
            tc,
            _conf: conf,
            tm,
            rm,
            at,
            db,
            ds,
        }
    }

    fn rid(&self) -> &str {
        self.ds.resource_id()
    }

    fn admin(&self, path: &str) -> String {
        format!("http://{}/admin/v1{path}", self.tc.http_addr())
    }

    /// `GET` an admin endpoint: status code and JSON body.
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(self.admin(path)).await.expect("admin GET");
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET` that must succeed.
    async fn get_ok(&self, path: &str) -> Value {
        let (code, body) = self.get(path).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }

    /// `POST` an action with the token: status code and JSON body.
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(self.admin(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("admin POST");
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    /// Whether the TC would grant `key` on the resource to a new transaction now.
    async fn lockable(&self, key: &str) -> bool {
        self.rm
            .lock_query("", self.rid(), key)
            .await
            .expect("global lock query answered")
    }

    async fn balances(&self) -> Vec<i32> {
        self.db
            .query("SELECT balance FROM account ORDER BY id")
            .await
    }

    /// Undo-log rows of the branch by `log_status` (0 normal, 1 the "global finished" defense
    /// row a rollback writes when it finds no undo log).
    async fn undo_statuses(&self, branch_id: i64) -> Vec<i32> {
        self.db
            .query(&format!(
                "SELECT log_status FROM undo_log WHERE branch_id = {branch_id} ORDER BY id"
            ))
            .await
    }

    /// Phase one through the AT proxy, the outside write, the TM's rollback; checks everything
    /// the TC and RM promise while the operator has not acted yet.
    async fn dirty_rollback(&self) -> Dirty {
        let mut xid = String::new();
        let result = self
            .tm
            .run("it-dirty-e2e", TX_TIMEOUT, |ctx| {
                xid = ctx.xid().expect("launcher has an XID").to_owned();
                async {
                    let mut conn = self.ds.get_conn().await?;
                    conn.query_drop(PHASE_ONE).await?;
                    drop(conn);
                    // Phase one committed locally; a plain connection ignores the global lock.
                    self.db.run(OUTSIDE).await;
                    Err::<(), _>(anyhow::anyhow!(INTENDED))
                }
            })
            .await;
        // The TC answers the GlobalRollback with RollbackFailed (as Seata 1.2 does), and the
        // TM reports a rollback that needs manual repair.
        match &result {
            Err(TxError::RollbackFailed {
                rollback: TmError::RollbackFailed { status, .. },
                ..
            }) => assert_eq!(*status, GlobalStatus::RollbackFailed),
            other => panic!("{xid}: expected a failed rollback, got {other:?}"),
        }
        assert!(result
            .unwrap_err()
            .tm()
            .is_some_and(TmError::needs_manual_repair));
        assert_eq!(
            self.tm.status(&xid).await.expect("status answered"),
            GlobalStatus::RollbackFailed
        );
        // The RM touched nothing and kept its undo log.
        assert_eq!(self.balances().await, [7, 200], "the outside write stays");

        // The admin view: one AT branch, unretryable, with the RM's report as last error.
        let show = self.get_ok(&format!("/transactions/{xid}")).await;
        let tx = &show["transaction"];
        assert_eq!(tx["status"], "RollbackFailed", "{show}");
        assert_eq!(show["summary"]["needs_operator"], true, "{show}");
        let branches = tx["branches"].as_array().expect("branches");
        assert_eq!(branches.len(), 1, "{show}");
        let branch = &branches[0];
        assert_eq!(branch["branch_type"], "AT");
        assert_eq!(branch["resource_id"], self.rid());
        assert_eq!(branch["lock_key"], KEY);
        assert_eq!(branch["status"], "PhaseTwo_RollbackFailed_Unretryable");
        assert_eq!(branch["unretryable"], true);
        let report: Value = serde_json::from_str(
            branch["last_error"]
                .as_str()
                .unwrap_or_else(|| panic!("no last error: {show}")),
        )
        .expect("the RM's report is JSON");
        assert_eq!(report, json!({"dirty": "account", "pks": ["1"], "more": 0}));
        let branch_id: i64 = branch["branch_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("branch id: {show}"));
        assert_eq!(show["audit"][0]["action"], "rm-unretryable", "{show}");
        assert_eq!(show["audit"][0]["actor"], "rm");
        assert_eq!(show["audit"][0]["branch_id"], branch_id.to_string());
        assert_eq!(
            self.undo_statuses(branch_id).await,
            [0],
            "the undo log is kept"
        );

        // The row lock stays with the branch.
        let locks = self.get_ok(&format!("/locks?xid={xid}")).await;
        assert_eq!(locks["total"], 1, "{locks}");
        let lock = &locks["items"][0];
        assert_eq!(
            (&lock["table"], &lock["pk"], &lock["resource_id"]),
            (&json!("account"), &json!("1"), &json!(self.rid())),
            "{locks}"
        );
        assert_eq!(lock["branch_id"], branch_id.to_string());
        assert!(!self.lockable(KEY).await, "row 1 stays locked");
        assert!(self.lockable("account:2").await, "row 2 was never locked");
        Dirty { xid, branch_id }
    }

    /// The RM's full report: row 1 with before 100, after 50, current 7.
    async fn check_report(&self, d: &Dirty) {
        let report = self
            .at
            .dirty_report(&d.xid, d.branch_id, self.rid())
            .await
            .expect("report read")
            .expect("a dirty branch has a report");
        let [row] = report.rows.as_slice() else {
            panic!("one dirty row: {report:?}")
        };
        assert_eq!((row.table.as_str(), row.pk.as_str()), ("account", "1"));
        let balance = |r: &Option<Vec<(String, Option<String>)>>| {
            r.as_ref()
                .and_then(|cols| cols.iter().find(|(c, _)| c == "balance"))
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(balance(&row.before).as_deref(), Some("100"));
        assert_eq!(balance(&row.after).as_deref(), Some("50"));
        assert_eq!(balance(&row.current).as_deref(), Some("7"));
    }

    /// The operator's `retry` after the RM settled the branch: the TC rolls it back again,
    /// the RM now answers Rollbacked, and the transaction ends with its lock released.
    async fn retry_until_finished(&self, d: &Dirty) {
        let (code, body) = self
            .post(
                &format!("/transactions/{}/retry", d.xid),
                json!({"actor": "it"}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["changed"], true, "{body}");
        let deadline = tokio::time::Instant::now() + PHASE_TWO_WAIT;
        loop {
            let s = self.tm.status(&d.xid).await.expect("status answered");
            if s == GlobalStatus::Finished {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} stuck in {s:?} after retry; TC log:\n{}",
                d.xid,
                self.tc.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.assert_released(d).await;
        let audit = self.get_ok(&format!("/audit?xid={}", d.xid)).await;
        let actions: Vec<(&str, &str)> = audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|a| (a["action"].as_str().unwrap(), a["actor"].as_str().unwrap()))
            .collect();
        assert_eq!(
            actions,
            [("rm-unretryable", "rm"), ("retry", "admin:it")],
            "{audit}"
        );
        // The retried rollback found no undo log and wrote the "global finished" defense row
        // (a late phase one of this branch would now fail), nothing else: no undo log left.
        assert_eq!(self.undo_statuses(d.branch_id).await, [1]);
        assert_eq!(
            self.db
                .scalar("SELECT COUNT(*) FROM undo_log WHERE log_status = 0")
                .await,
            0
        );
    }

    /// The session is gone from the TC (not shown, no lock) and the row is free.
    async fn assert_released(&self, d: &Dirty) {
        let (code, body) = self.get(&format!("/transactions/{}", d.xid)).await;
        assert_eq!(
            code, 404,
            "a finished Seata transaction is not kept: {body}"
        );
        let locks = self.get_ok(&format!("/locks?xid={}", d.xid)).await;
        assert_eq!(locks["total"], 0, "{locks}");
        assert!(self.lockable(KEY).await, "row 1 released");
    }

    async fn close(self) {
        let _ = self.ds.pool().clone().disconnect().await;
        self.rm.shutdown();
        self.tm.shutdown();
        self.db.cleanup().await;
    }
}

#[tokio::test]
async fn restoring_the_before_image_then_retry_ends_the_transaction() {
    let f = Fixture::start("dirty_e2e_restore").await;
    let d = f.dirty_rollback().await;
    // Another global transaction's AT update of the row meets the kept lock (a user-managed
    // local transaction tries its commit once).
    let other =
        f.tm.run("it-dirty-e2e-other", TX_TIMEOUT, |_| async {
            let mut conn = f.ds.get_conn().await?;
            conn.begin().await?;
            conn.query_drop("UPDATE account SET balance = balance + 1 WHERE id = 1")
                .await?;
            conn.commit().await
        })
        .await;
    match other {
        Err(TxError::Business(e)) => assert!(e.is_lock_conflict(), "{e}"),
        other => panic!("expected a lock conflict, got {other:?}"),
    }
    assert_eq!(
        f.balances().await,
        [7, 200],
        "the conflicting update is undone"
    );
    f.check_report(&d).await;

    let settled =
        f.at.resolve_dirty(
            &d.xid,
            d.branch_id,
            f.rid(),
            DirtyResolution::RestoreBeforeImage,
        )
        .await
        .expect("resolved");
    assert!(settled);
    assert_eq!(f.balances().await, [100, 200], "before image written back");
    // Resolving on the RM alone changes nothing at the TC: the operator still has to retry.
    assert_eq!(
        f.tm.status(&d.xid).await.unwrap(),
        GlobalStatus::RollbackFailed
    );
    assert!(!f.lockable(KEY).await);

    f.retry_until_finished(&d).await;
    assert_eq!(f.balances().await, [100, 200]);
    f.close().await;
}

#[tokio::test]
async fn accepting_the_current_row_then_retry_keeps_the_outside_write() {
    let f = Fixture::start("dirty_e2e_accept").await;
    let d = f.dirty_rollback().await;
    f.check_report(&d).await;
    let settled =
        f.at.resolve_dirty(&d.xid, d.branch_id, f.rid(), DirtyResolution::AcceptCurrent)
            .await
            .expect("resolved");
    assert!(settled);
    assert_eq!(f.balances().await, [7, 200], "the data stays as it is");
    assert_eq!(f.undo_statuses(d.branch_id).await, Vec::<i32>::new());

    f.retry_until_finished(&d).await;
    assert_eq!(f.balances().await, [7, 200], "the outside write is kept");
    f.close().await;
}

#[tokio::test]
async fn giving_up_the_branch_releases_its_locks_and_keeps_the_undo_log() {
    let f = Fixture::start("dirty_e2e_give_up").await;
    let d = f.dirty_rollback().await;
    let give_up = format!("/transactions/{}/branches/{}/give-up", d.xid, d.branch_id);
    let (code, body) = f.post(&give_up, json!({"actor": "ops"})).await;
    assert_eq!(code, 400, "a give-up needs a reason: {body}");
    assert!(!f.lockable(KEY).await, "a refused give-up releases nothing");

    let reason = "balance of account 1 checked by hand";
    let (code, body) = f
        .post(&give_up, json!({"reason": reason, "actor": "ops"}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["changed"], true, "{body}");
    assert_eq!(
        body["status"], "RollbackFailed",
        "the transaction ends failed: {body}"
    );
    // The TC forgot the session: status queries answer Finished, as for any ended one.
    assert_eq!(f.tm.status(&d.xid).await.unwrap(), GlobalStatus::Finished);
    f.assert_released(&d).await;

    let audit = f.get_ok(&format!("/audit?xid={}", d.xid)).await;
    let items = audit["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{audit}");
    assert_eq!(items[0]["action"], "rm-unretryable");
    let give = &items[1];
    assert_eq!(give["action"], "give-up", "{audit}");
    assert_eq!(give["actor"], "admin:ops");
    assert_eq!(give["reason"], reason);
    assert_eq!(give["branch_id"], d.branch_id.to_string());
    assert_eq!(give["status"], "RollbackFailed");

    // Nothing reached the RM: its data and undo log are the operator's to settle (the undo
    // log still holds the before image; `resolve_dirty` or a manual fix, then delete it).
    assert_eq!(f.balances().await, [7, 200]);
    assert_eq!(
        f.undo_statuses(d.branch_id).await,
        [0],
        "the undo log stays"
    );
    assert!(f
        .at
        .dirty_report(&d.xid, d.branch_id, f.rid())
        .await
        .expect("report read")
        .is_some());
    // Row 1 is writable by other global transactions again.
    f.tm.run("it-dirty-e2e-after", TX_TIMEOUT, |_| async {
        let mut conn = f.ds.get_conn().await?;
        conn.begin().await?;
        conn.query_drop("UPDATE account SET balance = balance + 1 WHERE id = 1")
            .await?;
        conn.commit().await
    })
    .await
    .expect("row 1 is no longer locked");
    assert_eq!(f.balances().await, [8, 200]);
    f.close().await;
}
