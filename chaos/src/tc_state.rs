//! What the TC still holds: open sessions and row locks. The file store's TC publishes them as
//! the gauges `seata_sessions_open{status}` and `seata_row_locks_held` on `GET /metrics`; with
//! `--store db` the shared tables (`global_table`, `lock_table`) are the truth, since each TC's
//! gauges only count the sessions it has loaded.

use std::time::Duration;

use anyhow::Context;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

/// Open sessions and held row locks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Sessions of any status.
    pub sessions: u64,
    /// Row locks.
    pub locks: u64,
}

/// Reads the gauges from `http` (`IP:PORT`); `Ok(None)` when this TC build has no such gauges.
pub async fn from_metrics(http: &str) -> anyhow::Result<Option<Held>> {
    let body = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .with_context(|| format!("GET http://{http}/metrics"))?
        .text()
        .await?;
    Ok(parse_metrics(&body))
}

/// Sums `seata_sessions_open` over its labels and reads `seata_row_locks_held`.
pub fn parse_metrics(body: &str) -> Option<Held> {
    let mut sessions = None;
    let mut locks = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let metric = name.split('{').next().unwrap_or(name);
        match metric {
            "seata_sessions_open" => *sessions.get_or_insert(0.0) += v,
            "seata_row_locks_held" => *locks.get_or_insert(0.0) += v,
            _ => {}
        }
    }
    Some(Held {
        sessions: sessions? as u64,
        locks: locks? as u64,
    })
}

/// Counts rows of the db store's tables in database `db`.
pub async fn from_db(server: &Opts, db: &str) -> anyhow::Result<Held> {
    let mut c = Conn::new(crate::bank::db_opts(server, db, 1)?).await?;
    let sessions: Option<i64> = c.query_first("SELECT COUNT(*) FROM global_table").await?;
    let locks: Option<i64> = c.query_first("SELECT COUNT(*) FROM lock_table").await?;
    c.disconnect().await?;
    Ok(Held {
        sessions: sessions.unwrap_or(0).max(0) as u64,
        locks: locks.unwrap_or(0).max(0) as u64,
    })
}

/// From a TC's log: the counts of its last `coordinator stopped` line (printed at SIGTERM).
/// The fallback for a TC build without the gauges.
pub fn from_shutdown_log(log: &str) -> Option<Held> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("coordinator stopped"))?;
    let field = |name: &str| -> Option<u64> {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some(Held {
        sessions: field("sessions")?,
        locks: field("row_locks")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_sessions_over_statuses() {
        let body = "# HELP x\nseata_sessions_open{status=\"Begin\"} 3\n\
                    seata_sessions_open{status=\"Committing\"} 1\nseata_row_locks_held 7\n";
        assert_eq!(
            parse_metrics(body),
            Some(Held {
                sessions: 4,
                locks: 7
            })
        );
        assert_eq!(parse_metrics("seata_row_locks_held 7\n"), None);
    }

    #[test]
    fn reads_the_shutdown_line() {
        let log = "2026 INFO seata_tc::coordinator: coordinator stopped sessions=2 row_locks=5\n";
        assert_eq!(
            from_shutdown_log(log),
            Some(Held {
                sessions: 2,
                locks: 5
            })
        );
    }
}
