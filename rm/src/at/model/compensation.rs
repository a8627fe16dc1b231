//! The statements that reverse one image row (at-mode.md 7.2): DELETE for an inserted row,
//! UPDATE back to the before image, INSERT of a deleted row. One statement per row, values
//! bound as parameters.

use mysql_async::Value;

use super::image::{Field, KeyType, Row};
use super::image_sql::quote;
use super::table_meta::TableMeta;
use super::undo_log::SqlType;
use crate::error::RmError;

/// The statement that reverses `row` (one statement per row, at-mode.md 7.2).
pub(crate) fn compensation(
    sql_type: SqlType,
    meta: &TableMeta,
    from: &str,
    row: &Row,
) -> Result<(String, Vec<Value>), RmError> {
    let bind = |f: &Field| {
        let year = meta.column(&f.name).is_some_and(|c| c.data_type == "year");
        f.value.to_mysql(year)
    };
    let pk = row
        .primary_key(meta)
        .ok_or_else(|| RmError::ImageMismatch {
            table: meta.name.clone(),
            reason: "an undo row lacks a primary key column".into(),
        })?;
    let pk_cond = pk
        .iter()
        .map(|f| format!("{} = ?", quote(&f.name)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let pk_params: Vec<Value> = pk.iter().map(|f| bind(f)).collect();
    let non_pk: Vec<&Field> = row
        .fields
        .iter()
        .filter(|f| f.key_type != KeyType::PrimaryKey)
        .collect();
    Ok(match sql_type {
        SqlType::Insert => (format!("DELETE FROM {from} WHERE {pk_cond}"), pk_params),
        SqlType::Update => {
            let sets = non_pk
                .iter()
                .map(|f| format!("{} = ?", quote(&f.name)))
                .collect::<Vec<_>>()
                .join(", ");
            let mut params: Vec<Value> = non_pk.iter().map(|f| bind(f)).collect();
            params.extend(pk_params);
            (format!("UPDATE {from} SET {sets} WHERE {pk_cond}"), params)
        }
        SqlType::Delete => {
            let cols: Vec<&Field> = non_pk.into_iter().chain(pk).collect();
            let names = cols
                .iter()
                .map(|f| quote(&f.name))
                .collect::<Vec<_>>()
                .join(", ");
            let marks = vec!["?"; cols.len()].join(", ");
            let params = cols.iter().map(|f| bind(f)).collect();
            (
                format!("INSERT INTO {from} ({names}) VALUES ({marks})"),
                params,
            )
        }
    })
}
