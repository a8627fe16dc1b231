//! Shared pieces of the examples: creating the example databases (each with Seata 1.2's
//! `undo_log` table, at-mode.md 1), waiting for phase two to clean up, and logging setup.
//! The AT-mode logic itself lives in `seata-rm`; nothing here is needed to use it.
//! [`bank`] holds the `transfer` example's banks in each mode (AT, TCC, XA).

pub mod bank;

use std::time::Duration;

use anyhow::{bail, Context};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

pub use seata_rm::at::undo::UNDO_LOG_DDL;

/// Logs to stderr at `RUST_LOG` (default `warn`, so lock-conflict retries stay quiet).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Parses a server URL such as `mysql://root@127.0.0.1:3306`.
pub fn server_opts(url: &str) -> anyhow::Result<Opts> {
    Opts::from_url(url).with_context(|| format!("--mysql {url:?} is not a mysql:// URL"))
}

/// Options for database `db` on `server` with at most `max_conns` pooled connections.
pub fn db_opts(server: &Opts, db: &str, max_conns: usize) -> anyhow::Result<Opts> {
    let constraints =
        PoolConstraints::new(1, max_conns.max(1)).context("pool size must be at least 1")?;
    Ok(OptsBuilder::from_opts(server.clone())
        .db_name(Some(db))
        .pool_opts(PoolOpts::default().with_constraints(constraints))
        .into())
}

/// Drops and re-creates database `db` with an `undo_log` table, then runs `ddl` in it.
pub async fn recreate_database(server: &Opts, db: &str, ddl: &[&str]) -> anyhow::Result<()> {
    let mut admin = Conn::new(server.clone())
        .await
        .context("cannot connect to MySQL; is it running and is --mysql right?")?;
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
        .await?;
    admin.query_drop(format!("CREATE DATABASE `{db}`")).await?;
    admin.query_drop(format!("USE `{db}`")).await?;
    admin.query_drop(UNDO_LOG_DDL).await?;
    for stmt in ddl {
        admin
            .query_drop(*stmt)
            .await
            .with_context(|| format!("setting up {db}"))?;
    }
    admin.disconnect().await?;
    Ok(())
}

/// Drops database `db`.
pub async fn drop_database(server: &Opts, db: &str) -> anyhow::Result<()> {
    let mut admin = Conn::new(server.clone()).await?;
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
        .await?;
    admin.disconnect().await?;
    Ok(())
}

/// Waits until `undo_log` in `pool`'s database is empty: phase-two commits delete undo logs
/// in the background, so right after the last commit some may still be there.
pub async fn wait_undo_log_empty(pool: &Pool, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut conn = pool.get_conn().await?;
    loop {
        let left: Option<i64> = conn.query_first("SELECT COUNT(*) FROM undo_log").await?;
        match left {
            Some(0) | None => return Ok(()),
            Some(n) if tokio::time::Instant::now() >= deadline => {
                bail!("{n} undo_log rows still there after {timeout:?}")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
