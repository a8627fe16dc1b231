//! AT mode: a SQL proxy over `mysql_async` that makes a service's MySQL work part of a global
//! transaction without changing its SQL (at-mode.md).
//!
//! Two layers, as rust-postgres splits protocol from client:
//!
//! - [`model`] never touches a connection: SQL recognition into statement shapes, the plan
//!   (what a statement needs and what refuses it), row images and their SQL text, lock keys,
//!   the undo log model and its Jackson JSON, the column value model, compensation SQL.
//! - `driver` runs the model on `mysql_async`: [`DataSourceProxy`] wraps a pool; its
//!   [`AtConnection`]s intercept statements while an XID is bound (`seata_tm::context`) and are
//!   plain pass-throughs otherwise; [`AtResourceManager`] owns the data sources and the phase-two
//!   entry points (`branch_commit`, `branch_rollback`, undo-log housekeeping).
//!
//! The TC is reached through the [`TcLink`] trait, which the RM client implements.

mod config;
mod driver;
pub mod model;
mod tc_link;

pub use config::AtConfig;
pub use driver::connection::AtConnection;
pub use driver::dirty::DirtyResolution;
pub use driver::manager::{AtResourceManager, RollbackAnswer};
pub use driver::meta_cache::TableMetaCache;
pub use driver::resource::{resource_id_of, DataSourceProxy};
pub use model::dirty::{DirtyReport, DirtyRow};
pub use tc_link::TcLink;

/// The undo log: its model, its Jackson encoding and the `undo_log` table's DDL (the paths
/// users import; the items live in [`model`]).
pub mod undo {
    pub use super::model::undo_json::{serializer_of, UndoCodec};
    pub use super::model::undo_log::*;
}
