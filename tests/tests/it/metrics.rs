//! `GET /metrics` of the real `seata-tc` while the protocol runs: the gauges of open sessions,
//! row locks and connections go up and back to 0, and the counters move by one per event
//! (begin, lock conflict, phase-two retry).

use seata_it::clients::{begin, lockable, rollback, tm, wait_status, Answer, TestRm};
use seata_it::tc::TcProcess;
use seata_protocol::GlobalStatus;

const DB: &str = "jdbc:mysql://127.0.0.1:3306/it_metrics";

/// The exposition text of `tc`.
async fn scrape(tc: &TcProcess) -> String {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    let r = http
        .get(format!("http://{}/metrics", tc.http_addr()))
        .send()
        .await
        .expect("GET /metrics answered");
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.expect("metrics body")
}

/// The value of the sample `series` (name with its labels, as printed), or 0 when absent
/// (a labelled counter appears at its first increment).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or(0.0)
}

/// Scrapes `series` from `tc`.
async fn read(tc: &TcProcess, series: &str) -> f64 {
    value(&scrape(tc).await, series)
}

#[tokio::test]
async fn open_sessions_and_row_locks_go_up_and_back_to_zero() {
    let tc = TcProcess::start();
    let before = scrape(&tc).await;
    assert_eq!(value(&before, "seata_sessions_open{status=\"Begin\"}"), 0.0);
    assert!(
        before.contains("seata_sessions_open{status=\"Begin\"} 0"),
        "the series exists at 0 before any session: {before}"
    );
    assert!(before.contains("seata_row_locks_held 0"), "{before}");

    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-metrics-rm", &[DB]).await;
    let xid = begin(&tm, 60_000).await;
    let r = rm.register(&xid, DB, "account:1,2").await;
    assert!(r.result.is_success(), "{:?}", r.result);

    let during = scrape(&tc).await;
    assert_eq!(value(&during, "seata_sessions_open{status=\"Begin\"}"), 1.0);
    assert_eq!(value(&during, "seata_row_locks_held"), 2.0);
    assert_eq!(value(&during, "seata_connections{role=\"tm\"}"), 1.0);
    assert_eq!(value(&during, "seata_connections{role=\"rm\"}"), 1.0);

    rm.answer(Answer::Done);
    let r = rollback(&tm, &xid).await;
    assert!(r.result.is_success(), "{:?}", r.result);
    wait_status(&tm, &xid, GlobalStatus::Finished).await;
    assert!(lockable(&rm, DB, "account:1,2").await);
    let after = scrape(&tc).await;
    for status in ["Begin", "Rollbacking", "RollbackRetrying"] {
        let series = format!("seata_sessions_open{{status=\"{status}\"}}");
        assert_eq!(value(&after, &series), 0.0, "{series} in {after}");
    }
    assert_eq!(value(&after, "seata_row_locks_held"), 0.0, "{after}");
}

#[tokio::test]
async fn begin_lock_conflict_and_retry_each_move_their_counter_by_one() {
    let tc = TcProcess::start();
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-metrics-rm", &[DB]).await;
    let begun = "seata_global_transactions_begun_total{mode=\"seata\"}";
    let conflicts = "seata_lock_conflicts_total";
    let retrying = "seata_global_retrying_total{phase=\"rollback\"}";
    let rolled_back =
        "seata_global_transactions_finished_total{mode=\"at\",outcome=\"rolled_back\"}";
    let retryable_answers =
        "seata_branch_phase_two_total{branch_type=\"at\",phase=\"rollback\",outcome=\"retryable\"}";

    let b0 = read(&tc, begun).await;
    let holder = begin(&tm, 60_000).await;
    assert_eq!(read(&tc, begun).await, b0 + 1.0, "begin → +1");

    assert!(rm.register(&holder, DB, "t:1").await.result.is_success());
    let other = begin(&tm, 60_000).await;
    let c0 = read(&tc, conflicts).await;
    let refused = rm.register(&other, DB, "t:1").await;
    assert!(!refused.result.is_success(), "row t:1 is held by {holder}");
    assert_eq!(read(&tc, conflicts).await, c0 + 1.0, "lock conflict → +1");

    // A retryable rollback answer puts the transaction in RollbackRetrying once, however
    // many retry passes the job then runs before the RM succeeds.
    let r0 = read(&tc, retrying).await;
    let f0 = read(&tc, rolled_back).await;
    rm.answer(Answer::Retryable);
    let r = rollback(&tm, &holder).await;
    assert_eq!(r.global_status, GlobalStatus::RollbackRetrying);
    let during = scrape(&tc).await;
    assert_eq!(value(&during, retrying), r0 + 1.0, "phase-two retry → +1");
    assert!(value(&during, retryable_answers) >= 1.0, "{during}");
    rm.answer(Answer::Done);
    wait_status(&tm, &holder, GlobalStatus::Finished).await;
    let after = scrape(&tc).await;
    assert_eq!(value(&after, retrying), r0 + 1.0);
    assert_eq!(value(&after, rolled_back), f0 + 1.0, "{after}");
    assert!(
        value(&after, "seata_global_retries_total{phase=\"rollback\"}") >= 1.0,
        "the retry job ran the pass that succeeded: {after}"
    );
    assert!(
        value(&after, "seata_request_seconds_count{request=\"begin\"}") >= 2.0,
        "{after}"
    );
    let _ = rollback(&tm, &other).await;
}
