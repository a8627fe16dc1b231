//! Small readings of `sqlparser` expressions shared by recognition, lock-key prediction and
//! integer SETs: the column an expression names, integer literals, where the `?`s are, and
//! MySQL's string-literal escapes.

use std::ops::ControlFlow;

use mysql_async::Value;
use sqlparser::ast::{visit_expressions, Expr, UnaryOperator, Value as SqlValue};

use crate::error::RmError;

/// The (line, column) of every `?` inside `v`, in text order.
pub(crate) fn placeholder_positions<V: sqlparser::ast::Visit>(v: &V) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let _ = visit_expressions(v, |e| {
        if let Expr::Value(vs) = e {
            if matches!(vs.value, SqlValue::Placeholder(_)) {
                out.push((vs.span.start.line, vs.span.start.column));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    out.sort_unstable();
    out
}

/// Undoes MySQL string-literal escapes on a raw literal body (`''` and backslash escapes).
pub(crate) fn unescape(raw: &str, quote: char) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == quote && chars.peek() == Some(&quote) {
            chars.next();
            out.push(quote);
        } else if c == '\\' {
            match chars.next() {
                Some('0') => out.push('\0'),
                Some('b') => out.push('\u{8}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('Z') => out.push('\u{1a}'),
                // MySQL keeps the backslash before % and _ (they matter to LIKE).
                Some(k @ ('%' | '_')) => {
                    out.push('\\');
                    out.push(k);
                }
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The column an expression names (`c`, `t.c`, `(c)`), unquoted.
pub(crate) fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Identifier(i) => Some(&i.value),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.as_str()),
        Expr::Nested(inner) => column_name(inner),
        _ => None,
    }
}

/// The value of an integer or NULL literal (`5`, `-5`, `(7)`, `NULL`).
pub(crate) fn int_literal(e: &Expr) -> Option<Value> {
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => n
                .parse::<i64>()
                .map(Value::Int)
                .or_else(|_| n.parse::<u64>().map(Value::UInt))
                .ok(),
            SqlValue::Null => Some(Value::NULL),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match int_literal(expr)? {
            Value::Int(i) => i.checked_neg().map(Value::Int),
            _ => None,
        },
        Expr::Nested(inner) => int_literal(inner),
        _ => None,
    }
}

/// Maps every `?` of a statement to its parameter by text position.
pub(crate) struct Placeholders<'a> {
    pub(crate) positions: Vec<(u64, u64)>,
    pub(crate) params: &'a [Value],
}

impl Placeholders<'_> {
    pub(crate) fn value_at(&self, sql: &str, pos: (u64, u64)) -> Result<Value, RmError> {
        self.positions
            .binary_search(&pos)
            .ok()
            .and_then(|i| self.params.get(i))
            .cloned()
            .ok_or_else(|| RmError::Parse {
                sql: sql.to_string(),
                message: "cannot match a `?` to its parameter".into(),
            })
    }

    /// The parameters of the `?`s inside `v`, in text order.
    pub(crate) fn params_of<V: sqlparser::ast::Visit>(
        &self,
        sql: &str,
        v: &V,
    ) -> Result<Vec<Value>, RmError> {
        placeholder_positions(v)
            .into_iter()
            .map(|p| self.value_at(sql, p))
            .collect()
    }
}
