//! Runs the tests' Python programs (`tests/py/`) with the venv's interpreter: the real DTM
//! clients nobody here wrote (`dtmcli` from PyPI, grpcio stubs), pinned in
//! `tests/py/requirements.txt` and installed into `target/pyenv` by `scripts/python-env.sh`.
//!
//! The interpreter is `SEATA_TEST_PYTHON` (`scripts/test.sh` sets it); without it the first
//! use runs `scripts/python-env.sh`, so a bare `cargo test` works too.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

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
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(python())
            .arg(&program)
            .args(&args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python().display()));
        let read = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let out = read(Box::new(child.stdout.take().expect("piped stdout")));
        let err = read(Box::new(child.stderr.take().expect("piped stderr")));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for python") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status,
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        )
    })
    .await
    .expect("python runner");
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
