//! Table names in statements and undo logs: [`TableRef`]s from `sqlparser` names (schema,
//! table, alias), and the last identifier of a qualified name.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart, TableFactor, TableWithJoins};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::statement::TableRef;
use crate::error::RmError;

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

pub(crate) fn table_ref(
    sql: &str,
    name: &ObjectName,
    alias: Option<Ident>,
) -> Result<TableRef, RmError> {
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

pub(crate) fn single_table(sql: &str, twj: &TableWithJoins) -> Result<TableRef, RmError> {
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

pub(crate) fn last_ident(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.value.clone(),
        _ => name.to_string(),
    }
}
