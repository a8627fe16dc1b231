//! The processes a run owns: `seata-tc` ([`TcProc`]) and the workers ([`WorkerProc`]). Both are
//! killed with SIGKILL (`Child::kill`), the fault under test; the TC keeps its data directory
//! and addresses across restarts, and its stderr goes to one log file for the whole run.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::journal::{Event, Journal};

/// How long a starting TC may take to print its addresses (recovery of a large log included).
const TC_START_WAIT: Duration = Duration::from_secs(120);

/// One `seata-tc` process, restartable on the same addresses.
#[derive(Debug)]
pub struct TcProc {
    /// For messages: `tc0`, `tc1`.
    pub name: String,
    bin: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// Seata RPC address (`127.0.0.1:PORT`).
    pub addr: String,
    /// HTTP address (metrics).
    pub http: String,
    log: PathBuf,
}

impl TcProc {
    /// Starts `bin` with `args` (store flags), on free local ports, logging to `log`.
    pub fn start(name: &str, bin: &Path, args: Vec<String>, log: PathBuf) -> anyhow::Result<Self> {
        let mut tc = TcProc {
            name: name.to_owned(),
            bin: bin.to_owned(),
            args,
            child: None,
            addr: "127.0.0.1:0".into(),
            http: "127.0.0.1:0".into(),
            log,
        };
        tc.spawn()?;
        Ok(tc)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut child = Command::new(&self.bin)
            .args(&self.args)
            .args(["--listen", &self.addr, "--http-listen", &self.http])
            .args(["--grpc-listen", "off"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with `cargo build -p seata-tc`, or pass --tc-bin)",
                    self.bin.display()
                )
            })?;
        let Some(stdout) = child.stdout.take() else {
            bail!("no stdout pipe from {}", self.name);
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining so the TC never blocks on stdout.
                }
            }
        });
        let deadline = Instant::now() + TC_START_WAIT;
        let (mut addr, mut http) = (None, None);
        while addr.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("http listening on ") {
                        http = Some(a.trim().to_owned());
                    } else if let Some(a) = line.strip_prefix("listening on ") {
                        addr = Some(a.trim().to_owned());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "{} did not print its addresses within {TC_START_WAIT:?}; see {}",
                        self.name,
                        self.log.display()
                    );
                }
            }
        }
        self.addr = addr.unwrap_or_default();
        self.http = http.unwrap_or_default();
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it runs.
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it again on the same addresses and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// SIGTERM and wait (the TC then logs its final counts).
    pub fn terminate(&mut self) -> anyhow::Result<bool> {
        let Some(mut c) = self.child.take() else {
            return Ok(false);
        };
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        Ok(c.wait()?.success())
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for TcProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// This binary.
    pub exe: PathBuf,
    /// The worker flags but `--generation` and `--seed`.
    pub args: Vec<String>,
    /// Directory for the workers' stderr logs.
    pub dir: PathBuf,
    /// Base seed; each generation gets its own.
    pub seed: u64,
}

/// One worker process.
#[derive(Debug)]
pub struct WorkerProc {
    /// Its generation (unique per started process).
    pub generation: i64,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    reader: Option<JoinHandle<()>>,
}

impl WorkerProc {
    /// Starts generation `generation`; its journal lines go to `journal` (and `copy`).
    pub fn start(
        spec: &WorkerSpec,
        generation: i64,
        journal: Arc<Mutex<Journal>>,
        copy: Option<Arc<Mutex<File>>>,
    ) -> anyhow::Result<Self> {
        let log = spec.dir.join(format!("worker-{generation}.log"));
        let stderr = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let seed = spec
            .seed
            .wrapping_add(generation as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut child = Command::new(&spec.exe)
            .arg("worker")
            .args(&spec.args)
            .args(["--generation", &generation.to_string()])
            .args(["--seed", &seed.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("SEATA_CHAOS_WORKER_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("cannot start a worker process")?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            bail!("no stdout pipe from worker {generation}");
        };
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = &copy {
                    if let Ok(mut f) = f.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                }
                if let Some(e) = Event::parse(&line) {
                    if let Ok(mut j) = journal.lock() {
                        j.apply(e);
                    }
                }
            }
        });
        Ok(WorkerProc {
            generation,
            child: Some(child),
            stdin,
            reader: Some(reader),
        })
    }

    /// Asks it to stop its load (it prints `D` when its lanes are done).
    pub fn stop_load(&mut self) {
        if let Some(s) = &mut self.stdin {
            let _ = writeln!(s, "stop").and_then(|_| s.flush());
        }
    }

    /// `kill -9`, and waits until everything it printed is in the journal.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stdin = None;
        self.join_reader();
    }

    /// Closes its stdin (it exits), waits up to `limit`, then kills it.
    pub fn finish(&mut self, limit: Duration) {
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.join_reader();
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill();
    }
}
