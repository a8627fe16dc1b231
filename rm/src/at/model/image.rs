//! Row images: the [`TableRecords`]/[`Row`]/[`Field`] model, building one from result rows,
//! and comparing two (at-mode.md 7.1). The SQL that reads images is in `image_sql.rs`, its
//! execution in `driver/image_query.rs`.

use super::table_meta::TableMeta;
use super::value::FieldValue;
use crate::error::RmError;

/// Whether a field belongs to the primary key (`Field.keyType` in Java).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `PRIMARY_KEY`.
    PrimaryKey,
    /// `NULL`: any other column.
    Null,
}

/// One column of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The column name (database spelling).
    pub name: String,
    /// Key membership.
    pub key_type: KeyType,
    /// The JDBC type code of the column.
    pub jdbc_type: i32,
    /// The value.
    pub value: FieldValue,
}

/// One row of an image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// The fields in image column order.
    pub fields: Vec<Field>,
}

impl Row {
    /// The primary key fields of this row, in the table's key order.
    pub fn primary_key<'a>(&'a self, meta: &TableMeta) -> Option<Vec<&'a Field>> {
        meta.primary_keys
            .iter()
            .map(|pk| self.field(pk))
            .collect::<Option<Vec<_>>>()
    }

    /// The field named `name` (case-insensitive, as MySQL column names are).
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The key's values, used to match rows of two images. Fields are taken in name order so
    /// images with different column orders (an UPDATE image starts with the key) agree.
    pub fn key_text(&self) -> String {
        let mut keys: Vec<&Field> = self
            .fields
            .iter()
            .filter(|f| f.key_type == KeyType::PrimaryKey)
            .collect();
        keys.sort_by_key(|f| f.name.to_ascii_lowercase());
        let parts: Vec<String> = keys.iter().map(|f| f.value.lock_key_text()).collect();
        parts.join("_")
    }
}

/// The rows of one table an image holds. No rows is Java's `EmptyTableRecords`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableRecords {
    /// The table name from metadata (no schema, no quotes).
    pub table_name: String,
    /// The rows.
    pub rows: Vec<Row>,
}

impl TableRecords {
    /// An empty image of `meta`'s table.
    pub fn empty(meta: &TableMeta) -> Self {
        TableRecords {
            table_name: meta.name.clone(),
            rows: Vec::new(),
        }
    }

    /// Whether the image has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The key values of every row, in key order, for a by-key query.
    pub fn key_values(&self, meta: &TableMeta) -> Result<Vec<Vec<FieldValue>>, RmError> {
        self.rows
            .iter()
            .map(|r| {
                r.primary_key(meta)
                    .map(|fs| fs.into_iter().map(|f| f.value.clone()).collect())
                    .ok_or_else(|| RmError::ImageMismatch {
                        table: meta.name.clone(),
                        reason: "an image row lacks a primary key column".into(),
                    })
            })
            .collect()
    }
}

/// The image of rows read with `columns` in that order (binary or text protocol).
pub(crate) fn image_from_rows(
    meta: &TableMeta,
    columns: &[String],
    rows: Vec<mysql_async::Row>,
) -> Result<TableRecords, RmError> {
    let mut out = TableRecords::empty(meta);
    for row in rows {
        let values = row.unwrap();
        let mut fields = Vec::with_capacity(columns.len());
        for (name, v) in columns.iter().zip(values) {
            let col = meta.column(name).ok_or_else(|| RmError::Value {
                column: name.clone(),
                reason: format!("no such column in `{}`", meta.name),
            })?;
            fields.push(Field {
                name: col.name.clone(),
                key_type: if meta.is_primary_key(&col.name) {
                    KeyType::PrimaryKey
                } else {
                    KeyType::Null
                },
                jdbc_type: col.jdbc_type,
                value: FieldValue::from_mysql(v, col)?,
            });
        }
        out.rows.push(Row { fields });
    }
    Ok(out)
}

/// Whether two images hold the same data (at-mode.md 7.1): same table and row count, rows
/// matched by key, and every field of each row in `a` present in the `b` row with the same
/// type and value (extra columns in `b` are ignored). Returns the keys of rows that differ.
pub fn diff(a: &TableRecords, b: &TableRecords) -> Vec<String> {
    let mut differing = Vec::new();
    if !a.table_name.eq_ignore_ascii_case(&b.table_name) {
        differing.push(format!("table {} vs {}", a.table_name, b.table_name));
        return differing;
    }
    for ra in &a.rows {
        let key = ra.key_text();
        let same = b
            .rows
            .iter()
            .find(|rb| rb.key_text() == key)
            .is_some_and(|rb| {
                ra.fields.iter().all(|fa| {
                    rb.field(fa.name.trim())
                        .is_some_and(|fb| fb.jdbc_type == fa.jdbc_type && fb.value == fa.value)
                })
            });
        if !same {
            differing.push(key);
        }
    }
    for rb in &b.rows {
        let key = rb.key_text();
        if !a.rows.iter().any(|ra| ra.key_text() == key) {
            differing.push(key);
        }
    }
    differing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i32, money: i32) -> Row {
        Row {
            fields: vec![
                Field {
                    name: "id".into(),
                    key_type: KeyType::PrimaryKey,
                    jdbc_type: 4,
                    value: FieldValue::Int(id),
                },
                Field {
                    name: "money".into(),
                    key_type: KeyType::Null,
                    jdbc_type: 4,
                    value: FieldValue::Int(money),
                },
            ],
        }
    }

    fn image(rows: Vec<Row>) -> TableRecords {
        TableRecords {
            table_name: "t".into(),
            rows,
        }
    }

    #[test]
    fn diff_matches_rows_by_key_and_reports_differences() {
        let a = image(vec![row(1, 10), row(2, 20)]);
        assert!(diff(&a, &image(vec![row(2, 20), row(1, 10)])).is_empty());
        assert_eq!(diff(&a, &image(vec![row(1, 10), row(2, 21)])), vec!["2"]);
        assert_eq!(diff(&a, &image(vec![row(1, 10)])), vec!["2"]);
        assert_eq!(diff(&image(vec![]), &image(vec![row(3, 1)])), vec!["3"]);
    }
}
