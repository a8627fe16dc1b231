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
    Cell, DeleteStmt, Filter, InsertStmt, JoinedKind, JoinedStmt, OnConflict, Recognized,
    SelectStmt, TableRef, TxControl, UpdateStmt,
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

/// Every table of a FROM clause, with its alias; derived tables and table functions are
/// refused (their rows cannot be imaged by key).
fn tables_of(sql: &str, from: &[TableWithJoins]) -> Result<Vec<TableRef>, RmError> {
    let mut out = Vec::new();
    for twj in from {
        for factor in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            match factor {
                TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } => out.push(table_ref(
                    sql,
                    name,
                    alias.as_ref().map(|a| a.name.clone()),
                )?),
                other => {
                    return Err(RmError::unsupported(
                        sql,
                        format!("table expression `{other}` in a multi-table statement"),
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// The table of `tables` that `qualifier` names (alias, or table name when it has none).
fn find_table<'t>(tables: &'t [TableRef], qualifier: &str) -> Option<&'t TableRef> {
    tables
        .iter()
        .find(|t| t.qualifier().eq_ignore_ascii_case(qualifier))
}

/// `UPDATE a JOIN b ON ... SET a.x = ..., y = ... WHERE ...`.
fn joined_update(
    sql: &str,
    up: &sqlparser::ast::Update,
    ph: &Placeholders<'_>,
) -> Result<JoinedStmt, RmError> {
    if up.from.is_some() || up.returning.is_some() {
        return Err(RmError::unsupported(sql, "UPDATE ... FROM / RETURNING"));
    }
    if !up.order_by.is_empty() || up.limit.is_some() {
        return Err(RmError::unsupported(
            sql,
            "ORDER BY or LIMIT in a multi-table UPDATE",
        ));
    }
    let tables = tables_of(sql, std::slice::from_ref(&up.table))?;
    let mut targets: Vec<(String, Vec<String>)> = Vec::new();
    let mut unqualified = Vec::new();
    for a in &up.assignments {
        let AssignmentTarget::ColumnName(c) = &a.target else {
            return Err(RmError::unsupported(sql, "tuple assignment"));
        };
        let parts: Vec<&str> =
            c.0.iter()
                .filter_map(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(i.value.as_str()),
                    ObjectNamePart::Function(_) => None,
                })
                .collect();
        let column = last_ident(c);
        let Some(qualifier) = parts.len().checked_sub(2).and_then(|i| parts.get(i)) else {
            if !unqualified
                .iter()
                .any(|x: &String| x.eq_ignore_ascii_case(&column))
            {
                unqualified.push(column);
            }
            continue;
        };
        let table = find_table(&tables, qualifier).ok_or_else(|| {
            RmError::unsupported(
                sql,
                format!("SET of `{c}`: `{qualifier}` names no table of the statement"),
            )
        })?;
        let key = table.qualifier().to_string();
        match targets.iter_mut().find(|(q, _)| *q == key) {
            Some((_, cols)) if cols.iter().any(|x| x.eq_ignore_ascii_case(&column)) => {}
            Some((_, cols)) => cols.push(column),
            None => targets.push((key, vec![column])),
        }
    }
    let mut params = ph.params_of(sql, &up.table)?;
    params.extend(ph.params_of(sql, &up.selection)?);
    Ok(JoinedStmt {
        kind: JoinedKind::Update,
        from: up.table.to_string(),
        tables,
        targets,
        unqualified,
        selection: up.selection.clone(),
        params,
    })
}

/// Whether a DELETE names its target tables apart from its FROM clause or joins tables.
fn is_joined_delete(del: &sqlparser::ast::Delete) -> bool {
    let from = match &del.from {
        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
    };
    !del.tables.is_empty()
        || del.using.is_some()
        || from.len() > 1
        || from.iter().any(|t| !t.joins.is_empty())
}

/// `DELETE a[, b] FROM a JOIN b ...` or `DELETE FROM a[, b] USING a JOIN b ...`.
fn joined_delete(
    sql: &str,
    del: &sqlparser::ast::Delete,
    ph: &Placeholders<'_>,
) -> Result<JoinedStmt, RmError> {
    if del.returning.is_some() {
        return Err(RmError::unsupported(sql, "DELETE ... RETURNING"));
    }
    if !del.order_by.is_empty() || del.limit.is_some() {
        return Err(RmError::unsupported(
            sql,
            "ORDER BY or LIMIT in a multi-table DELETE",
        ));
    }
    let from = match &del.from {
        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
    };
    // With USING the FROM list names the targets and USING joins; otherwise the list before
    // FROM names them.
    let (target_names, source): (Vec<String>, &[TableWithJoins]) = match &del.using {
        Some(using) => (
            tables_of(sql, from)?
                .iter()
                .map(|t| t.qualifier().to_string())
                .collect(),
            using,
        ),
        None => (del.tables.iter().map(last_ident).collect(), from),
    };
    if target_names.is_empty() {
        return Err(RmError::unsupported(
            sql,
            "a multi-table DELETE without target tables",
        ));
    }
    let tables = tables_of(sql, source)?;
    let mut targets = Vec::new();
    for name in target_names {
        let table = find_table(&tables, &name).ok_or_else(|| {
            RmError::unsupported(
                sql,
                format!("DELETE target `{name}` is not in its FROM clause"),
            )
        })?;
        targets.push((table.qualifier().to_string(), Vec::new()));
    }
    let from_text = source
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut params = Vec::new();
    for twj in source {
        params.extend(ph.params_of(sql, twj)?);
    }
    params.extend(ph.params_of(sql, &del.selection)?);
    Ok(JoinedStmt {
        kind: JoinedKind::Delete,
        from: from_text,
        tables,
        targets,
        unqualified: Vec::new(),
        selection: del.selection.clone(),
        params,
    })
}

#[cfg(test)]
#[path = "recognize_tests.rs"]
mod tests;
