//! The `transfer` example (`seata-examples`, binary `transfer`) in each of its modes against
//! the real `seata-tc` and MariaDB: AT, TCC (fenced), XA and mixed (an AT bank and a TCC
//! bank in one global transaction), with a share of the transfers rolled back on purpose and
//! others refused for lack of funds. Each run must exit 0 having found, after phase two, the
//! money across both banks unchanged and nothing left frozen, incoming, in `undo_log` or
//! prepared in `XA RECOVER` (the example checks that and prints `invariant ok:`).
//!
//! The binary is built by `cargo build --workspace --bins` (as `scripts/test.sh` does) and
//! found next to `seata-tc`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use seata_it::process::run_to_end;
use seata_it::tc::{tc_binary, TcProcess};

/// A run that is not over by then hangs: kill it and show its output.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

fn transfer_binary() -> PathBuf {
    tc_binary().with_file_name("transfer")
}

/// What a finished run printed.
struct Run {
    stdout: String,
    stderr: String,
}

impl Run {
    /// `key=value` fields of the line starting with `prefix`.
    fn fields(&self, prefix: &str) -> Vec<(String, String)> {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line:\n{}", self.stdout));
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// A number of the `committed=…` line.
    fn count(&self, key: &str) -> usize {
        self.fields("committed=")
            .into_iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in the counts:\n{}", self.stdout))
    }

    fn has_line(&self, prefix: &str) -> bool {
        self.stdout.lines().any(|l| l.starts_with(prefix))
    }
}

/// Runs `transfer --mode <mode>` with small, fast settings against a fresh TC (memory store);
/// panics unless it exits 0.
fn run_transfer(mode: &str) -> Run {
    let tc = TcProcess::start_with(&["--store", "memory"]);
    let bin = transfer_binary();
    let prefix = format!("seata_it_xfer_{mode}_{}", std::process::id());
    let mysql = seata_it::mysql::server_url();
    let mut cmd = Command::new(&bin);
    cmd.args(["--tc", tc.addr(), "--mysql", &mysql, "--mode", mode])
        .args([
            "--db-prefix",
            &prefix,
            "--workers",
            "4",
            "--transfers",
            "40",
        ])
        .args([
            "--accounts",
            "10",
            "--opening",
            "100",
            "--fail-percent",
            "25",
        ])
        .args(["--settle-secs", "90"])
        .env("RUST_BACKTRACE", "0");
    let ended = run_to_end(cmd, RUN_DEADLINE);
    let status = ended.status;
    let run = Run {
        stdout: ended.stdout,
        stderr: ended.stderr,
    };
    match status {
        Some(s) if s.success() => run,
        other => panic!(
            "transfer --mode {mode} ended with {other:?}\nstdout:\n{}\nstderr:\n{}\nTC log:\n{}",
            run.stdout,
            run.stderr,
            tc.log()
        ),
    }
}

/// The checks every mode shares: the money is conserved (the example's own check), some
/// transfers committed and some were rolled back, and no fence row is left `tried`.
fn assert_conserved(run: &Run, mode: &str, banks: &str) {
    let summary = format!("mode={mode} banks={banks} ");
    assert!(
        run.has_line(&summary),
        "no `{summary}` line\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.has_line("invariant ok: total 2000 unchanged"),
        "money not conserved\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.count("committed") > 0,
        "nothing committed:\n{}",
        run.stdout
    );
    assert!(
        run.count("rolled_back_overdrawn") + run.count("rolled_back_injected") > 0,
        "nothing rolled back on purpose:\n{}",
        run.stdout
    );
    for line in run.stdout.lines().filter(|l| l.starts_with("fence ")) {
        assert!(line.contains(" tried=0 "), "fence row left tried: {line}");
    }
}

#[test]
fn transfer_at_mode_conserves_money() {
    let run = run_transfer("at");
    assert_conserved(&run, "at", "AT+AT");
}

#[test]
fn transfer_tcc_mode_conserves_money() {
    let run = run_transfer("tcc");
    assert_conserved(&run, "tcc", "TCC+TCC");
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("fence "))
            .count(),
        2,
        "one fence summary per TCC bank:\n{}",
        run.stdout
    );
}

#[test]
fn transfer_xa_mode_conserves_money() {
    let run = run_transfer("xa");
    assert_conserved(&run, "xa", "XA+XA");
}

#[test]
fn transfer_mixed_at_and_tcc_conserves_money() {
    let run = run_transfer("mixed");
    assert_conserved(&run, "mixed", "AT+TCC");
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("fence "))
            .count(),
        1,
        "one fence summary, for the TCC bank:\n{}",
        run.stdout
    );
}
