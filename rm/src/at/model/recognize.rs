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
    AssignmentTarget, Expr, FromTable, Ident, LockType, ObjectName, ObjectNamePart, OnInsert,
    OrderByKind, SetExpr, Statement, TableFactor, TableObject, TableWithJoins, UnaryOperator,
    Value as SqlValue,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserOptions};

use super::int_set::int_sets;
use super::sql_expr::{int_literal, placeholder_positions, unescape};
use super::statement::{
    Cell, DeleteStmt, Filter, InsertStmt, Recognized, SelectStmt, TableRef, TxControl, UpdateStmt,
};
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
                return if DML_WORDS.iter().any(|w| first.starts_with(w)) {
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
            for s in many {
                if !matches!(recognize_one(sql, s, &[])?, Recognized::Plain) {
                    return Err(RmError::unsupported(
                        sql,
                        "several statements in one call; send each DML statement separately",
                    ));
                }
            }
            Ok(Recognized::Plain)
        }
    }
}

/// Maps every `?` of a statement to its parameter by text position.
struct Placeholders<'a> {
    positions: Vec<(u64, u64)>,
    params: &'a [Value],
}

impl Placeholders<'_> {
    fn value_at(&self, sql: &str, pos: (u64, u64)) -> Result<Value, RmError> {
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
    fn params_of<V: sqlparser::ast::Visit>(&self, sql: &str, v: &V) -> Result<Vec<Value>, RmError> {
        placeholder_positions(v)
            .into_iter()
            .map(|p| self.value_at(sql, p))
            .collect()
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
        Statement::Update(up) => update(sql, up, &ph).map(Recognized::Update),
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
        _ => Ok(Recognized::Plain),
    }
}

/// Parses a table name as stored in an undo log (`t`, `` `db`.`t` ``).
pub fn parse_table_name(name: &str) -> Result<TableRef, RmError> {
    let dialect = MySqlDialect {};
    let obj = Parser::new(&dialect)
        .try_with_sql(name)
        .and_then(|mut p| p.parse_object_name(false))
        .map_err(|e| RmError::Parse {
            sql: name.to_string(),
            message: e.to_string(),
        })?;
    table_ref(name, &obj, None)
}

fn table_ref(sql: &str, name: &ObjectName, alias: Option<Ident>) -> Result<TableRef, RmError> {
    let idents: Vec<&Ident> = name
        .0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i),
            ObjectNamePart::Function(_) => None,
        })
        .collect();
    let (schema, table) = match idents.as_slice() {
        [t] => (None, t.value.clone()),
        [s, t] => (Some(s.value.clone()), t.value.clone()),
        _ => return Err(RmError::unsupported(sql, format!("table name `{name}`"))),
    };
    Ok(TableRef {
        name: name.clone(),
        schema,
        table,
        alias,
    })
}

fn single_table(sql: &str, twj: &TableWithJoins) -> Result<TableRef, RmError> {
    if !twj.joins.is_empty() {
        return Err(RmError::unsupported(
            sql,
            "a join; AT mode images one table per statement",
        ));
    }
    match &twj.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => table_ref(sql, name, alias.as_ref().map(|a| a.name.clone())),
        other => Err(RmError::unsupported(
            sql,
            format!("table expression `{other}`"),
        )),
    }
}

fn last_ident(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.value.clone(),
        _ => name.to_string(),
    }
}

fn insert(
    sql: &str,
    ins: &sqlparser::ast::Insert,
    ph: &Placeholders<'_>,
) -> Result<InsertStmt, RmError> {
    if ins.replace_into {
        return Err(RmError::unsupported(sql, "REPLACE; use INSERT or UPDATE"));
    }
    if ins.ignore {
        // Ignored rows are not inserted, so an image by key would pick up (and rollback would
        // delete) a row this statement never wrote.
        return Err(RmError::unsupported(sql, "INSERT IGNORE"));
    }
    if let Some(on) = &ins.on {
        let reason = match on {
            // Seata 1.2 treats it as a plain INSERT, so rollback deletes a row that existed
            // before (at-mode.md 3.4). We refuse it instead.
            OnInsert::DuplicateKeyUpdate(_) => {
                "INSERT ... ON DUPLICATE KEY UPDATE; use SELECT ... FOR UPDATE then INSERT or UPDATE"
            }
            _ => "INSERT ... ON CONFLICT",
        };
        return Err(RmError::unsupported(sql, reason));
    }
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
        });
    }
    let columns = ins.columns.iter().map(last_ident).collect();
    let rows = match ins.source.as_deref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(v)) => v
            .rows
            .iter()
            .map(|r| r.content.iter().map(cell).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(RmError::unsupported(
                sql,
                "INSERT without VALUES (e.g. INSERT ... SELECT); insert explicit rows",
            ))
        }
    };
    Ok(InsertStmt {
        table,
        columns,
        rows,
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
