//! The I/O-free core of AT mode: everything about a statement, its images and its undo log
//! that can be decided without a connection. Nothing here awaits; `driver` runs it.
//!
//! Dependencies point one way (top uses bottom):
//!
//! ```text
//! recognize ─► recognize_joined, table_name, sql_expr ─► statement ─► int_set ─► image
//! image ─► value ─► table_meta ─► column_type
//! batch_sql ─► plan ─► lock_key, int_set ─► image_sql ─► table_meta, value
//! upsert, joined, dirty, compensation ─► undo_log, image, image_sql, lock_key
//! undo_json ─► undo_log ─► image;  local_tx ─► lock_key, undo_log
//! json, literal, text_cache: leaves
//! ```

pub mod batch_sql;
pub mod column_type;
pub mod compensation;
pub mod dirty;
pub mod image;
pub mod image_sql;
pub mod int_set;
pub mod joined;
pub(crate) mod json;
pub(crate) mod literal;
pub(crate) mod local_tx;
pub mod lock_key;
pub mod plan;
pub mod recognize;
pub(crate) mod recognize_joined;
pub mod sql_expr;
pub mod statement;
pub mod table_meta;
pub mod table_name;
pub(crate) mod text_cache;
pub mod undo_json;
pub mod undo_log;
pub mod upsert;
pub mod value;
