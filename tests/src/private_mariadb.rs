//! A MariaDB server of one test's own, for tests that crash or restart the database: the
//! shared server on 127.0.0.1:3306 serves every other test in parallel and must never be
//! stopped. The server gets a fresh data directory (`mariadb-install-db`) in a temporary
//! directory, a free port on 127.0.0.1 and its own socket; it is killed with the value.
//!
//! The binaries are found as `scripts/ensure-mariadb.sh` finds them: `mariadbd` on `PATH` or
//! in `/usr/sbin`, and `mariadb-install-db` (or the older `mysql_install_db`) on `PATH`.
//! Without them the test fails with what to install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to start or to recover after a crash.
const START_WAIT: Duration = Duration::from_secs(60);

/// Small InnoDB files and buffers: the server holds a few test tables only.
const SERVER_ARGS: &[&str] = &[
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=16M",
    "--innodb-data-file-path=ibdata1:8M:autoextend",
];

/// A running private `mariadbd`.
#[derive(Debug)]
pub struct PrivateMariaDb {
    dir: tempfile::TempDir,
    port: u16,
    server: PathBuf,
    child: Option<Child>,
    /// "ready for connections" lines in the error log before the current start.
    starts: usize,
}

impl PrivateMariaDb {
    /// Installs a data directory and starts the server; fails the test if it cannot.
    pub fn start() -> Self {
        let server = find(&["mariadbd"], &["/usr/sbin/mariadbd"]).unwrap_or_else(|| {
            panic!("mariadbd not found: install mariadb-server (scripts/ensure-mariadb.sh does)")
        });
        let install = find(&["mariadb-install-db", "mysql_install_db"], &[])
            .unwrap_or_else(|| panic!("mariadb-install-db not found: install mariadb-server"));
        let dir = tempfile::tempdir().expect("temp dir for the private MariaDB");
        let out = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .args(SERVER_ARGS)
            .output()
            .expect("runs mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut db = PrivateMariaDb {
            dir,
            port: free_port(),
            server,
            child: None,
            starts: 0,
        };
        db.run();
        db
    }

    /// `mysql://root@127.0.0.1:PORT`, without a database.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// `kill -9` of the server: a crash, as far as clients and InnoDB can tell.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory (after [`kill`]: with
    /// InnoDB's crash recovery) and waits until it accepts connections.
    ///
    /// [`kill`]: PrivateMariaDb::kill
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// The server's error log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.error_log()).unwrap_or_default()
    }

    fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let child = Command::new(&self.server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", self.error_log().display()))
            .args([
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
            ])
            .args(SERVER_ARGS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("runs mariadbd");
        self.child = Some(child);
        let until = Instant::now() + START_WAIT;
        loop {
            let ready = self.log().matches("ready for connections").count();
            if ready > self.starts {
                self.starts = ready;
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("mariadbd exited ({status}) while starting:\n{}", self.log());
            }
            assert!(
                Instant::now() < until,
                "mariadbd not ready within {START_WAIT:?}:\n{}",
                self.log()
            );
            // Polling the server's log file; the outcome does not depend on this interval.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("---- private mariadbd log (last lines) ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// The first of `names` on `PATH`, else the first of `paths` that exists.
fn find(names: &[&str], paths: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names
        .iter()
        .find_map(|n| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(n))
                .find(|p| p.is_file())
        })
        .or_else(|| {
            paths
                .iter()
                .map(Path::new)
                .find(|p| p.is_file())
                .map(Path::to_path_buf)
        })
}

/// A port nothing listens on right now (the OS picks it; the server binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
