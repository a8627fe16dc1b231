//! Reading row images: the before image of an UPDATE or DELETE (`SELECT ... <where>
//! [ORDER BY/LIMIT] FOR UPDATE`, at-mode.md 3.4) and rows by primary key (after images,
//! rollback checks). The text comes from `model/image_sql.rs`.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value};
use tracing::debug;

use crate::at::model::image::{image_from_rows, TableRecords};
use crate::at::model::image_sql::{column_list, key_condition, KEY_CHUNK};
use crate::at::model::statement::Filter;
use crate::at::model::table_meta::TableMeta;
use crate::at::model::value::FieldValue;
use crate::error::RmError;

/// `SELECT <columns> FROM <from> <filter> FOR UPDATE`: the before image of an UPDATE/DELETE.
pub async fn select_for_update(
    conn: &mut Conn,
    meta: &TableMeta,
    from: &str,
    columns: &[String],
    filter: &Filter,
) -> Result<TableRecords, RmError> {
    let sql = format!(
        "SELECT {} FROM {from}{} FOR UPDATE",
        column_list(columns),
        filter.render()
    );
    query_image(conn, meta, &sql, filter.params.clone(), columns).await
}

/// Reads the rows with the given key values: the after image of INSERT/UPDATE (no lock, as
/// Seata) or the current rows during rollback (`for_update`, to hold them until the undo).
pub async fn select_by_keys(
    conn: &mut Conn,
    meta: &TableMeta,
    from: &str,
    columns: &[String],
    keys: &[Vec<FieldValue>],
    for_update: bool,
) -> Result<TableRecords, RmError> {
    let mut out = TableRecords::empty(meta);
    let pk_cols = meta.primary_key_columns();
    for chunk in keys.chunks(KEY_CHUNK) {
        let (cond, params) = key_condition(meta, &pk_cols, chunk);
        let sql = format!(
            "SELECT {} FROM {from} WHERE {cond}{}",
            column_list(columns),
            if for_update { " FOR UPDATE" } else { "" }
        );
        out.rows
            .extend(query_image(conn, meta, &sql, params, columns).await?.rows);
    }
    Ok(out)
}

pub(crate) async fn query_image(
    conn: &mut Conn,
    meta: &TableMeta,
    sql: &str,
    params: Vec<Value>,
    columns: &[String],
) -> Result<TableRecords, RmError> {
    debug!(sql, "image query");
    let params = if params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(params)
    };
    let rows: Vec<mysql_async::Row> = conn.exec(sql, params).await?;
    image_from_rows(meta, columns, rows)
}
