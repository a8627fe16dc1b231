//! Recognition of multi-table UPDATE and DELETE into [`JoinedStmt`] (imaged by `joined.rs`):
//! the tables of the FROM clause, the written tables with their SET columns, and the `?`s of
//! the FROM clause and WHERE condition that image queries repeat.

use sqlparser::ast::{AssignmentTarget, FromTable, ObjectNamePart, TableFactor, TableWithJoins};

use super::sql_expr::Placeholders;
use super::statement::{JoinedKind, JoinedStmt, TableRef};
use super::table_name::{last_ident, table_ref};
use crate::error::RmError;

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
pub(crate) fn joined_update(
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
pub(crate) fn is_joined_delete(del: &sqlparser::ast::Delete) -> bool {
    let from = match &del.from {
        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
    };
    !del.tables.is_empty()
        || del.using.is_some()
        || from.len() > 1
        || from.iter().any(|t| !t.joins.is_empty())
}

/// `DELETE a[, b] FROM a JOIN b ...` or `DELETE FROM a[, b] USING a JOIN b ...`.
pub(crate) fn joined_delete(
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
