//! Global row lock keys (at-mode.md 4): `table:pk1,pk2` per statement, statements joined
//! with `;` into the branch's lock key.
//!
//! Composite primary keys (which Seata 1.2 rejects) use the form later Seata releases use:
//! the row's key values in primary-key order joined with `_`, e.g. `t:1_a,2_b`. Values are
//! rendered as Java's `String.valueOf` (see `FieldValue::lock_key_text`); like Seata there is
//! no escaping, so a `,` `;` `:` or `_` inside a key value makes keys ambiguous.

use mysql_async::Value;
use sqlparser::ast::{BinaryOperator, Expr, Value as SqlValue};

use super::column_type::Kind;
use super::image::TableRecords;
use super::sql_expr::{column_name, int_literal, placeholder_positions};
use super::statement::Filter;
use super::table_meta::TableMeta;
use super::value::FieldValue;
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

/// The lock key of the rows `filter` can select, known before the statement runs: when it
/// is nothing but equalities naming every column of an integer primary key (`id = ?`,
/// `id IN (?, ?)`, `a = 1 AND b = ?`). Integer keys only: the text of another type's key
/// depends on how the database spells the stored value (collations, padding), which only an
/// image can tell.
pub fn predict(meta: &TableMeta, filter: &Filter) -> Option<String> {
    let pk_cols = meta.primary_key_columns();
    if pk_cols.is_empty()
        || pk_cols.len() != meta.primary_keys.len()
        || pk_cols
            .iter()
            .any(|c| !matches!(c.kind, Kind::Int | Kind::Long | Kind::BigInteger))
    {
        return None;
    }
    let selection = filter.selection.as_ref()?;
    let positions = placeholder_positions(selection);
    let value = |e: &Expr| -> Option<Value> {
        let v = match e {
            Expr::Value(v) if matches!(v.value, SqlValue::Placeholder(_)) => {
                let at = (v.span.start.line, v.span.start.column);
                filter
                    .params
                    .get(positions.binary_search(&at).ok()?)?
                    .clone()
            }
            e => int_literal(e)?,
        };
        matches!(v, Value::Int(_) | Value::UInt(_)).then_some(v)
    };
    // Per key column (in key order), the values the filter allows.
    let mut allowed: Vec<Option<Vec<Value>>> = vec![None; pk_cols.len()];
    let mut stack = vec![selection];
    while let Some(e) = stack.pop() {
        let (column, values) = match e {
            Expr::Nested(inner) => {
                stack.push(inner);
                continue;
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                stack.push(left);
                stack.push(right);
                continue;
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => match (column_name(left), column_name(right)) {
                (Some(c), None) => (c, vec![value(right)?]),
                (None, Some(c)) => (c, vec![value(left)?]),
                _ => return None,
            },
            Expr::InList {
                expr,
                list,
                negated: false,
            } if pk_cols.len() == 1 => (
                column_name(expr)?,
                list.iter().map(value).collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        };
        let i = meta
            .primary_keys
            .iter()
            .position(|p| p.eq_ignore_ascii_case(column))?;
        if allowed.get_mut(i)?.replace(values).is_some() {
            return None;
        }
    }
    let texts = allowed
        .into_iter()
        .zip(&pk_cols)
        .map(|(values, col)| {
            values?
                .into_iter()
                .map(|v| {
                    FieldValue::from_mysql(v, col)
                        .ok()
                        .map(|f| f.lock_key_text())
                })
                .collect::<Option<Vec<String>>>()
        })
        .collect::<Option<Vec<Vec<String>>>>()?;
    let rows: Vec<String> = match texts.as_slice() {
        [one] => one.clone(),
        // Composite keys come from single equalities only: one row.
        many => vec![many
            .iter()
            .map(|v| match v.as_slice() {
                [one] => Some(one.as_str()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?
            .join("_")],
    };
    Some(format(&meta.name, rows))
}

/// `table:row1,row2` with each row once, in first-seen order.
pub(crate) fn format(table: &str, mut rows: Vec<String>) -> String {
    let mut seen = std::collections::HashSet::new();
    rows.retain(|r| seen.insert(r.clone()));
    format!("{table}:{}", rows.join(","))
}

/// One table's keys from several images of the same statement (`t:1,2` and `t:3` give
/// `t:1,2,3`); `None` when there are none.
pub(crate) fn merge(keys: &[String]) -> Option<String> {
    let (first, _) = keys.first()?.split_once(':')?;
    let rows: Vec<String> = keys
        .iter()
        .filter_map(|k| k.split_once(':'))
        .flat_map(|(_, rows)| rows.split(',').map(str::to_string))
        .collect();
    Some(format(first, rows))
}

/// Whether the one-statement lock key `found` names only rows of `registered` (`found` may
/// be empty: the statement changed no row).
pub fn covers(registered: &str, found: &str) -> bool {
    if found.is_empty() || registered == found {
        return true;
    }
    if registered.contains(';') || found.contains(';') {
        return false;
    }
    match (registered.split_once(':'), found.split_once(':')) {
        (Some((t1, rows1)), Some((t2, rows2))) => {
            t1 == t2 && rows2.split(',').all(|r| rows1.split(',').any(|x| x == r))
        }
        _ => false,
    }
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
    use crate::at::model::column_type::classify;
    use crate::at::model::image::{Field, KeyType, Row};
    use crate::at::model::table_meta::ColumnMeta;
    use crate::at::model::value::FieldValue;

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
            unique_keys: Vec::new(),
            update_triggers: false,
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

    fn filter_of(sql: &str, params: Vec<mysql_async::Value>) -> Filter {
        let params = if params.is_empty() {
            mysql_async::Params::Empty
        } else {
            mysql_async::Params::Positional(params)
        };
        match crate::at::model::recognize::recognize(sql, &params).unwrap() {
            crate::at::model::statement::Recognized::Update(u) => u.filter,
            crate::at::model::statement::Recognized::Delete(d) => d.filter,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn predicts_keys_of_integer_key_filters_only() {
        use mysql_async::Value::{Bytes, Int};
        let single = meta(&["id"]);
        let composite = TableMeta {
            columns: vec![col("id", "int"), col("v", "bigint")],
            ..meta(&["id", "v"])
        };
        for (m, sql, params, want) in [
            (
                &single,
                "UPDATE t SET v = 1 WHERE id = ?",
                vec![Int(7)],
                Some("order_tbl:7"),
            ),
            (
                &single,
                "DELETE FROM t WHERE (t.`id` = -3)",
                vec![],
                Some("order_tbl:-3"),
            ),
            (
                &single,
                "DELETE FROM t WHERE 5 = id",
                vec![],
                Some("order_tbl:5"),
            ),
            (
                &single,
                "UPDATE t SET v = ? WHERE id IN (?, 2, ?)",
                vec![Int(0), Int(1), Int(1)],
                Some("order_tbl:1,2"),
            ),
            (
                &composite,
                "UPDATE t SET code = 'x' WHERE v = ? AND id = 4",
                vec![Int(9)],
                Some("order_tbl:4_9"),
            ),
            // Anything but equalities on the whole key: unknown until the image.
            (
                &single,
                "UPDATE t SET v = 1 WHERE id = ? AND v = 2",
                vec![Int(7)],
                None,
            ),
            (
                &single,
                "UPDATE t SET v = 1 WHERE id = ? OR id = 2",
                vec![Int(7)],
                None,
            ),
            (&single, "UPDATE t SET v = 1 WHERE id > 3", vec![], None),
            (&single, "UPDATE t SET v = 1 WHERE id = '7'", vec![], None),
            (
                &single,
                "UPDATE t SET v = 1 WHERE id = ?",
                vec![Bytes(b"7".to_vec())],
                None,
            ),
            (&single, "UPDATE t SET v = 1 WHERE id = 1.5", vec![], None),
            (&single, "UPDATE t SET v = 1", vec![], None),
            (
                &composite,
                "UPDATE t SET code = 'x' WHERE id = 4",
                vec![],
                None,
            ),
            (
                &composite,
                "UPDATE t SET code = 'x' WHERE id IN (1, 2) AND v = 3",
                vec![],
                None,
            ),
            (
                &meta(&["code"]),
                "UPDATE t SET v = 1 WHERE code = 'a'",
                vec![],
                None,
            ),
        ] {
            assert_eq!(
                predict(m, &filter_of(sql, params)).as_deref(),
                want,
                "{sql}"
            );
        }
    }

    #[test]
    fn a_registered_key_covers_its_own_rows() {
        assert!(covers("t:1,2", "t:1,2"));
        assert!(covers("t:1,2", "t:2"));
        assert!(covers("t:1", ""));
        assert!(!covers("t:1", "t:3"));
        assert!(!covers("t:1", "u:1"));
        assert!(!covers("t:1", "t:1;u:2"));
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
