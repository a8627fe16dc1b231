//! `seata-tc admin ...`: the command-line client of the admin API. It talks HTTP to a running
//! TC (`--url`, default the HTTP listener's default address on loopback) and prints tables, or
//! the API's JSON with `--json`. The token for actions comes from `--token`,
//! `SEATA_TC_ADMIN_TOKEN` or `--token-file`.
//!
//! Exit status: 0 done, 1 refused or failed (the API's error and what to do next on stderr),
//! 2 bad usage (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::cli_table::render;

/// `seata-tc admin` options.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Base URL of the TC's HTTP listener.
    #[arg(
        long,
        env = "SEATA_TC_ADMIN_URL",
        default_value = "http://127.0.0.1:36789"
    )]
    pub url: String,
    /// Bearer token for actions.
    #[arg(long, env = "SEATA_TC_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File whose first line is the token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// One admin command.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Transactions (Seata sessions and DTM transactions), newest first.
    List {
        /// Status, e.g. RollbackFailed or submitted (comma-separated for several).
        #[arg(long)]
        status: Option<String>,
        /// Mode: at, tcc, xa, saga, mixed, dtm-saga, dtm-msg, dtm-tcc, dtm-xa.
        #[arg(long)]
        mode: Option<String>,
        /// Application id of the TM.
        #[arg(long = "app")]
        application: Option<String>,
        /// seata or dtm.
        #[arg(long)]
        kind: Option<String>,
        /// At least this old (e.g. 90, 30s, 5m, 2h).
        #[arg(long, value_parser = seconds)]
        min_age: Option<u64>,
        /// Phase two failing (or waiting for an operator) at least this long (e.g. 1m).
        #[arg(long, value_parser = seconds)]
        stuck: Option<u64>,
        /// Rows to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Rows to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// One transaction: branches, last errors, history, audit records.
    Show {
        /// XID or DTM gid.
        id: String,
    },
    /// Row locks held.
    Locks {
        /// Only this resource id.
        #[arg(long)]
        resource: Option<String>,
        /// Only this transaction.
        #[arg(long)]
        xid: Option<String>,
    },
    /// Connected TMs and RMs.
    Clients,
    /// Audit records.
    Audit {
        /// Only this transaction.
        #[arg(long)]
        xid: Option<String>,
        /// Newest rows without --xid.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Run phase two again now (resumes a rollback an RM refused, once its data is fixed).
    Retry(ActArgs),
    /// Roll back a transaction still in phase one, or push a decided rollback on.
    Rollback(ActArgs),
    /// Push a decided commit on.
    Commit(ActArgs),
    /// Give up a branch that can never complete (releases its row locks; audited).
    GiveUp {
        /// XID.
        xid: String,
        /// Branch id.
        branch_id: i64,
        /// Why (kept in the audit record).
        #[arg(long)]
        reason: String,
        /// Your name, for the audit record.
        #[arg(long, env = "USER")]
        actor: Option<String>,
    },
    /// Delete a kept failure (RollbackFailed / TimeoutRollbackFailed); audited.
    Delete(ActArgs),
}

/// Arguments of retry, rollback, commit and delete.
#[derive(Debug, Args)]
pub struct ActArgs {
    /// XID or DTM gid.
    pub id: String,
    /// Why (kept in the audit record).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Your name, for the audit record.
    #[arg(long, env = "USER")]
    pub actor: Option<String>,
}

/// `90`, `30s`, `5m`, `2h` → seconds.
fn seconds(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90, 30s, 5m or 2h"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unit must be s, m, h or d")),
    };
    Ok(n.saturating_mul(mult))
}

/// Why a command failed, for stderr.
struct Failure {
    error: String,
    next: Option<String>,
}

impl Failure {
    fn plain(error: impl Into<String>) -> Self {
        Failure {
            error: error.into(),
            next: None,
        }
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method.clone(), &url);
        if method != Method::GET {
            let Some(token) = &self.token else {
                return Err(Failure {
                    error: "this action needs the admin token".into(),
                    next: Some("pass --token, set SEATA_TC_ADMIN_TOKEN, or --token-file".into()),
                });
            };
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| Failure {
            error: format!("cannot reach {url}: {e}"),
            next: Some(
                "is the TC running with its HTTP listener on? pass --url http://HOST:PORT".into(),
            ),
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure::plain(format!("reading the answer of {url}: {e}")))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| json!({ "error": String::from_utf8_lossy(&bytes).trim().to_owned() }),
        );
        if status.is_success() {
            return Ok(value);
        }
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut error = text("error").unwrap_or_else(|| format!("HTTP {status}"));
        if status == StatusCode::CONFLICT {
            if let Some(s) = text("status") {
                error = format!("{error} (status {s})");
            }
        }
        Err(Failure {
            error,
            next: text("next"),
        })
    }
}

fn enc(s: &str) -> String {
    // XIDs hold `:` and `.`, gids letters, digits, `-` and `_`; anything else is escaped.
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.:~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn time(ms: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn list_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|t| {
                    let status = if t["needs_operator"].as_bool() == Some(true) {
                        format!("{} (needs operator)", s(t, "status"))
                    } else {
                        s(t, "status")
                    };
                    vec![
                        s(t, "id"),
                        s(t, "mode"),
                        status,
                        s(t, "application"),
                        age(t["age_ms"].as_i64().unwrap_or(0)),
                        s(t, "branches"),
                        s(t, "failed_attempts"),
                        s(t, "last_error"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = render(
        &[
            "ID",
            "MODE",
            "STATUS",
            "APP",
            "AGE",
            "BRANCHES",
            "FAILS",
            "LAST ERROR",
        ],
        &rows,
    );
    out.push_str(&format!(
        "{} of {} (offset {})\n",
        rows.len(),
        s(v, "total"),
        s(v, "offset")
    ));
    out
}

fn show_text(v: &Value) -> String {
    let t = &v["transaction"];
    let sum = &v["summary"];
    let mut out = String::new();
    let field = |out: &mut String, k: &str, val: String| {
        if !val.is_empty() {
            out.push_str(&format!("{k:<14}{val}\n"));
        }
    };
    field(&mut out, "id", s(sum, "id"));
    field(&mut out, "kind", s(sum, "kind"));
    field(&mut out, "status", s(sum, "status"));
    field(&mut out, "mode", s(sum, "mode"));
    field(&mut out, "application", s(sum, "application"));
    field(&mut out, "name", s(sum, "name"));
    field(
        &mut out,
        "began",
        time(sum["begin_time_ms"].as_i64().unwrap_or(0)),
    );
    field(&mut out, "age", age(sum["age_ms"].as_i64().unwrap_or(0)));
    if let Some(since) = sum["retrying_since_ms"].as_i64() {
        field(&mut out, "failing since", time(since));
    }
    if sum["needs_operator"].as_bool() == Some(true) {
        field(
            &mut out,
            "needs",
            "an operator: fix the data and `admin retry`, or `admin give-up XID BRANCH --reason ...`"
                .into(),
        );
    }
    out.push('\n');
    let branches = t["branches"].as_array().cloned().unwrap_or_default();
    if s(v, "kind") == "dtm" {
        let rows: Vec<Vec<String>> = branches
            .iter()
            .map(|b| vec![s(b, "branch_id"), s(b, "op"), s(b, "status"), s(b, "url")])
            .collect();
        out.push_str(&render(&["BRANCH", "OP", "STATUS", "URL"], &rows));
    } else {
        let rows: Vec<Vec<String>> = branches
            .iter()
            .map(|b| {
                let status = if b["unretryable"].as_bool() == Some(true) {
                    format!("{} (unretryable)", s(b, "status"))
                } else {
                    s(b, "status")
                };
                vec![
                    s(b, "branch_id"),
                    s(b, "branch_type"),
                    status,
                    s(b, "resource_id"),
                    s(b, "client_id"),
                    s(b, "failed_attempts"),
                    s(b, "last_error"),
                ]
            })
            .collect();
        out.push_str(&render(
            &[
                "BRANCH",
                "TYPE",
                "STATUS",
                "RESOURCE",
                "RM",
                "FAILS",
                "LAST ERROR",
            ],
            &rows,
        ));
        // The full last errors (a dirty-rollback report is longer than a table cell).
        for b in &branches {
            let e = s(b, "last_error");
            if e.chars().count() > 60 {
                out.push_str(&format!(
                    "\nbranch {} last error:\n  {e}\n",
                    s(b, "branch_id")
                ));
            }
        }
    }
    let history = v["history"].as_array().cloned().unwrap_or_default();
    if !history.is_empty() {
        out.push_str("\nhistory\n");
        for h in &history {
            let branch = s(h, "branch_id");
            let branch = if branch.is_empty() {
                String::new()
            } else {
                format!("branch {branch}: ")
            };
            out.push_str(&format!(
                "  {}  {branch}{}\n",
                time(h["at_ms"].as_i64().unwrap_or(0)),
                s(h, "what")
            ));
        }
    }
    let audit = v["audit"].as_array().cloned().unwrap_or_default();
    if !audit.is_empty() {
        out.push_str("\naudit\n");
        out.push_str(&audit_rows(&audit));
    }
    out
}

fn audit_rows(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|a| {
            vec![
                time(a["at_ms"].as_i64().unwrap_or(0)),
                s(a, "actor"),
                s(a, "action"),
                s(a, "xid"),
                s(a, "branch_id"),
                s(a, "status"),
                s(a, "reason"),
            ]
        })
        .collect();
    render(
        &[
            "TIME", "ACTOR", "ACTION", "XID", "BRANCH", "STATUS", "REASON",
        ],
        &rows,
    )
}

fn locks_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|l| {
                    vec![
                        s(l, "resource_id"),
                        s(l, "table"),
                        s(l, "pk"),
                        s(l, "xid"),
                        s(l, "branch_id"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = render(&["RESOURCE", "TABLE", "PK", "XID", "BRANCH"], &rows);
    out.push_str(&format!("{} row locks\n", s(v, "total")));
    out
}

fn clients_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|c| {
                    let resources: Vec<String> = c["resources"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    vec![
                        s(c, "application_id"),
                        s(c, "ip"),
                        s(c, "port"),
                        s(c, "role"),
                        s(c, "transaction_service_group"),
                        resources.join(","),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = render(
        &["APPLICATION", "IP", "PORT", "ROLE", "GROUP", "RESOURCES"],
        &rows,
    );
    out.push_str(&format!("{} connections\n", s(v, "total")));
    out
}

fn done_text(v: &Value) -> String {
    let changed = if v["changed"].as_bool() == Some(true) {
        ""
    } else {
        " (no change)"
    };
    format!(
        "{} {}: {}{changed}: {}\n",
        s(v, "action"),
        s(v, "xid"),
        s(v, "status"),
        s(v, "message")
    )
}

fn token_of(args: &AdminArgs) -> Result<Option<String>, Failure> {
    if let Some(t) = &args.token {
        return Ok(Some(t.trim().to_owned()));
    }
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::plain(format!("cannot read --token-file {}: {e}", path.display()))
        })?;
        return Ok(text.lines().next().map(|l| l.trim().to_owned()));
    }
    Ok(None)
}

fn act_body(reason: &str, actor: &Option<String>) -> Value {
    json!({ "reason": reason, "actor": actor.clone().unwrap_or_default() })
}

async fn execute(args: &AdminArgs) -> Result<String, Failure> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Failure::plain(format!("cannot set up HTTP: {e}")))?;
    let client = Client {
        http,
        base: args.url.clone(),
        token: token_of(args)?,
    };
    let get = |path: String| {
        let c = &client;
        async move { c.call(Method::GET, &path, None).await }
    };
    let post = |path: String, body: Value| {
        let c = &client;
        async move { c.call(Method::POST, &path, Some(body)).await }
    };
    let (value, text): (Value, fn(&Value) -> String) = match &args.command {
        AdminCommand::List {
            status,
            mode,
            application,
            kind,
            min_age,
            stuck,
            limit,
            offset,
        } => {
            let q = query(&[
                ("status", status.clone()),
                ("mode", mode.clone()),
                ("application", application.clone()),
                ("kind", kind.clone()),
                ("min_age_s", min_age.map(|v| v.to_string())),
                ("stuck_s", stuck.map(|v| v.to_string())),
                ("limit", Some(limit.to_string())),
                ("offset", Some(offset.to_string())),
            ]);
            (get(format!("/admin/v1/transactions{q}")).await?, list_table)
        }
        AdminCommand::Show { id } => (
            get(format!("/admin/v1/transactions/{}", enc(id))).await?,
            show_text,
        ),
        AdminCommand::Locks { resource, xid } => {
            let q = query(&[("resource", resource.clone()), ("xid", xid.clone())]);
            (get(format!("/admin/v1/locks{q}")).await?, locks_table)
        }
        AdminCommand::Clients => (get("/admin/v1/clients".into()).await?, clients_table),
        AdminCommand::Audit { xid, limit } => {
            let q = query(&[("xid", xid.clone()), ("limit", Some(limit.to_string()))]);
            let v = get(format!("/admin/v1/audit{q}")).await?;
            (v, |v: &Value| {
                audit_rows(v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]))
            })
        }
        AdminCommand::Retry(a)
        | AdminCommand::Rollback(a)
        | AdminCommand::Commit(a)
        | AdminCommand::Delete(a) => {
            let action = match &args.command {
                AdminCommand::Retry(_) => "retry",
                AdminCommand::Rollback(_) => "rollback",
                AdminCommand::Commit(_) => "commit",
                _ => "delete",
            };
            let path = format!("/admin/v1/transactions/{}/{action}", enc(&a.id));
            (post(path, act_body(&a.reason, &a.actor)).await?, done_text)
        }
        AdminCommand::GiveUp {
            xid,
            branch_id,
            reason,
            actor,
        } => {
            let path = format!(
                "/admin/v1/transactions/{}/branches/{branch_id}/give-up",
                enc(xid)
            );
            (post(path, act_body(reason, actor)).await?, done_text)
        }
    };
    if args.json {
        Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
        ))
    } else {
        Ok(text(&value))
    }
}

/// Runs one admin command; returns the process exit status.
pub async fn run(args: AdminArgs) -> i32 {
    use std::io::Write;
    match execute(&args).await {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
            0
        }
        Err(f) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {}", f.error);
            if let Some(next) = f.next {
                let _ = writeln!(stderr, "next: {next}");
            }
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_escapes() {
        assert_eq!(seconds("90"), Ok(90));
        assert_eq!(seconds("5m"), Ok(300));
        assert!(seconds("5x").is_err());
        assert_eq!(enc("10.0.0.1:8091:42"), "10.0.0.1:8091:42");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(age(125_000), "2m");
    }
}
