//! The admin API, its CLI (`seata-tc-it admin ...`) and the dirty-rollback path against the
//! real TC: list/show/locks/clients agree with what the protocol reports, every action works
//! and refuses what would break the protocol, auth, and audit records surviving a restart.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use seata_it::clients::{self, Answer, TestRm};
use seata_it::tc::{tc_binary, TcProcess};
use seata_protocol::rpc::{Registration, RequestHandler, RpcHandle, TcClient, TcClientConfig};
use seata_protocol::{
    BranchRegisterRequest, BranchRegisterResponse, BranchRollbackResponse, BranchStatus,
    BranchType, GlobalStatus, Message, TransactionExceptionCode, TxResult,
};
use serde_json::{json, Value};

const TOKEN: &str = "it-admin-token";

/// A TC with the admin token configured (file store, temporary data directory).
fn tc_with_token() -> (TcProcess, tempfile::TempDir) {
    let conf_dir = tempfile::tempdir().expect("config dir");
    let path = conf_dir.path().join("tc.toml");
    std::fs::write(&path, format!("[admin]\ntoken = \"{TOKEN}\"\n")).expect("write config");
    let path = path.to_string_lossy().into_owned();
    (TcProcess::start_with(&["--config", &path]), conf_dir)
}

fn base(tc: &TcProcess) -> String {
    format!("http://{}/admin/v1", tc.http_addr())
}

async fn get(tc: &TcProcess, path: &str) -> Value {
    let r = reqwest::get(format!("{}{path}", base(tc)))
        .await
        .expect("admin GET");
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.expect("JSON")
}

/// POST an action; returns the status code and the JSON answer.
async fn post(tc: &TcProcess, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", base(tc)))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("admin POST");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn item<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["items"]
        .as_array()?
        .iter()
        .find(|t| t["id"] == id || t["xid"] == id)
}

/// Runs `seata-tc-it admin --url ... args`; returns (exit code, stdout, stderr).
fn cli(tc: &TcProcess, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tc_binary())
        .arg("admin")
        .arg("--url")
        .arg(format!("http://{}", tc.http_addr()))
        .args(args)
        .env_remove("SEATA_TC_ADMIN_TOKEN")
        .output()
        .expect("run the admin CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn list_show_locks_and_clients_match_the_protocol() {
    let (tc, _conf) = tc_with_token();
    let tm = clients::tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-admin-rm", &["jdbc:admin-db"]).await;
    let open = clients::begin(&tm, 60_000).await;
    let other = clients::begin(&tm, 60_000).await;
    let reg = rm.register(&open, "jdbc:admin-db", "account:1,2").await;
    assert!(reg.result.is_success(), "{:?}", reg.result);

    let list = get(&tc, "/transactions?kind=seata").await;
    for xid in [&open, &other] {
        let row = item(&list, xid).unwrap_or_else(|| panic!("{xid} not listed: {list}"));
        assert_eq!(row["status"], clients::status(&tm, xid).await.to_string());
        assert_eq!(row["application"], "it-tm");
    }
    assert_eq!(item(&list, &open).unwrap()["mode"], "at");
    assert_eq!(item(&list, &open).unwrap()["branches"], 1);
    let filtered = get(&tc, "/transactions?mode=at").await;
    assert!(item(&filtered, &other).is_none(), "{filtered}");
    assert!(item(&filtered, &open).is_some(), "{filtered}");
    assert!(get(&tc, "/transactions?stuck_s=0").await["items"]
        .as_array()
        .unwrap()
        .is_empty());
    let paged = get(&tc, "/transactions?kind=seata&limit=1&offset=1").await;
    assert_eq!(paged["total"], 2);
    assert_eq!(paged["items"].as_array().unwrap().len(), 1);

    let show = get(&tc, &format!("/transactions/{open}")).await;
    let branch = &show["transaction"]["branches"][0];
    assert_eq!(branch["branch_id"], reg.branch_id.to_string());
    assert_eq!(branch["resource_id"], "jdbc:admin-db");
    assert_eq!(branch["branch_type"], "AT");
    assert!(
        branch["client_id"]
            .as_str()
            .unwrap()
            .starts_with("it-admin-rm:127.0.0.1:"),
        "{branch}"
    );

    let locks = get(&tc, "/locks?resource=jdbc:admin-db").await;
    assert_eq!(locks["total"], 2, "{locks}");
    assert_eq!(locks["by_transaction"][&open], 2);
    assert!(!clients::lockable(&rm, "jdbc:admin-db", "account:2").await);

    let clients_view = get(&tc, "/clients").await;
    let roles: Vec<&str> = clients_view["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"TM") && roles.contains(&"RM"),
        "{clients_view}"
    );
    assert_eq!(
        clients_view["applications"]["it-admin-rm"]["127.0.0.1"][0]["resources"],
        json!(["jdbc:admin-db"])
    );

    // The CLI prints the same as tables, and the API's JSON with --json.
    let (code, out, err) = cli(&tc, &["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID "), "{out}");
    assert!(out.contains(&open) && out.contains(&other), "{out}");
    assert!(out.contains("2 of 2"), "{out}");
    let (code, out, _) = cli(&tc, &["show", &open]);
    assert_eq!(code, 0);
    assert!(
        out.contains("jdbc:admin-db") && out.contains("Begin"),
        "{out}"
    );
    let (code, out, _) = cli(&tc, &["locks"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("account") && out.contains("2 row locks"),
        "{out}"
    );
    let (code, out, _) = cli(&tc, &["clients"]);
    assert_eq!(code, 0);
    assert!(out.contains("it-admin-rm") && out.contains("RM"), "{out}");
    let (code, out, _) = cli(&tc, &["--json", "show", &open]);
    assert_eq!(code, 0);
    let parsed: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(parsed["summary"]["id"], open.as_str());
    let (code, _, err) = cli(&tc, &["show", "127.0.0.1:1:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test]
async fn actions_need_the_token_and_refuse_protocol_breaks() {
    // Without a token configured, actions are off.
    let plain = TcProcess::start();
    let (code, body) = post(
        &plain,
        "/transactions/127.0.0.1:1:1/retry",
        Some("x"),
        json!({}),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    drop(plain);

    let (tc, _conf) = tc_with_token();
    let tm = clients::tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-admin-rm", &["jdbc:act-db"]).await;
    let xid = clients::begin(&tm, 60_000).await;
    rm.register(&xid, "jdbc:act-db", "t:1").await;

    let retry = format!("/transactions/{xid}/retry");
    assert_eq!(post(&tc, &retry, None, json!({})).await.0, 401);
    assert_eq!(post(&tc, &retry, Some("wrong"), json!({})).await.0, 401);
    // Phase one: only the TM commits; retry has nothing to do.
    let (code, body) = post(
        &tc,
        &format!("/transactions/{xid}/commit"),
        Some(TOKEN),
        json!({}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["status"], "Begin");
    assert!(
        body["next"].as_str().unwrap().contains("rollback"),
        "{body}"
    );
    assert_eq!(post(&tc, &retry, Some(TOKEN), json!({})).await.0, 409);

    // An operator's rollback of a transaction whose RM keeps failing: it retries.
    rm.answer(Answer::Retryable);
    let (code, body) = post(
        &tc,
        &format!("/transactions/{xid}/rollback"),
        Some(TOKEN),
        json!({"actor": "it"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    clients::wait_status(&tm, &xid, GlobalStatus::RollbackRetrying).await;
    // Commit after a rollback decision breaks atomicity: refused, with what to do.
    let (code, body) = post(
        &tc,
        &format!("/transactions/{xid}/commit"),
        Some(TOKEN),
        json!({}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["status"], "RollbackRetrying");
    // Rolling back again and retrying are idempotent.
    let (code, _) = post(
        &tc,
        &format!("/transactions/{xid}/rollback"),
        Some(TOKEN),
        json!({}),
    )
    .await;
    assert_eq!(code, 200);
    let show = get(&tc, &format!("/transactions/{xid}")).await;
    let branch = &show["transaction"]["branches"][0];
    assert!(branch["failed_attempts"].as_u64().unwrap() >= 1, "{show}");
    assert!(
        branch["last_error"]
            .as_str()
            .unwrap()
            .contains("PhaseTwo_RollbackFailed_Retryable"),
        "{show}"
    );
    let stuck = get(&tc, "/transactions?stuck_s=0").await;
    assert!(item(&stuck, &xid).is_some(), "{stuck}");
    // Not finished: delete is refused; the CLI says why and what next, exit status 1.
    let (code, body) = post(
        &tc,
        &format!("/transactions/{xid}/delete"),
        Some(TOKEN),
        json!({}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    let (code, _, err) = cli(&tc, &["--token", TOKEN, "delete", &xid]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not finished") && err.contains("next:"),
        "{err}"
    );
    // The RM recovers; retry now finishes it.
    rm.answer(Answer::Done);
    let (code, out, err) = cli(&tc, &["--token", TOKEN, "retry", &xid]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("retry {xid}")), "{out}");
    clients::wait_status(&tm, &xid, GlobalStatus::Finished).await;
    // Gone now: deleting it again is a no-op, not an error.
    let (code, body) = post(
        &tc,
        &format!("/transactions/{xid}/delete"),
        Some(TOKEN),
        json!({}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["changed"], false);
}

/// An RM whose rollback finds the row changed outside the global lock: it answers
/// unretryable with a report in the message, as the AT RM does (at most 128 characters: the
/// wire cuts longer messages).
struct DirtyRm {
    report: String,
}

impl RequestHandler for DirtyRm {
    fn on_request(
        self: Arc<Self>,
        _conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        Box::pin(async move {
            match msg {
                Message::BranchRollbackRequest(r) => Some(
                    BranchRollbackResponse {
                        // Seata's codec writes `msg` only with resultCode Failed (protocol-v1
                        // §2.3), so the report travels in a failed answer; the unretryable
                        // status still decides.
                        result: TxResult::failed(
                            TransactionExceptionCode::BranchRollbackFailedUnretriable,
                            self.report.clone(),
                        ),
                        xid: r.xid,
                        branch_id: r.branch_id,
                        branch_status: BranchStatus::PhaseTwoRollbackFailedUnretryable,
                    }
                    .into(),
                ),
                _ => None,
            }
        })
    }
}

#[tokio::test]
async fn dirty_rollback_keeps_locks_until_an_audited_give_up_that_survives_restart() {
    let (mut tc, _conf) = tc_with_token();
    let tm = clients::tm(tc.addr()).await;
    let report = json!({"table": "account", "pk": "7", "before": {"balance": 10},
        "after": {"balance": 5}, "current": {"balance": 99}})
    .to_string();
    let config = TcClientConfig::new(
        vec![tc.addr().to_owned()],
        Registration::Rm {
            application_id: "it-dirty-rm".into(),
            transaction_service_group: "it_tx_group".into(),
            resource_ids: vec!["jdbc:dirty-db".into()],
        },
    );
    let dirty = TcClient::connect(
        config,
        Arc::new(DirtyRm {
            report: report.clone(),
        }),
        Duration::from_secs(10),
    )
    .await
    .expect("RM connects");
    let probe = TestRm::connect(tc.addr(), "it-probe", &["jdbc:probe"]).await;
    let xid = clients::begin(&tm, 60_000).await;
    let reg: BranchRegisterResponse = dirty
        .request(BranchRegisterRequest {
            xid: xid.clone(),
            branch_type: BranchType::At,
            resource_id: "jdbc:dirty-db".into(),
            lock_key: "account:7".into(),
            application_data: String::new(),
        })
        .await
        .expect("register");
    assert!(reg.result.is_success());

    // The TM sees what a Seata 1.2 TC answers.
    let r = clients::rollback(&tm, &xid).await;
    assert_eq!(r.global_status, GlobalStatus::RollbackFailed);
    assert_eq!(
        clients::status(&tm, &xid).await,
        GlobalStatus::RollbackFailed
    );
    // The row stays locked, the branch is shown unretryable with the RM's report.
    assert!(!clients::lockable(&probe, "jdbc:dirty-db", "account:7").await);
    let show = get(&tc, &format!("/transactions/{xid}")).await;
    let branch = &show["transaction"]["branches"][0];
    assert_eq!(branch["unretryable"], true, "{show}");
    assert_eq!(branch["status"], "PhaseTwo_RollbackFailed_Unretryable");
    assert_eq!(branch["last_error"], report.as_str());
    assert_eq!(show["summary"]["needs_operator"], true);
    let (_, out, _) = cli(&tc, &["show", &xid]);
    assert!(
        out.contains("(unretryable)") && out.contains("\"current\""),
        "{out}"
    );

    let give_up = format!("/transactions/{xid}/branches/{}/give-up", reg.branch_id);
    let (code, body) = post(&tc, &give_up, Some(TOKEN), json!({})).await;
    assert_eq!(code, 400, "a give-up needs a reason: {body}");
    let (code, out, err) = cli(
        &tc,
        &[
            "--token",
            TOKEN,
            "give-up",
            &xid,
            &reg.branch_id.to_string(),
            "--reason",
            "balance restored by hand",
            "--actor",
            "ops",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RollbackFailed"), "{out}");
    // Released and finished; a repeated give-up changes nothing.
    assert!(clients::lockable(&probe, "jdbc:dirty-db", "account:7").await);
    assert_eq!(clients::status(&tm, &xid).await, GlobalStatus::Finished);
    let (code, body) = post(&tc, &give_up, Some(TOKEN), json!({"reason": "again"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["changed"], false);

    // The audit records survive a restart of the file store.
    tc.restart();
    let audit = get(&tc, &format!("/audit?xid={xid}")).await;
    let actions: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [("rm-unretryable", "rm"), ("give-up", "admin:ops")],
        "{audit}"
    );
    assert_eq!(audit["items"][0]["reason"], report.as_str());
    assert_eq!(audit["items"][1]["reason"], "balance restored by hand");
    let (code, out, _) = cli(&tc, &["audit", "--xid", &xid]);
    assert_eq!(code, 0);
    assert!(
        out.contains("give-up") && out.contains("admin:ops"),
        "{out}"
    );
}

#[tokio::test]
async fn dtm_transactions_are_listed_shown_and_retried() {
    let (tc, _conf) = tc_with_token();
    // A saga whose branch server is down: it stays submitted and retries.
    let body = json!({
        "gid": "admin-it-saga",
        "trans_type": "saga",
        "steps": [{"action": "http://127.0.0.1:9/pay", "compensate": "http://127.0.0.1:9/refund"}],
        "payloads": ["{}"],
        "retry_interval": 60,
    });
    let r = reqwest::Client::new()
        .post(format!("{}/submit", tc.dtm_url()))
        .json(&body)
        .send()
        .await
        .expect("submit");
    assert!(r.status().is_success(), "{}", r.status());

    let list = get(&tc, "/transactions?kind=dtm").await;
    let row = item(&list, "admin-it-saga").unwrap_or_else(|| panic!("not listed: {list}"));
    assert_eq!(row["mode"], "dtm-saga");
    assert_eq!(row["status"], "submitted");
    let show = get(&tc, "/transactions/admin-it-saga").await;
    assert_eq!(show["kind"], "dtm");
    let ops = show["transaction"]["branches"].as_array().unwrap();
    assert!(
        ops.iter()
            .any(|b| b["op"] == "action" && b["url"] == "http://127.0.0.1:9/pay"),
        "{show}"
    );

    let (code, body) = post(
        &tc,
        "/transactions/admin-it-saga/retry",
        Some(TOKEN),
        json!({}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["changed"], true);
    // DTM decides its own outcome: commit is refused with where to go instead.
    let (code, body) = post(
        &tc,
        "/transactions/admin-it-saga/commit",
        Some(TOKEN),
        json!({}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["next"].as_str().unwrap().contains("forceStop"),
        "{body}"
    );
    let (code, out, _) = cli(&tc, &["list", "--kind", "dtm"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("admin-it-saga") && out.contains("dtm-saga"),
        "{out}"
    );

    // Only a finished DTM transaction can be deleted; the delete is audited.
    let delete = "/transactions/admin-it-saga/delete";
    let (code, body) = post(&tc, delete, Some(TOKEN), json!({})).await;
    assert_eq!(code, 409, "{body}");
    let r = reqwest::Client::new()
        .post(format!("{}/forceStop", tc.dtm_url()))
        .json(&json!({"gid": "admin-it-saga"}))
        .send()
        .await
        .expect("forceStop");
    assert!(r.status().is_success(), "{}", r.status());
    let (code, body) = post(
        &tc,
        delete,
        Some(TOKEN),
        json!({"reason": "stopped by hand"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["changed"], true);
    let gone = reqwest::get(format!("{}/transactions/admin-it-saga", base(&tc)))
        .await
        .expect("GET");
    assert_eq!(gone.status().as_u16(), 404);
    let (code, body) = post(&tc, delete, Some(TOKEN), json!({})).await;
    assert_eq!((code, body["changed"].clone()), (200, json!(false)));
    let audit = get(&tc, "/audit?xid=admin-it-saga").await;
    assert_eq!(audit["items"][0]["action"], "delete", "{audit}");
    assert_eq!(audit["items"][0]["status"], "failed");
}

#[tokio::test]
async fn db_store_keeps_audit_records_in_its_table() {
    let db = seata_it::db_store::TestDb::create().await;
    let conf = tempfile::tempdir().expect("config dir");
    let path = conf.path().join("tc.toml");
    std::fs::write(&path, format!("[admin]\ntoken = \"{TOKEN}\"\n")).expect("write config");
    let path = path.to_string_lossy().into_owned();
    let mut tc = TcProcess::start_with(&[
        "--config",
        &path,
        "--store",
        "db",
        "--db-url",
        db.url(),
        "--init-db",
    ]);
    let tm = clients::tm(tc.addr()).await;
    let dirty = TcClient::connect(
        TcClientConfig::new(
            vec![tc.addr().to_owned()],
            Registration::Rm {
                application_id: "it-dirty-rm".into(),
                transaction_service_group: "it_tx_group".into(),
                resource_ids: vec!["jdbc:dirty-db".into()],
            },
        ),
        Arc::new(DirtyRm {
            report: "{\"table\":\"t\",\"pk\":\"1\"}".into(),
        }),
        Duration::from_secs(10),
    )
    .await
    .expect("RM connects");
    let xid = clients::begin(&tm, 60_000).await;
    let reg: BranchRegisterResponse = dirty
        .request(BranchRegisterRequest {
            xid: xid.clone(),
            branch_type: BranchType::At,
            resource_id: "jdbc:dirty-db".into(),
            lock_key: "t:1".into(),
            application_data: String::new(),
        })
        .await
        .expect("register");
    assert!(reg.result.is_success(), "{:?}", reg.result);
    assert_eq!(
        clients::rollback(&tm, &xid).await.global_status,
        GlobalStatus::RollbackFailed
    );
    let give_up = format!("/transactions/{xid}/branches/{}/give-up", reg.branch_id);
    let (code, body) = post(&tc, &give_up, Some(TOKEN), json!({"reason": "fixed"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(db.count("seata_rs_audit").await, 2);
    tc.restart();
    let audit = get(&tc, &format!("/audit?xid={xid}")).await;
    assert_eq!(audit["total"], 2, "{audit}");
    assert_eq!(audit["items"][1]["reason"], "fixed");
}

#[tokio::test]
async fn a_dirty_rollback_still_waits_for_the_operator_after_a_restart() {
    let (mut tc, _conf) = tc_with_token();
    let tm = clients::tm(tc.addr()).await;
    let dirty = TcClient::connect(
        TcClientConfig::new(
            vec![tc.addr().to_owned()],
            Registration::Rm {
                application_id: "it-dirty-rm".into(),
                transaction_service_group: "it_tx_group".into(),
                resource_ids: vec!["jdbc:dirty-db".into()],
            },
        ),
        Arc::new(DirtyRm {
            report: "{\"table\":\"t\",\"pk\":\"5\"}".into(),
        }),
        Duration::from_secs(10),
    )
    .await
    .expect("RM connects");
    let xid = clients::begin(&tm, 60_000).await;
    let reg: BranchRegisterResponse = dirty
        .request(BranchRegisterRequest {
            xid: xid.clone(),
            branch_type: BranchType::At,
            resource_id: "jdbc:dirty-db".into(),
            lock_key: "t:5".into(),
            application_data: String::new(),
        })
        .await
        .expect("register");
    assert!(reg.result.is_success(), "{:?}", reg.result);
    clients::rollback(&tm, &xid).await;
    tc.restart();
    assert_eq!(
        clients::status(&tm, &xid).await,
        GlobalStatus::RollbackFailed
    );
    let show = get(&tc, &format!("/transactions/{xid}")).await;
    let branch = &show["transaction"]["branches"][0];
    assert_eq!(branch["unretryable"], true, "{show}");
    assert_eq!(branch["status"], "PhaseTwo_RollbackFailed_Unretryable");
    assert_eq!(show["audit"][0]["reason"], "{\"table\":\"t\",\"pk\":\"5\"}");
    let locks = get(&tc, &format!("/locks?xid={xid}")).await;
    assert_eq!(
        locks["total"], 1,
        "the row stays locked after the restart: {locks}"
    );
}
