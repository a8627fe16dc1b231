//! The `transfer` example (`seata-examples`, binary `transfer`) in each of its modes against
//! the real `seata-tc` and MariaDB: AT, TCC (fenced), XA and mixed (an AT bank and a TCC
//! bank in one global transaction), with a share of the transfers rolled back on purpose and
//! others refused for lack of funds. Each run must exit 0 having found, after phase two, the
//! money across both banks unchanged and nothing left frozen, incoming, in `undo_log` or
//! prepared in `XA RECOVER` (the example checks that and prints `invariant ok:`).
//!
//! The binary is built by `cargo build --workspace --bins` (as `scripts/test.sh` does) and
//! found next to `seata-tc`.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let mut child = Command::new(&bin)
        .args(["--tc", tc.addr(), "--mysql", &mysql, "--mode", mode])
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
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); build it with `cargo build --workspace --bins`",
                bin.display()
            )
        });
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let err = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + RUN_DEADLINE;
    // Polls the child (no timing is asserted): the deadline only turns a hang into a failure.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for transfer") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let run = Run {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
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
