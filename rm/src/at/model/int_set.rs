//! After images an UPDATE's own arithmetic gives: when every SET is an integer column set to
//! an integer (`n = ?`) or moved by one (`n = n + ?`, `n = n - 3`), the after image follows
//! from the before image and the statement need not read its rows back. Counters and balances
//! are most of what OLTP updates, and this saves their batch a statement.
//!
//! It holds only when MySQL stored exactly what the arithmetic says, so the caller also
//! requires:
//! - integer columns (not `TINYINT(1)`, which images as a boolean);
//! - no UPDATE trigger on the table (one could change the row again);
//! - an UPDATE that raised no warning: a value out of range is an error in strict mode and a
//!   clamped value with a warning otherwise, and the warning sends the image back to a read.

use mysql_async::Value;
use sqlparser::ast::{Assignment, AssignmentTarget, BinaryOperator, Expr, ObjectNamePart};

use super::column_type::Kind;
use super::image::{Row, TableRecords};
use super::sql_expr::column_name;
use super::table_meta::TableMeta;
use super::value::FieldValue;

/// What one SET does to its column.
#[derive(Debug, Clone, PartialEq)]
pub enum IntChange {
    /// `col = v` (`None`: `col = NULL`).
    Assign(Option<i128>),
    /// `col = col + d` (also `col - d`, `d + col`).
    Add(i128),
}

/// One `SET col = ...` in statement order.
#[derive(Debug, Clone, PartialEq)]
pub struct IntSet {
    /// The column, unquoted.
    pub column: String,
    /// The change.
    pub change: IntChange,
}

/// The integer changes of `assignments`, or `None` if any is something else. `value` gives
/// the value of a `?` (by its position) or of a literal.
pub(crate) fn int_sets(
    assignments: &[Assignment],
    value: impl Fn(&Expr) -> Option<Value>,
) -> Option<Vec<IntSet>> {
    let int = |e: &Expr| -> Option<Option<i128>> {
        match value(e)? {
            Value::Int(i) => Some(Some(i128::from(i))),
            Value::UInt(u) => Some(Some(i128::from(u))),
            Value::NULL => Some(None),
            _ => None,
        }
    };
    let mut out: Vec<IntSet> = Vec::with_capacity(assignments.len());
    for a in assignments {
        let AssignmentTarget::ColumnName(name) = &a.target else {
            return None;
        };
        let Some(ObjectNamePart::Identifier(column)) = name.0.last() else {
            return None;
        };
        let column = column.value.clone();
        // A column set twice, or read after an earlier SET changed it, sees the new value.
        if out.iter().any(|s| s.column.eq_ignore_ascii_case(&column)) {
            return None;
        }
        let is_self = |e: &Expr| column_name(e).is_some_and(|n| n.eq_ignore_ascii_case(&column));
        let change = match &a.value {
            Expr::BinaryOp { left, op, right } if is_self(left) => {
                let d = int(right)??;
                match op {
                    BinaryOperator::Plus => IntChange::Add(d),
                    BinaryOperator::Minus => IntChange::Add(-d),
                    _ => return None,
                }
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Plus,
                right,
            } if is_self(right) => IntChange::Add(int(left)??),
            e => IntChange::Assign(int(e)?),
        };
        out.push(IntSet { column, change });
    }
    Some(out)
}

/// Whether `sets` apply to `meta`'s columns: integer kinds only.
pub(crate) fn applies(meta: &TableMeta, sets: &[IntSet]) -> bool {
    !meta.update_triggers
        && sets.iter().all(|s| {
            meta.column(&s.column)
                .is_some_and(|c| matches!(c.kind, Kind::Int | Kind::Long | Kind::BigInteger))
        })
}

/// The after image of `before` under `sets`, rows in key order as a read by key returns them
/// (which for several rows is known only for integer keys). `None` if it cannot be told: a
/// value outside its column (the statement would then have warned or failed, so this only
/// guards the arithmetic), or several rows with another kind of key.
pub(crate) fn after_image(
    meta: &TableMeta,
    before: &TableRecords,
    sets: &[IntSet],
) -> Option<TableRecords> {
    let mut after = TableRecords::empty(meta);
    let mut order: Vec<(Vec<i128>, usize)> = Vec::with_capacity(before.rows.len());
    for (i, row) in before.rows.iter().enumerate() {
        let key = row.primary_key(meta)?;
        let key = key
            .iter()
            .map(|f| int_of(&f.value))
            .collect::<Option<Vec<_>>>();
        match key {
            Some(k) => order.push((k, i)),
            None if before.rows.len() == 1 => order.push((Vec::new(), i)),
            None => return None,
        }
    }
    order.sort_unstable();
    let rows = order.into_iter().filter_map(|(_, i)| before.rows.get(i));
    for row in rows {
        let mut fields = row.fields.clone();
        for set in sets {
            let col = meta.column(&set.column)?;
            let field = fields.iter_mut().find(|f| f.name == col.name)?;
            let new = match (&set.change, &field.value) {
                (IntChange::Assign(None), _) | (IntChange::Add(_), FieldValue::Null) => None,
                (IntChange::Assign(Some(v)), _) => Some(*v),
                (IntChange::Add(d), old) => Some(int_of(old)?.checked_add(*d)?),
            };
            field.value = match new {
                None => FieldValue::Null,
                Some(n) => {
                    let v = i64::try_from(n)
                        .map(Value::Int)
                        .or_else(|_| u64::try_from(n).map(Value::UInt))
                        .ok()?;
                    FieldValue::from_mysql(v, col).ok()?
                }
            };
        }
        after.rows.push(Row { fields });
    }
    Some(after)
}

fn int_of(v: &FieldValue) -> Option<i128> {
    match v {
        FieldValue::Int(i) => Some(i128::from(*i)),
        FieldValue::Long(l) => Some(i128::from(*l)),
        FieldValue::BigInteger(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::model::recognize::recognize;
    use crate::at::model::statement::Recognized;

    fn sets_of(sql: &str, params: Vec<Value>) -> Option<Vec<IntSet>> {
        let params = if params.is_empty() {
            mysql_async::Params::Empty
        } else {
            mysql_async::Params::Positional(params)
        };
        match recognize(sql, &params).unwrap() {
            Recognized::Update(u) => u.int_sets,
            other => panic!("{other:?}"),
        }
    }

    fn set(column: &str, change: IntChange) -> IntSet {
        IntSet {
            column: column.into(),
            change,
        }
    }

    #[test]
    fn recognizes_integer_assignments_and_moves() {
        assert_eq!(
            sets_of(
                "UPDATE t SET a = a + ?, t.b = 3 - 5 + b, c = ?, d = -2, e = NULL, f = (f) - 4 WHERE id = ?",
                vec![Value::Int(7), Value::UInt(9), Value::Int(1)]
            ),
            None,
            "3 - 5 + b is not a move of b by a literal"
        );
        assert_eq!(
            sets_of(
                "UPDATE t SET a = a + ?, t.b = 5 + b, c = ?, d = -2, e = NULL, f = (f) - 4 WHERE id = ?",
                vec![Value::Int(7), Value::UInt(9), Value::Int(1)]
            ),
            Some(vec![
                set("a", IntChange::Add(7)),
                set("b", IntChange::Add(5)),
                set("c", IntChange::Assign(Some(9))),
                set("d", IntChange::Assign(Some(-2))),
                set("e", IntChange::Assign(None)),
                set("f", IntChange::Add(-4)),
            ])
        );
        for sql in [
            "UPDATE t SET a = b + 1",
            "UPDATE t SET a = a * 2",
            "UPDATE t SET a = '5'",
            "UPDATE t SET a = 1.5",
            "UPDATE t SET a = a + 1, a = a + 1",
            "UPDATE t SET a = NOW()",
        ] {
            assert_eq!(sets_of(sql, vec![]), None, "{sql}");
        }
        assert_eq!(
            sets_of("UPDATE t SET a = ?", vec![Value::Bytes(b"1".to_vec())]),
            None
        );
    }
}
