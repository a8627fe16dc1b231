//! Runs the real `seata-tc` binary for a test: on `127.0.0.1:0` with its own data directory,
//! the bound addresses read from its stdout (`listening on IP:PORT` for the Seata port, then
//! `http listening on IP:PORT` for the DTM HTTP API and `grpc listening on IP:PORT` for DTM's
//! gRPC API), so there are no port races. Its log is kept for failure messages, and it is killed
//! on drop.
//!
//! The HTTP and gRPC listeners are put on `127.0.0.1:0` too unless the test passes its own
//! `--http-listen` / `--grpc-listen`: the TC's defaults (`0.0.0.0:36789`, `0.0.0.0:36790`) would
//! make parallel tests collide. A restart keeps every address.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a starting TC may take to print its other addresses after its first line.
const LATER_LINES_WAIT: Duration = Duration::from_secs(60);

const SEATA_LINE: &str = "listening on ";

/// An optional listener of the TC: its flag and the stdout line announcing its address.
#[derive(Debug, Clone, Copy)]
struct Extra {
    flag: &'static str,
    line: &'static str,
}

/// The optional listeners, in the order the TC prints them.
const EXTRAS: [Extra; 2] = [HTTP, GRPC];
const HTTP: Extra = Extra {
    flag: "--http-listen",
    line: "http listening on ",
};
const GRPC: Extra = Extra {
    flag: "--grpc-listen",
    line: "grpc listening on ",
};

/// Where the `seata-tc` binary is: `SEATA_TC_BIN`, else `seata-tc-it`, the TC's main built
/// by this package (cargo builds it before running the integration tests, so it is never
/// stale) next to the test executable's directory, else the workspace's target directory
/// (`CARGO_TARGET_DIR` or `target/`), debug profile.
pub fn tc_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SEATA_TC_BIN") {
        return bin.into();
    }
    // The test executable is `<target>/<profile>/deps/it-<hash>`.
    let built = std::env::current_exe().ok().and_then(|exe| {
        let bin = exe.parent()?.parent()?.join("seata-tc-it");
        bin.exists().then_some(bin)
    });
    if let Some(bin) = built {
        return bin;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    target.join("debug").join("seata-tc")
}

/// Whether the binary has `flag`. A build from before a listener existed must not be given its
/// flag (it would refuse to start); the tests that do not need it keep running against such a
/// build. `--help` is asked once per test process.
fn binary_has(flag: &str) -> bool {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| {
        Command::new(tc_binary())
            .arg("--help")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    })
    .contains(flag)
}

/// A running `seata-tc`.
#[derive(Debug)]
pub struct TcProcess {
    child: Option<Child>,
    addr: String,
    /// Per entry of [`EXTRAS`]: the bound address, if that listener is on.
    extra_addrs: Vec<Option<String>>,
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
        TcProcess::start_in(tempfile::tempdir().expect("temp data dir"), args)
    }

    /// Starts a TC with extra flags on `data_dir` (e.g. a directory on a small file system).
    pub fn start_in(data_dir: tempfile::TempDir, args: &[&str]) -> Self {
        let extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let log = Arc::new(Mutex::new(String::new()));
        let binds: Vec<Option<String>> = EXTRAS
            .iter()
            .map(|e| {
                (flag_value(&extra_args, e.flag).is_none() && binary_has(e.flag))
                    .then(|| "127.0.0.1:0".to_owned())
            })
            .collect();
        let (child, addr, extra_addrs) = spawn(&data_dir, "127.0.0.1:0", &binds, &extra_args, &log);
        TcProcess {
            child: Some(child),
            addr,
            extra_addrs,
            data_dir,
            extra_args,
            log,
        }
    }

    /// `127.0.0.1:PORT`, the Seata RPC port.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `IP:PORT` of the DTM HTTP API. Panics if this TC printed none.
    pub fn http_addr(&self) -> &str {
        self.extra_addr(0)
    }

    /// `http://IP:PORT/api/dtmsvr`, the base of DTM's endpoints (without a trailing `/`).
    pub fn dtm_url(&self) -> String {
        format!("http://{}/api/dtmsvr", self.http_addr())
    }

    /// `IP:PORT` of DTM's gRPC API. Panics if this TC printed none.
    pub fn grpc_addr(&self) -> &str {
        self.extra_addr(1)
    }

    fn extra_addr(&self, i: usize) -> &str {
        let e = EXTRAS[i];
        self.extra_addrs[i].as_deref().unwrap_or_else(|| {
            panic!(
                "seata-tc at {} printed no `{}...` line: it is off (`{} off`), or this build \
                 lacks it (rebuild with `cargo build -p seata-tc`)",
                self.addr, e.line, e.flag
            )
        })
    }

    /// The data directory (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Everything the TC logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills (if running) and starts again on the same addresses and data directory.
    pub fn restart(&mut self) {
        self.kill();
        // Every address is kept like the Seata one: a caller's `--http-listen` (maybe port 0)
        // gives way to the address the first run bound.
        let mut extra = self.extra_args.clone();
        for (e, bound) in EXTRAS.iter().zip(&self.extra_addrs) {
            if bound.is_some() {
                extra = without_flag(&extra, e.flag);
            }
        }
        let (child, addr, extra_addrs) = spawn(
            &self.data_dir,
            &self.addr,
            &self.extra_addrs,
            &extra,
            &self.log,
        );
        self.child = Some(child);
        assert_eq!(addr, self.addr, "restarted TC must keep its address");
        assert_eq!(
            extra_addrs, self.extra_addrs,
            "restarted TC must keep its HTTP/gRPC addresses"
        );
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

/// The value of `flag X` or `flag=X` among the caller's flags.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(&prefix)
        }
    })
}

/// The flags without `flag` and its value.
fn without_flag(args: &[String], flag: &str) -> Vec<String> {
    let prefix = format!("{flag}=");
    let mut out = Vec::with_capacity(args.len());
    let mut skip_value = false;
    for a in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if a == flag {
            skip_value = true;
        } else if !a.starts_with(&prefix) {
            out.push(a.clone());
        }
    }
    out
}

/// Starts the binary with `binds[i]` for [`EXTRAS`]`[i]` where given; returns it with its
/// Seata address and the address of every optional listener that is on (asked for here or by
/// the caller's own flag, and not `off`).
fn spawn(
    data_dir: &tempfile::TempDir,
    listen: &str,
    binds: &[Option<String>],
    extra: &[String],
    log: &Arc<Mutex<String>>,
) -> (Child, String, Vec<Option<String>>) {
    let bin = tc_binary();
    let mut cmd = Command::new(&bin);
    cmd.arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(data_dir.path());
    for (e, bind) in EXTRAS.iter().zip(binds) {
        if let Some(bind) = bind {
            cmd.arg(e.flag).arg(bind);
        }
    }
    let expected: Vec<bool> = EXTRAS
        .iter()
        .zip(binds)
        .map(|(e, bind)| {
            bind.is_some()
                || flag_value(extra, e.flag).is_some_and(|v| !v.eq_ignore_ascii_case("off"))
        })
        .collect();
    let mut child = cmd
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
    let mut stderr_copier = Some(std::thread::spawn(move || {
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
    }));
    // A thread reads stdout to its end (so the TC never blocks on a full pipe) and hands the
    // lines over, which lets the later lines be awaited with a deadline.
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The receiver is gone after start-up; the rest is only drained.
            let _ = tx.send(line);
        }
    });
    let mut dead =
        |child: &mut Child, what: &str| -> ! { fail(child, &mut stderr_copier, log, what) };
    let mut addr = None;
    let mut addrs: Vec<Option<String>> = vec![None; EXTRAS.len()];
    let wanted = 1 + expected.iter().filter(|e| **e).count();
    for n in 0..wanted {
        // The first line may take long (a db store connects first); the others follow it.
        let line = if n == 0 {
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(LATER_LINES_WAIT)
        };
        let line = match line {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                dead(&mut child, "exited before printing its addresses")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => dead(
                &mut child,
                &format!("printed {n} address line(s) of {wanted} within {LATER_LINES_WAIT:?}"),
            ),
        };
        // The optional listeners' prefixes end with the Seata one: try them first.
        match EXTRAS.iter().position(|e| line.starts_with(e.line)) {
            Some(i) if expected[i] => addrs[i] = Some(line[EXTRAS[i].line.len()..].to_owned()),
            Some(_) => dead(
                &mut child,
                &format!("printed {line:?}, a listener that is off"),
            ),
            None => match line.strip_prefix(SEATA_LINE) {
                Some(a) => addr = Some(a.to_owned()),
                None => dead(&mut child, &format!("printed an unexpected line {line:?}")),
            },
        }
    }
    let Some(addr) = addr else {
        dead(&mut child, "printed no `listening on ...` line")
    };
    (child, addr, addrs)
}

/// Kills the TC after a failed start-up and panics with its log.
fn fail(
    child: &mut Child,
    stderr_copier: &mut Option<JoinHandle<()>>,
    log: &Arc<Mutex<String>>,
    what: &str,
) -> ! {
    let _ = child.kill();
    let _ = child.wait();
    // The copier ends with the process's stderr: join it so the log is complete.
    if let Some(copier) = stderr_copier.take() {
        let _ = copier.join();
    }
    panic!(
        "seata-tc {what}; log:\n{}",
        log.lock().map(|l| l.clone()).unwrap_or_default()
    );
}
