//! AT mode on `mysql_async`: the connections, the statement paths that run the model's plans,
//! phase one's commit, phase two's rollback and the resource manager.
//!
//! ```text
//! connection (AtConnection, public API)
//!   ├─► dml ─► batch, image_query, commit ─► conn_state ─► resource, mysql_session
//!   └─► for_update ─► image_query
//! manager ─► rollback ─► image_query, resource ─► meta_cache, undo_log_table
//! ```

pub(crate) mod batch;
pub(crate) mod commit;
pub(crate) mod conn_state;
pub(crate) mod connection;
pub(crate) mod dirty;
pub(crate) mod dml;
pub(crate) mod for_update;
pub(crate) mod image_query;
pub(crate) mod joined;
pub(crate) mod manager;
pub(crate) mod meta_cache;
pub(crate) mod mysql_session;
pub(crate) mod resource;
pub(crate) mod rollback;
pub(crate) mod undo_log_table;
pub(crate) mod upsert;
