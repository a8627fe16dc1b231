//! [`DataSourceProxy`]: one AT resource, a `mysql_async::Pool` plus what AT mode keeps per
//! database (resource id, table metadata cache, undo-log table, TC link, settings).

use std::sync::Arc;

use dashmap::DashSet;
use mysql_async::{Conn, Opts, Pool};

use super::meta_cache::TableMetaCache;
use super::mysql_session::current_db;
use super::undo_log_table::UndoLogTable;
use crate::at::config::AtConfig;
use crate::at::model::undo_json::UndoCodec;
use crate::at::tc_link::TcLink;
use crate::error::RmError;

/// The resource id Java Seata gives a MySQL data source: its JDBC URL without parameters,
/// `jdbc:mysql://host:port/db` (at-mode.md 5.4). Both sides must spell it the same way to
/// share TC row locks, so use the host string the Java services use.
pub fn resource_id_of(opts: &Opts) -> String {
    format!(
        "jdbc:mysql://{}:{}/{}",
        opts.ip_or_hostname(),
        opts.tcp_port(),
        opts.db_name().unwrap_or_default()
    )
}

pub(crate) struct DataSource {
    pub(crate) pool: Pool,
    pub(crate) resource_id: String,
    pub(crate) meta: TableMetaCache,
    pub(crate) undo_table: UndoLogTable,
    pub(crate) codec: UndoCodec,
    pub(crate) tc: Arc<dyn TcLink>,
    pub(crate) config: AtConfig,
    /// The database a new session starts in (`Opts::db_name`); `None` when the options' setup
    /// statements may select another, so it is always asked for.
    pub(crate) default_db: Option<String>,
    default_db_trusted: bool,
    /// Ids of pooled connections last seen in another database than `default_db` (or in an
    /// unknown one): the pool's session reset keeps the current database.
    pub(crate) moved_sessions: DashSet<u32>,
}

impl DataSource {
    /// The current database of `conn`, a connection taken from the pool, without asking the
    /// server when the configured database can be trusted; `None` when it must be asked.
    pub(crate) fn assumed_db(&self, conn: &Conn) -> Option<Option<String>> {
        (self.default_db_trusted && !self.moved_sessions.contains(&conn.id()))
            .then(|| self.default_db.clone())
    }

    /// The schema a table named in `conn`'s session resolves in, for connections used outside
    /// an [`AtConnection`] (phase two).
    pub(crate) async fn schema_for(
        &self,
        conn: &mut Conn,
        written: Option<&str>,
        table: &str,
    ) -> Result<String, RmError> {
        let db = match (written, self.assumed_db(conn)) {
            (Some(s), _) => return Ok(s.to_string()),
            (None, Some(db)) => db,
            (None, None) => current_db(conn).await?,
        };
        db.ok_or_else(|| RmError::UnknownTable {
            schema: "(no database selected)".into(),
            table: table.to_string(),
        })
    }
}

/// An AT-mode data source. Cheap to clone; get one from
/// [`AtResourceManager::data_source`](crate::at::AtResourceManager::data_source); connections come
/// from `get_conn` (in `connection.rs`). The copies handed to the application keep their AT
/// resource manager alive, which phase two needs for as long as the data source is in use.
#[derive(Clone)]
pub struct DataSourceProxy {
    pub(crate) inner: Arc<DataSource>,
    /// The manager that made it, in the application's copies only (the manager's own copy
    /// without it, or the two would keep each other alive). Type-erased: the manager's file
    /// depends on this one, not the other way round.
    owner: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for DataSourceProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSourceProxy")
            .field("resource_id", &self.inner.resource_id)
            .finish_non_exhaustive()
    }
}

impl DataSourceProxy {
    pub(crate) fn new(pool: Pool, opts: &Opts, tc: Arc<dyn TcLink>, config: AtConfig) -> Self {
        // A setup statement could `USE` another database (a false alarm costs one query).
        let default_db_trusted = !opts
            .setup()
            .iter()
            .any(|s| s.to_ascii_lowercase().contains("use"));
        DataSourceProxy {
            inner: Arc::new(DataSource {
                pool,
                resource_id: resource_id_of(opts),
                meta: TableMetaCache::default(),
                undo_table: UndoLogTable::new(&config.undo_log_table),
                codec: UndoCodec {
                    offset_secs: config.time_zone_offset_secs,
                },
                tc,
                config,
                default_db: opts.db_name().map(str::to_string),
                default_db_trusted,
                moved_sessions: DashSet::new(),
            }),
            owner: None,
        }
    }

    /// This data source, keeping `owner` alive while any clone of it lives.
    pub(crate) fn owned_by(mut self, owner: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self.owner = Some(owner);
        self
    }

    /// The resource id (`jdbc:mysql://host:port/db`) used with the TC.
    pub fn resource_id(&self) -> &str {
        &self.inner.resource_id
    }

    /// The underlying pool (connections from it bypass AT mode).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The table metadata cache (call `invalidate` after DDL).
    pub fn table_meta(&self) -> &TableMetaCache {
        &self.inner.meta
    }
}
