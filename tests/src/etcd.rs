//! A real etcd per test (Debian's `etcd-server`, found through `SEATA_TEST_ETCD` or
//! `scripts/etcd-env.sh`, which installs it when missing) on free ports with a temporary data
//! directory, killed on drop; with a JSON-gateway reader and writer that do not depend on the
//! code under test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// How long etcd may take to become healthy.
const WAIT: Duration = Duration::from_secs(40);
/// How often its health is asked meanwhile.
const POLL: Duration = Duration::from_millis(25);

/// The etcd binary: `SEATA_TEST_ETCD`, else what `scripts/etcd-env.sh` prints (it installs
/// Debian's etcd-server when missing).
fn etcd_binary() -> &'static Path {
    static ETCD: OnceLock<PathBuf> = OnceLock::new();
    ETCD.get_or_init(|| {
        if let Some(p) = std::env::var_os("SEATA_TEST_ETCD").filter(|p| !p.is_empty()) {
            return p.into();
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("scripts")
            .join("etcd-env.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
        PathBuf::from(line.expect("etcd-env.sh printed no path").trim())
    })
}

/// A free port on 127.0.0.1 (bound, then released for etcd, which cannot take port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An etcd of its own: free ports, a temporary data directory, killed on drop.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    client: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    pub async fn start() -> Etcd {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        let mut last = String::new();
        // A port picked here may be taken before etcd binds it: then start again.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("etcd data dir");
            let (client, peer) = (free_port(), free_port());
            let client = format!("127.0.0.1:{client}");
            let peer = format!("http://127.0.0.1:{peer}");
            let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
            let mut child = Command::new(etcd_binary())
                .arg("--name=it")
                .arg(format!("--data-dir={}", dir.path().join("data").display()))
                .arg(format!("--listen-client-urls=http://{client}"))
                .arg(format!("--advertise-client-urls=http://{client}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster=it={peer}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", etcd_binary().display()));
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "etcd exited ({status}): {}",
                        std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default()
                    );
                    break;
                }
                let health = http.get(format!("http://{client}/health")).send().await;
                if let Ok(r) = health {
                    if r.status().is_success() {
                        return Etcd {
                            child,
                            client,
                            http,
                            _dir: dir,
                        };
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = "etcd did not become healthy".into();
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }
        panic!("cannot start etcd: {last}");
    }

    /// `host:port` of its client URL.
    pub fn addr(&self) -> &str {
        &self.client
    }

    /// `(key, value)` of every key under `prefix`, through etcd's JSON gateway (independent of
    /// the TC's gRPC client).
    pub async fn prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let body = json!({"key": b64.encode(prefix), "range_end": b64.encode(&end)});
        let v: Value = self
            .http
            .post(format!("http://{}/v3/kv/range", self.client))
            .json(&body)
            .send()
            .await
            .expect("etcd range")
            .json()
            .await
            .expect("etcd range answer");
        let text = |f: &Value| {
            String::from_utf8(
                b64.decode(f.as_str().unwrap_or_default())
                    .unwrap_or_default(),
            )
            .unwrap_or_default()
        };
        v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| (text(&kv["key"]), text(&kv["value"])))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Puts `key` = `value` (as a service registering itself would).
    pub async fn put(&self, key: &str, value: &str) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let r = self
            .http
            .post(format!("http://{}/v3/kv/put", self.client))
            .json(&json!({"key": b64.encode(key), "value": b64.encode(value)}))
            .send()
            .await
            .expect("etcd put");
        assert!(r.status().is_success(), "etcd put: {}", r.status());
    }
}
