//! The chaos run, short: `seata-chaos` (built into this package as `seata-chaos-it`, so it is
//! never stale) drives AT transfers from two worker processes against the real TC on the file
//! store, kills the TC twice and a worker once under load, and must end with every invariant
//! holding (see `chaos/src/check.rs`).

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

#[tokio::test(flavor = "multi_thread")]
async fn money_is_conserved_while_the_tc_and_a_worker_are_killed() {
    let prefix = format!("chaos_it_{}", fastrand::u32(..));
    let mut cmd = Command::new(chaos_binary());
    cmd.arg("--tc-bin")
        .arg(tc_binary())
        .args(["--mysql", &server_url()])
        .args(["--db-prefix", &prefix])
        .args(["--duration", "25", "--workers", "2", "--concurrency", "3"])
        .args([
            "--tc-kills",
            "2",
            "--rm-kills",
            "1",
            "--rollback-percent",
            "30",
        ])
        .args([
            "--accounts",
            "200",
            "--settle-timeout",
            "90",
            "--seed",
            "17",
        ]);
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
    assert_eq!(field(&f, "tc_kills"), "2", "{report}");
    assert_eq!(field(&f, "rm_kills"), "1", "{report}");
    let n = |k: &str| field(&f, k).parse::<u64>().expect("a count");
    assert!(n("committed") > 0 && n("rolled_back") > 0, "{report}");
    assert_eq!(
        n("transfers"),
        n("committed") + n("rolled_back"),
        "every transfer ends committed or rolled back\n{report}"
    );
}
