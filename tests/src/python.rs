//! Runs the tests' Python programs (`tests/py/`) with the venv's interpreter: the real DTM
//! clients nobody here wrote (`dtmcli` from PyPI, grpcio stubs), pinned in
//! `tests/py/requirements.txt` and installed into `target/pyenv` by `scripts/python-env.sh`.
//!
//! The interpreter is `SEATA_TEST_PYTHON` (`scripts/test.sh` sets it); without it the first
//! use runs `scripts/python-env.sh`, so a bare `cargo test` works too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::process::run_to_end;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python: `SEATA_TEST_PYTHON`, else what `scripts/python-env.sh` prints last
/// (it creates the venv on first use).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("SEATA_TEST_PYTHON").filter(|p| !p.is_empty()) {
            return p.into();
        }
        let script = workspace().join("scripts").join("python-env.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed ({}):\n{}\n{stdout}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let path = stdout.lines().rev().find(|l| !l.trim().is_empty());
        PathBuf::from(path.expect("python-env.sh printed no python path").trim())
    })
}

/// Runs `tests/py/<script> ARGS…` to completion (killed after `limit`) and returns the JSON
/// line it printed last; panics with its output when it fails, hangs or prints no JSON.
pub async fn run_py(script: &str, args: &[&str], limit: Duration) -> Value {
    let program = workspace().join("tests").join("py").join(script);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let what = format!("{script} {}", args.join(" "));
    let ended = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(python());
        cmd.arg(&program)
            .args(&args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1");
        run_to_end(cmd, limit)
    })
    .await
    .expect("python runner");
    let (status, stdout, stderr) = (ended.status, ended.stdout, ended.stderr);
    let Some(status) = status else {
        panic!("{what} did not finish within {limit:?}; stdout:\n{stdout}\nstderr:\n{stderr}");
    };
    assert!(
        status.success(),
        "{what} failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(line.unwrap_or_default())
        .unwrap_or_else(|e| panic!("{what} printed no JSON line ({e}); stdout:\n{stdout}"))
}
