//! Runs the real `seata-tc` binary for a test: on `127.0.0.1:0` with its own data directory,
//! the bound address read from its first stdout line (no port races), its log kept for failure
//! messages, killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Where the `seata-tc` binary is: `SEATA_TC_BIN`, else the workspace's target directory
/// (`CARGO_TARGET_DIR` or `target/`), debug profile. `scripts/test.sh` builds it first.
pub fn tc_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SEATA_TC_BIN") {
        return bin.into();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    target.join("debug").join("seata-tc")
}

/// A running `seata-tc`.
#[derive(Debug)]
pub struct TcProcess {
    child: Option<Child>,
    addr: String,
    data_dir: tempfile::TempDir,
    extra_args: Vec<String>,
    log: Arc<Mutex<String>>,
}

impl TcProcess {
    /// Starts a TC with default settings (the file store, in a temporary data directory).
    pub fn start() -> Self {
        TcProcess::start_with(&[])
    }

    /// Starts a TC with extra flags (e.g. `["--config", path]`).
    pub fn start_with(args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let log = Arc::new(Mutex::new(String::new()));
        let (child, addr) = spawn(&data_dir, "127.0.0.1:0", &extra_args, &log);
        TcProcess {
            child: Some(child),
            addr,
            data_dir,
            extra_args,
            log,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The data directory (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Everything the TC logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills (if running) and starts again on the same address and data directory.
    pub fn restart(&mut self) {
        self.kill();
        let (child, addr) = spawn(&self.data_dir, &self.addr, &self.extra_args, &self.log);
        assert_eq!(addr, self.addr, "restarted TC must keep its address");
        self.child = Some(child);
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for TcProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- seata-tc log ({}) ----\n{}", self.addr, self.log());
        }
    }
}

fn spawn(
    data_dir: &tempfile::TempDir,
    listen: &str,
    extra: &[String],
    log: &Arc<Mutex<String>>,
) -> (Child, String) {
    let bin = tc_binary();
    let mut child = Command::new(&bin)
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(extra)
        .env("RUST_LOG", std::env::var("SEATA_TC_LOG").unwrap_or_else(|_| "info".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); build it with `cargo build -p seata-tc` or set SEATA_TC_BIN",
                bin.display()
            )
        });
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut l) = sink.lock() {
                l.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = match lines.next() {
        Some(Ok(line)) => line,
        _ => {
            let _ = child.wait();
            std::thread::sleep(std::time::Duration::from_millis(100));
            panic!(
                "seata-tc exited before printing its address; log:\n{}",
                log.lock().map(|l| l.clone()).unwrap_or_default()
            );
        }
    };
    // Keep draining stdout so the TC never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from seata-tc: {first:?}"))
        .to_owned();
    (child, addr)
}
