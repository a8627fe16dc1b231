//! SQL recognition for AT mode: a `sqlparser` statement (MySQL dialect) becomes one of our
//! small [`Recognized`] shapes, with the statement's `?` parameters already split between the
//! pieces that need them (the WHERE/ORDER BY/LIMIT of an image query, INSERT values).
//!
//! Owns what AT mode accepts (at-mode.md 3.1, 3.4). Everything that changes data in a shape
//! we cannot image or undo is refused here, before anything runs: multi-table statements and
//! joins, `INSERT ... SELECT`, `INSERT IGNORE`, `REPLACE`, `ON DUPLICATE KEY UPDATE`, several
//! statements in one string, named parameters. Table metadata checks (missing primary key, an
//! UPDATE of a key column) happen later in `image.rs`, still before the statement runs.
//!
//! Parsing keeps literals raw (`unescape = false`) so that re-rendering a WHERE clause with
//! `Display` reproduces MySQL's backslash escapes exactly.

use std::sync::{Arc, LazyLock};

use mysql_async::{Params, Value};
use sqlparser::ast::{
    AssignmentTarget, Expr, FromTable, LockType, OnInsert, OrderByKind, SetExpr, Statement,
    TableObject, UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserOptions};

use super::int_set::int_sets;
use super::recognize_joined::{is_joined_delete, joined_delete, joined_update};
use super::sql_expr::{int_literal, placeholder_positions, unescape, Placeholders};
use super::statement::{
    Cell, DeleteStmt, Filter, InsertStmt, OnConflict, Recognized, SelectStmt, TxControl, UpdateStmt,
};
use super::table_name::{last_ident, single_table, table_ref};
use super::text_cache::TextCache;
use crate::error::RmError;

/// Parses of recent statements: the same parameterized texts come back all the time.
static PARSED: LazyLock<TextCache<Option<Arc<Vec<Statement>>>>> =
    LazyLock::new(|| TextCache::new(1024));

/// Parses `sql` (MySQL dialect, literals kept raw).
pub fn parse(sql: &str) -> Result<Vec<Statement>, RmError> {
    let dialect = MySqlDialect {};
    Parser::new(&dialect)
        .with_options(ParserOptions::new().with_unescape(false))
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| RmError::Parse {
            sql: sql.to_string(),
            message: e.to_string(),
        })
}

/// Statements whose first word is one of these change (or lock) data, so failing to parse
/// them inside a global transaction is an error rather than a pass-through.
const DML_WORDS: [&str; 7] = [
    "insert", "update", "delete", "replace", "select", "with", "merge",
];

/// Recognizes `sql` with its parameters. Call only inside a global transaction: outside one
/// the proxy does not parse at all.
pub fn recognize(sql: &str, params: &Params) -> Result<Recognized, RmError> {
    let params: &[Value] = match params {
        Params::Empty => &[],
        Params::Positional(v) => v,
        Params::Named(_) => {
            return Err(RmError::unsupported(
                sql,
                "named parameters; use positional `?` parameters inside a global transaction",
            ))
        }
    };
    let stmts = match PARSED.get_or_insert_with(sql, || parse(sql).map(Arc::new).ok()) {
        Some(s) => s,
        None => match parse(sql) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let first = sql
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                return if first == "update" && e.to_string().contains("Expected: SET") {
                    // `UPDATE a, b SET ...`: the parser reads only the JOIN form.
                    Err(RmError::unsupported(
                        sql,
                        "multi-table UPDATE with comma-separated tables; write it as \
                         `UPDATE a JOIN b ON ... SET ...`",
                    ))
                } else if DML_WORDS.iter().any(|w| first.starts_with(w)) {
                    Err(e)
                } else {
                    Ok(Recognized::Plain)
                };
            }
        },
    };
    match stmts.as_slice() {
        [] => Ok(Recognized::Plain),
        [one] => recognize_one(sql, one, params),
        many => {
            // Only the text protocol carries several statements, so there are no parameters:
            // each statement runs on its own, in order, with its own text.
            if !params.is_empty() {
                return Err(RmError::unsupported(
                    sql,
                    "several statements with `?` parameters; send them one by one",
                ));
            }
            let mut parts = Vec::with_capacity(many.len());
            let mut imaged = false;
            for s in many {
                let rec = recognize_one(sql, s, &[])?;
                imaged |= !matches!(rec, Recognized::Plain);
                parts.push((s.to_string(), rec));
            }
            Ok(if imaged {
                Recognized::Many(parts)
            } else {
                Recognized::Plain
            })
        }
    }
}

fn recognize_one(sql: &str, stmt: &Statement, params: &[Value]) -> Result<Recognized, RmError> {
    let positions = placeholder_positions(stmt);
    if positions.len() != params.len() {
        return Err(RmError::Parse {
            sql: sql.to_string(),
            message: format!(
                "{} `?` placeholders but {} parameters",
                positions.len(),
                params.len()
            ),
        });
    }
    let ph = Placeholders { positions, params };
    match stmt {
        Statement::Insert(ins) => insert(sql, ins, &ph).map(Recognized::Insert),
        Statement::Update(up) if !up.table.joins.is_empty() => {
            joined_update(sql, up, &ph).map(Recognized::Joined)
        }
        Statement::Update(up) => update(sql, up, &ph).map(Recognized::Update),
        Statement::Delete(del) if is_joined_delete(del) => {
            joined_delete(sql, del, &ph).map(Recognized::Joined)
        }
        Statement::Delete(del) => delete(sql, del, &ph).map(Recognized::Delete),
        Statement::Query(q) if q.locks.iter().any(|l| l.lock_type == LockType::Update) => {
            let SetExpr::Select(sel) = q.body.as_ref() else {
                return Err(RmError::unsupported(sql, "FOR UPDATE on a set operation"));
            };
            if q.with.is_some() {
                return Err(RmError::unsupported(sql, "FOR UPDATE with a WITH clause"));
            }
            let [from] = sel.from.as_slice() else {
                return Err(RmError::unsupported(sql, "FOR UPDATE over several tables"));
            };
            let table = single_table(sql, from)?;
            let order_by = match &q.order_by {
                Some(o) => match &o.kind {
                    OrderByKind::Expressions(e) => e.clone(),
                    OrderByKind::All(_) => {
                        return Err(RmError::unsupported(sql, "ORDER BY ALL"));
                    }
                },
                None => Vec::new(),
            };
            let mut filter = Filter {
                selection: sel.selection.clone(),
                order_by,
                limit: q.limit_clause.as_ref().map(ToString::to_string),
                params: Vec::new(),
            };
            filter.params = ph.params_of(sql, &filter.selection)?;
            filter.params.extend(ph.params_of(sql, &filter.order_by)?);
            filter.params.extend(ph.params_of(sql, &q.limit_clause)?);
            Ok(Recognized::SelectForUpdate(SelectStmt { table, filter }))
        }
        Statement::Merge { .. } => Err(RmError::unsupported(sql, "MERGE")),
        Statement::StartTransaction { .. } => Ok(Recognized::Transaction(TxControl::Begin)),
        Statement::Commit { chain: false, .. } => Ok(Recognized::Transaction(TxControl::Commit)),
        Statement::Rollback {
            chain: false,
            savepoint: None,
        } => Ok(Recognized::Transaction(TxControl::Rollback)),
        Statement::Rollback {
            chain: false,
            savepoint: Some(name),
        } => Ok(Recognized::Transaction(TxControl::RollbackTo(
            name.value.clone(),
        ))),
        Statement::Savepoint { name } => Ok(Recognized::Transaction(TxControl::Savepoint(
            name.value.clone(),
        ))),
        Statement::ReleaseSavepoint { name } => Ok(Recognized::Transaction(TxControl::Release(
            name.value.clone(),
        ))),
        _ => Ok(Recognized::Plain),
    }
}

fn insert(
    sql: &str,
    ins: &sqlparser::ast::Insert,
    ph: &Placeholders<'_>,
) -> Result<InsertStmt, RmError> {
    // Seata 1.2 treats ON DUPLICATE KEY UPDATE as a plain INSERT, so its rollback deletes a
    // row that existed before (at-mode.md 3.4); these kinds get images of every row they may
    // collide with instead (`upsert.rs`).
    let on_conflict = match (&ins.on, ins.replace_into, ins.ignore) {
        (Some(OnInsert::DuplicateKeyUpdate(_)), false, _) => OnConflict::UpdateDuplicate,
        (Some(_), _, _) => return Err(RmError::unsupported(sql, "INSERT ... ON CONFLICT")),
        (None, true, _) => OnConflict::Replace,
        (None, false, true) => OnConflict::Ignore,
        (None, false, false) => OnConflict::Error,
    };
    if ins.returning.is_some() {
        return Err(RmError::unsupported(sql, "INSERT ... RETURNING"));
    }
    let TableObject::TableName(name) = &ins.table else {
        return Err(RmError::unsupported(sql, "INSERT into a table function"));
    };
    let table = table_ref(sql, name, ins.table_alias.as_ref().map(|a| a.alias.clone()))?;
    let cell = |e: &Expr| cell(sql, e, ph);
    if !ins.assignments.is_empty() {
        let mut columns = Vec::new();
        let mut row = Vec::new();
        for a in &ins.assignments {
            let AssignmentTarget::ColumnName(c) = &a.target else {
                return Err(RmError::unsupported(sql, "tuple assignment"));
            };
            columns.push(last_ident(c));
            row.push(cell(&a.value)?);
        }
        return Ok(InsertStmt {
            table,
            columns,
            rows: vec![row],
            on_conflict,
        });
    }
    let columns = ins.columns.iter().map(last_ident).collect();
    let rows =
        match ins.source.as_deref().map(|q| q.body.as_ref()) {
            Some(SetExpr::Values(v)) => v
                .rows
                .iter()
                .map(|r| r.content.iter().map(cell).collect::<Result<Vec<_>, _>>())
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(RmError::unsupported(
                sql,
                "INSERT ... SELECT: the rows it inserts are known only after it runs, and with \
                 generated keys they cannot be read back exactly; select the rows first and \
                 insert them with VALUES",
            )),
        };
    Ok(InsertStmt {
        table,
        columns,
        rows,
        on_conflict,
    })
}

fn cell(sql: &str, e: &Expr, ph: &Placeholders<'_>) -> Result<Cell, RmError> {
    Ok(match e {
        Expr::Value(v) => match &v.value {
            SqlValue::Placeholder(_) => {
                match ph.value_at(sql, (v.span.start.line, v.span.start.column))? {
                    Value::NULL => Cell::Null,
                    other => Cell::Value(other),
                }
            }
            SqlValue::Null => Cell::Null,
            SqlValue::Number(n, _) => Cell::Value(number(n)),
            SqlValue::Boolean(b) => Cell::Value(Value::Int(i64::from(*b))),
            SqlValue::SingleQuotedString(s) => {
                Cell::Value(Value::Bytes(unescape(s, '\'').into_bytes()))
            }
            SqlValue::DoubleQuotedString(s) => {
                Cell::Value(Value::Bytes(unescape(s, '"').into_bytes()))
            }
            _ => Cell::Expr(e.to_string()),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => Cell::Value(number(&format!("-{n}"))),
                _ => Cell::Expr(e.to_string()),
            },
            _ => Cell::Expr(e.to_string()),
        },
        Expr::Identifier(i)
            if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") =>
        {
            Cell::Default
        }
        _ => Cell::Expr(e.to_string()),
    })
}

fn number(n: &str) -> Value {
    if let Ok(i) = n.parse::<i64>() {
        Value::Int(i)
    } else if let Ok(u) = n.parse::<u64>() {
        Value::UInt(u)
    } else {
        Value::Bytes(n.as_bytes().to_vec())
    }
}

fn update(
    sql: &str,
    up: &sqlparser::ast::Update,
    ph: &Placeholders<'_>,
) -> Result<UpdateStmt, RmError> {
    if up.from.is_some() {
        return Err(RmError::unsupported(sql, "UPDATE ... FROM"));
    }
    if up.returning.is_some() {
        return Err(RmError::unsupported(sql, "UPDATE ... RETURNING"));
    }
    let table = single_table(sql, &up.table)?;
    let mut columns: Vec<String> = Vec::new();
    for a in &up.assignments {
        let AssignmentTarget::ColumnName(c) = &a.target else {
            return Err(RmError::unsupported(sql, "tuple assignment"));
        };
        // `t.col` / `alias.col`: the qualifier can only name the one target table.
        let col = last_ident(c);
        if !columns.iter().any(|x| x.eq_ignore_ascii_case(&col)) {
            columns.push(col);
        }
    }
    let mut filter = Filter {
        selection: up.selection.clone(),
        order_by: up.order_by.clone(),
        limit: up.limit.as_ref().map(|l| format!(" LIMIT {l}")),
        params: Vec::new(),
    };
    filter.params = ph.params_of(sql, &up.selection)?;
    filter.params.extend(ph.params_of(sql, &up.order_by)?);
    filter.params.extend(ph.params_of(sql, &up.limit)?);
    let int_sets = int_sets(&up.assignments, |e| match e {
        Expr::Value(v) if matches!(v.value, SqlValue::Placeholder(_)) => ph
            .value_at(sql, (v.span.start.line, v.span.start.column))
            .ok(),
        e => int_literal(e),
    });
    Ok(UpdateStmt {
        table,
        columns,
        filter,
        int_sets,
    })
}

fn delete(
    sql: &str,
    del: &sqlparser::ast::Delete,
    ph: &Placeholders<'_>,
) -> Result<DeleteStmt, RmError> {
    if !del.tables.is_empty() || del.using.is_some() {
        return Err(RmError::unsupported(sql, "multi-table DELETE"));
    }
    if del.returning.is_some() {
        return Err(RmError::unsupported(sql, "DELETE ... RETURNING"));
    }
    let from = match &del.from {
        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
    };
    let [one] = from.as_slice() else {
        return Err(RmError::unsupported(sql, "multi-table DELETE"));
    };
    let table = single_table(sql, one)?;
    let mut filter = Filter {
        selection: del.selection.clone(),
        order_by: del.order_by.clone(),
        limit: del.limit.as_ref().map(|l| format!(" LIMIT {l}")),
        params: Vec::new(),
    };
    filter.params = ph.params_of(sql, &del.selection)?;
    filter.params.extend(ph.params_of(sql, &del.order_by)?);
    filter.params.extend(ph.params_of(sql, &del.limit)?);
    Ok(DeleteStmt { table, filter })
}

#[cfg(test)]
#[path = "recognize_tests.rs"]
mod tests;
