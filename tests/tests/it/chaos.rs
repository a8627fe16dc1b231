//! The chaos run, short: `seata-chaos` (built into this package as `seata-chaos-it`, so it is
//! never stale) drives transfers from two worker processes against the real TC on the file
//! store (AT, TCC and XA mixed), kills the TC twice and a worker once under load, and must end
//! with every invariant holding (see `chaos/src/check.rs`; for TCC, no fence row still tried,
//! nothing frozen; for XA, no branch of the run still prepared).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use seata_it::mysql::server_url;
use seata_it::process::run_to_end;
use seata_it::tc::tc_binary;

/// `seata-chaos-it` next to the test executable's directory (cargo builds it with the tests).
fn chaos_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable in <target>/<profile>/deps");
    dir.join("seata-chaos-it")
}

/// The `key=value` fields of the final `chaos: ...` line.
fn final_fields(stdout: &str) -> Vec<(String, String)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("chaos: transfers="))
        .unwrap_or_else(|| panic!("no final line in:\n{stdout}"));
    line.trim_start_matches("chaos: ")
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key}= in the final line"))
}

/// Runs `seata-chaos` with `flags` (besides the TC, MySQL and database prefix) and checks its
/// final line: every invariant held, nothing is left, the kills were made.
async fn chaos_run(flags: &[&str], tc_kills: &str, rm_kills: &str) {
    let prefix = format!("chaos_it_{}", fastrand::u32(..));
    let mut cmd = Command::new(chaos_binary());
    cmd.arg("--tc-bin")
        .arg(tc_binary())
        .args(["--mysql", &server_url()])
        .args(["--db-prefix", &prefix])
        .args(flags)
        .args(["--tc-kills", tc_kills, "--rm-kills", rm_kills]);
    let ended = tokio::task::spawn_blocking(move || run_to_end(cmd, Duration::from_secs(240)))
        .await
        .expect("runner thread");
    let report = format!("stdout:\n{}\nstderr:\n{}", ended.stdout, ended.stderr);
    assert!(ended.success(), "seata-chaos failed\n{report}");
    let f = final_fields(&ended.stdout);
    assert_eq!(field(&f, "invariant"), "ok", "{report}");
    assert_eq!(field(&f, "undo_left"), "0", "{report}");
    assert_eq!(field(&f, "sessions_left"), "0", "{report}");
    assert_eq!(field(&f, "locks_left"), "0", "{report}");
    assert_eq!(field(&f, "tc_kills"), tc_kills, "{report}");
    assert_eq!(field(&f, "rm_kills"), rm_kills, "{report}");
    let n = |k: &str| field(&f, k).parse::<u64>().expect("a count");
    assert!(n("committed") > 0 && n("rolled_back") > 0, "{report}");
    assert_eq!(
        n("transfers"),
        n("committed") + n("rolled_back"),
        "every transfer ends committed or rolled back\n{report}"
    );
}

/// Every transfer picks AT, TCC or XA; the killed worker's phase two is finished by the
/// survivor or its replacement. Seed 17 once left an XA branch prepared: after a TC restart
/// its phase two reached the other worker before the owner prepared it.
#[tokio::test(flavor = "multi_thread")]
async fn money_is_conserved_while_the_tc_and_a_worker_are_killed() {
    let flags = "--duration 25 --workers 2 --concurrency 3 --rollback-percent 30 \
                 --accounts 200 --settle-timeout 90 --seed 17 --modes at,tcc,xa";
    let flags: Vec<&str> = flags.split_whitespace().collect();
    chaos_run(&flags, "2", "1").await;
}

/// Two TCs on the db store; one is killed for good, and the survivor takes its transactions
/// over after the lease.
#[tokio::test(flavor = "multi_thread")]
async fn money_is_conserved_when_one_of_two_db_store_tcs_dies() {
    let flags = "--store db --no-restart --duration 15 --workers 2 --concurrency 2 \
                 --rollback-percent 30 --accounts 200 --settle-timeout 90 --seed 5";
    let flags: Vec<&str> = flags.split_whitespace().collect();
    chaos_run(&flags, "1", "0").await;
}

// ---- logs under faults -----------------------------------------------------------------------

/// Lines of `log` that contain every one of `needles`.
fn lines_with(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// The sum of `key=N` over the lines of `log` containing `needle`.
fn sum_field(log: &str, needle: &str, key: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let at = l.find(&format!("{key}="))? + key.len() + 1;
            l[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Waits (bounded by `WAIT`) until `cond` holds for the TC's log.
async fn wait_log(tc: &seata_it::tc::TcProcess, what: &str, cond: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + seata_it::clients::WAIT;
    while !cond(&tc.log()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never logged:\n{}",
            tc.log()
        );
        // Polling the collected log; the outcome does not depend on this interval.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const RETRY_LINE: &str = "phase two not done on a resource; will retry";

#[tokio::test]
async fn retries_against_an_absent_rm_log_one_line_per_resource_not_per_branch() {
    use seata_it::clients::{begin, rollback, tm, TestRm};
    const R1: &str = "jdbc:mysql://127.0.0.1:3306/chaos_log_r1";
    const R2: &str = "jdbc:mysql://127.0.0.1:3306/chaos_log_r2";
    let tc = seata_it::tc::TcProcess::start_with(&["--store", "memory"]);
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-chaos-logs", &[R1, R2]).await;
    let mut xids = Vec::new();
    for i in 0..300 {
        let xid = begin(&tm, 600_000).await;
        let resource = if i < 200 { R1 } else { R2 };
        let b = rm.register(&xid, resource, &format!("t:{i}")).await;
        assert!(b.result.is_success(), "{:?}", b.result);
        xids.push(xid);
    }
    // The RM goes away; every rollback now fails on its branch and is retried.
    rm.client.shutdown();
    let started = std::time::Instant::now();
    for xid in &xids {
        let r = rollback(&tm, xid).await;
        assert!(r.result.is_success(), "{:?}", r.result);
    }
    // Every failure is counted in the per-resource lines: the first passes (driven by the
    // TM's requests) and two rounds of the retry job (every branch fails once per round).
    wait_log(&tc, "three rounds of failures of both resources", |log| {
        sum_field(log, &format!("{RETRY_LINE} resource_id={R1}"), "failures") >= 600
            && sum_field(log, &format!("{RETRY_LINE} resource_id={R2}"), "failures") >= 300
    })
    .await;
    let log = tc.log();
    let per_resource = lines_with(&log, &[RETRY_LINE]);
    let warn_lines = lines_with(&log, &[" WARN "]);
    eprintln!(
        "TC WARN lines {warn_lines} (retry lines {per_resource}) in {:.1} s for 300 rollbacks \
         against an absent RM",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        lines_with(&log, &["will retry", "branch_id="]),
        0,
        "no per-branch retry line:\n{log}"
    );
    assert!(
        lines_with(&log, &[RETRY_LINE, "oldest_branch=", "oldest_xid="]) == per_resource,
        "each line names the oldest branch:\n{log}"
    );
}

#[tokio::test]
async fn a_mass_timeout_is_logged_in_a_few_lines() {
    use seata_it::clients::{begin, tm, TestRm};
    const R: &str = "jdbc:mysql://127.0.0.1:3306/chaos_log_timeouts";
    let tc = seata_it::tc::TcProcess::start_with(&["--store", "memory"]);
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-chaos-logs", &[R]).await;
    for i in 0..300 {
        let xid = begin(&tm, 300).await;
        let b = rm.register(&xid, R, &format!("t:{i}")).await;
        // A transaction that timed out already refuses the branch; that is fine here.
        let _ = b;
    }
    const TIMEOUT_LINE: &str = "global transactions timed out; rolling back";
    wait_log(&tc, "300 timeouts", |log| {
        sum_field(log, TIMEOUT_LINE, "sessions") >= 300
    })
    .await;
    let log = tc.log();
    eprintln!(
        "timeout lines for 300 timed-out transactions: {}",
        lines_with(&log, &[TIMEOUT_LINE])
    );
    assert_eq!(
        lines_with(&log, &["global transaction timed out"]),
        0,
        "no line per transaction:\n{log}"
    );
}
