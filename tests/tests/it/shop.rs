//! The multi-service shop example (`seata-examples`, binary `shop`) against the real `seata-tc`
//! and MariaDB: each mode, with a step refusing a share of the orders and slow handlers, ends
//! with stock, orders and money consistent; and a saga run whose `stock` service is stopped
//! before the first order and started again later ends consistent too, every order committed,
//! because the coordinator retries the branches it could not reach. The gRPC flavour
//! (`--mode grpc-saga`) finds a TC registered in a test etcd, as a go-zero service would.
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

fn shop_binary() -> PathBuf {
    tc_binary().with_file_name("shop")
}

/// What a finished run printed.
struct Run {
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `mode=<mode> orders=…` summary line's `key=value` fields.
    fn summary(&self, mode: &str) -> Vec<(String, String)> {
        let prefix = format!("mode={mode} orders=");
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no summary line for {mode}:\n{}", self.stdout));
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// A number of the summary line.
    fn count(&self, mode: &str, key: &str) -> usize {
        self.summary(mode)
            .into_iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in the {mode} summary:\n{}", self.stdout))
    }

    fn assert_consistent(&self, mode: &str) {
        let line = format!("consistency ok after mode={mode}:");
        assert!(
            self.stdout.lines().any(|l| l.starts_with(&line)),
            "no `{line}` line\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs the shop with small, fast settings plus `args` against `tc`; panics unless it exits 0.
fn run_shop(tc: &TcProcess, tag: &str, args: &[&str]) -> Run {
    let bin = shop_binary();
    let prefix = format!("seata_it_shop_{tag}_{}", std::process::id());
    let dtm = tc.dtm_url();
    let mysql = seata_it::mysql::server_url();
    let mut cmd = Command::new(&bin);
    cmd.args(["--tc", tc.addr(), "--dtm", &dtm, "--mysql", &mysql])
        .args([
            "--db-prefix",
            &prefix,
            "--orders",
            "24",
            "--concurrency",
            "4",
        ])
        .args(["--users", "8", "--skus", "8", "--settle-secs", "90"])
        .args(args)
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
            "shop {args:?} ended {other:?} (None: still running after {RUN_DEADLINE:?})\n\
             stdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        ),
    }
}

fn tc() -> TcProcess {
    TcProcess::start_with(&["--store", "memory"])
}

#[test]
fn shop_saga_with_refusals_ends_consistent() {
    let tc = tc();
    let run = run_shop(
        &tc,
        "saga",
        &[
            "--mode",
            "saga",
            "--fail-step",
            "stock",
            "--fail-percent",
            "30",
        ],
    );
    run.assert_consistent("saga");
    assert!(run.count("saga", "failed") > 0, "{}", run.stdout);
    assert!(run.count("saga", "ok") > 0, "{}", run.stdout);
}

#[test]
fn shop_tcc_with_refusals_and_slow_handlers_ends_consistent() {
    let tc = tc();
    let run = run_shop(
        &tc,
        "tcc",
        &[
            "--mode",
            "tcc",
            "--fail-step",
            "account",
            "--fail-percent",
            "30",
            "--slow-ms",
            "5",
        ],
    );
    run.assert_consistent("tcc");
    assert!(run.count("tcc", "failed") > 0, "{}", run.stdout);
    assert!(run.count("tcc", "ok") > 0, "{}", run.stdout);
}

#[test]
fn shop_at_with_refusals_ends_consistent() {
    let tc = tc();
    let run = run_shop(
        &tc,
        "at",
        &[
            "--mode",
            "at",
            "--fail-step",
            "stock",
            "--fail-percent",
            "30",
            "--slow-ms",
            "2",
        ],
    );
    run.assert_consistent("at");
    assert!(run.count("at", "failed") > 0, "{}", run.stdout);
}

#[test]
fn shop_saga_survives_stock_service_down_and_restarted() {
    let tc = tc();
    let run = run_shop(
        &tc,
        "down",
        &["--mode", "saga", "--down", "stock", "--down-secs", "2"],
    );
    run.assert_consistent("saga");
    assert!(run.stdout.contains("stock was down for"), "{}", run.stdout);
    // Orders answered while stock was unreachable were still undecided (the coordinator
    // retries a branch it cannot reach) ...
    assert!(run.count("saga", "answered_pending") > 0, "{}", run.stdout);
    // ... and with nothing refused, every one of them committed once stock was back.
    assert_eq!(run.count("saga", "failed"), 0, "{}", run.stdout);
    assert_eq!(run.count("saga", "ok"), 24, "{}", run.stdout);
}

use seata_it::etcd;

#[tokio::test]
async fn shop_grpc_saga_finds_the_tc_through_etcd_and_ends_consistent() {
    let etcd = etcd::Etcd::start().await;
    let tc = TcProcess::start_with(&[
        "--store",
        "memory",
        "--etcd",
        etcd.addr(),
        "--etcd-key",
        "dtmservice",
    ]);
    let dtm_grpc = format!("etcd://{}/dtmservice", etcd.addr());
    let run = tokio::task::spawn_blocking(move || {
        run_shop(
            &tc,
            "grpc",
            &[
                "--mode",
                "grpc-saga",
                "--dtm-grpc",
                &dtm_grpc,
                "--fail-step",
                "stock",
                "--fail-percent",
                "30",
            ],
        )
    })
    .await
    .expect("the shop run");
    run.assert_consistent("grpc-saga");
    // Refusals answered `Aborted` FAILURE and were compensated; the rest committed.
    assert!(run.count("grpc-saga", "failed") > 0, "{}", run.stdout);
    assert!(run.count("grpc-saga", "ok") > 0, "{}", run.stdout);
    assert_eq!(run.count("grpc-saga", "unknown"), 0, "{}", run.stdout);
}

/// `docs/guide.md` promises that each snippet is an excerpt of a compiled file: every block
/// marked `<!-- excerpt of PATH -->` must be made of PATH's lines, in order (lines may be left
/// out, none changed).
#[test]
fn guide_snippets_are_excerpts_of_compiled_files() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/guide.md")).expect("docs/guide.md");
    let mut checked = 0;
    let mut rest = guide.as_str();
    while let Some(at) = rest.find("<!-- excerpt of ") {
        rest = &rest[at + "<!-- excerpt of ".len()..];
        let (path, after) = rest
            .split_once(" -->\n```rust\n")
            .expect("marker, then a rust block");
        let (block, after) = after.split_once("\n```").expect("the block ends");
        rest = after;
        let source = std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|e| panic!("guide cites {path}: {e}"));
        let mut lines = source.lines();
        for wanted in block.lines() {
            assert!(
                lines.any(|l| l == wanted),
                "docs/guide.md: this line of an excerpt of {path} is not there (in order):\n{wanted}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} excerpts found in docs/guide.md"
    );
}
