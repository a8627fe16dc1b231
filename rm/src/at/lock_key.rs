//! Global row lock keys (at-mode.md 4): `table:pk1,pk2` per statement, statements joined
//! with `;` into the branch's lock key.
//!
//! Composite primary keys (which Seata 1.2 rejects) use the form later Seata releases use:
//! the row's key values in primary-key order joined with `_`, e.g. `t:1_a,2_b`. Values are
//! rendered as Java's `String.valueOf` (see `FieldValue::lock_key_text`); like Seata there is
//! no escaping, so a `,` `;` `:` or `_` inside a key value makes keys ambiguous.

use super::image::TableRecords;
use super::meta::TableMeta;
use crate::error::RmError;

/// The lock key of one image: `table:k1,k2,...`, or `None` when the image has no rows.
pub fn build(meta: &TableMeta, image: &TableRecords) -> Result<Option<String>, RmError> {
    if image.is_empty() {
        return Ok(None);
    }
    let rows = image
        .rows
        .iter()
        .map(|r| {
            r.primary_key(meta)
                .map(|fs| {
                    fs.iter()
                        .map(|f| f.value.lock_key_text())
                        .collect::<Vec<_>>()
                        .join("_")
                })
                .ok_or_else(|| RmError::ImageMismatch {
                    table: meta.name.clone(),
                    reason: "an image row lacks a primary key column".into(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(format!("{}:{}", meta.name, rows.join(","))))
}

/// The lock keys one local transaction collects. Seata keeps a hash set of per-statement
/// strings; we keep insertion order (same de-duplication, deterministic output).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockKeys {
    keys: Vec<String>,
}

impl LockKeys {
    /// Adds one statement's key unless the identical string is already there.
    pub fn add(&mut self, key: String) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// Whether no key was collected.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The branch lock key: statement keys joined with `;`.
    pub fn joined(&self) -> String {
        self.keys.join(";")
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::image::{Field, KeyType, Row};
    use crate::at::meta::ColumnMeta;
    use crate::at::value::{classify, FieldValue};

    fn col(name: &str, ty: &str) -> ColumnMeta {
        let (kind, jdbc_type) = classify(ty, ty);
        ColumnMeta {
            name: name.into(),
            data_type: ty.into(),
            column_type: ty.into(),
            jdbc_type,
            auto_increment: false,
            kind,
        }
    }

    fn meta(pks: &[&str]) -> TableMeta {
        TableMeta {
            schema: "db".into(),
            name: "order_tbl".into(),
            columns: vec![col("id", "int"), col("code", "varchar"), col("v", "int")],
            primary_keys: pks.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn field(name: &str, pk: bool, value: FieldValue) -> Field {
        Field {
            name: name.into(),
            key_type: if pk {
                KeyType::PrimaryKey
            } else {
                KeyType::Null
            },
            jdbc_type: 4,
            value,
        }
    }

    #[test]
    fn single_and_composite_keys() {
        let rows = vec![
            Row {
                fields: vec![
                    field("code", true, FieldValue::String("a".into())),
                    field("id", true, FieldValue::Int(1)),
                    field("v", false, FieldValue::Int(9)),
                ],
            },
            Row {
                fields: vec![
                    field("code", true, FieldValue::String("b".into())),
                    field("id", true, FieldValue::Int(2)),
                    field("v", false, FieldValue::Null),
                ],
            },
        ];
        let image = TableRecords {
            table_name: "order_tbl".into(),
            rows,
        };
        assert_eq!(
            build(&meta(&["id"]), &image).unwrap().as_deref(),
            Some("order_tbl:1,2")
        );
        // Key order follows the primary key definition, not the image's column order.
        assert_eq!(
            build(&meta(&["id", "code"]), &image).unwrap().as_deref(),
            Some("order_tbl:1_a,2_b")
        );
        assert_eq!(
            build(&meta(&["id"]), &TableRecords::default()).unwrap(),
            None
        );
        assert!(build(&meta(&["nope"]), &image).is_err());
    }

    #[test]
    fn joins_statement_keys_once_each() {
        let mut keys = LockKeys::default();
        keys.add("account_tbl:1,2".into());
        keys.add("order_tbl:17".into());
        keys.add("account_tbl:1,2".into());
        assert_eq!(keys.joined(), "account_tbl:1,2;order_tbl:17");
    }
}
