//! The text of one round trip for an UPDATE or DELETE (run by `driver/batch.rs`): its before image (`SELECT ... FOR UPDATE`), the
//! statement itself and, for an UPDATE, a guess at the after image (its own filter read
//! again), sent as one multi-statement text query with every value written in as a literal
//! (`literal.rs`). Sent one by one these cost three round trips. An INSERT travels with the
//! read of its rows by key.
//!
//! Why this changes nothing but the round trips:
//! - MySQL runs the statements in order and stops at the first that fails. A failed image
//!   leaves the statement unrun, and a failed statement changed nothing (statements are
//!   atomic), as when they are sent one by one.
//! - The guess is taken as the after image only when it holds exactly the before image's keys:
//!   rows with the same keys, read in the same transaction after our own update of rows we
//!   hold locked, are the rows a read by key would give. Otherwise (a phantom, a filter that
//!   is not deterministic) the after image is read by key as before. An UPDATE that sets a
//!   column its filter reads sends no guess.
//! - An UPDATE whose SETs are integer arithmetic sends no guess: its after image follows from
//!   the before image (`int_set.rs`), unless the statement warned.
//! - Text-protocol values go through the same conversion as binary ones, which is exact for
//!   every type but FLOAT and DOUBLE: MySQL's text form of a double need not round-trip, and
//!   an image off by the last digit would look like a dirty write at rollback. Statements
//!   whose images hold such columns are not batched, nor are statements with a value that has
//!   no exact literal.

use std::ops::ControlFlow;

use mysql_async::{Params, Value};
use sqlparser::ast::{visit_expressions, Expr};

use super::column_type::Kind;
use super::image_sql::{column_list, quote};
use super::int_set;
use super::literal::{inline_params, sql_literal};
use super::plan::{KeySource, Plan};
use super::sql_expr::column_name;
use super::statement::Filter;
use super::undo_log::SqlType;

/// The statements of one batch.
pub(crate) struct Batch {
    pub(crate) sql: String,
    /// An INSERT and its after image; otherwise a before image, an UPDATE or DELETE and
    /// perhaps a guess at the after image.
    pub(crate) insert: bool,
    pub(crate) guess_after: bool,
    /// The UPDATE's integer arithmetic gives its after image (`int_set.rs`): no guess is sent.
    pub(crate) computes_after: bool,
}

impl Batch {
    /// The batch for `plan`'s statement, or `None` when it must be sent on its own.
    pub(crate) fn build(
        plan: &Plan<'_>,
        sql: &str,
        params: &Params,
        text_protocol: bool,
    ) -> Option<Batch> {
        let exact = plan.columns.iter().all(|c| {
            plan.meta
                .column(c)
                .is_some_and(|m| !matches!(m.kind, Kind::Float | Kind::Double))
        });
        if !exact {
            return None;
        }
        let params: &[Value] = match params {
            _ if text_protocol => &[],
            Params::Empty => &[],
            Params::Positional(p) => p,
            Params::Named(_) => return None,
        };
        let statement = inline_params(sql, params)?;
        let Some(filter) = plan.filter else {
            return insert_batch(plan, statement);
        };
        let select = inline_params(
            &format!(
                "SELECT {} FROM {}{}",
                column_list(&plan.columns),
                plan.table.from_sql(),
                filter.render()
            ),
            &filter.params,
        )?;
        let computes_after = plan
            .int_sets
            .is_some_and(|sets| int_set::applies(&plan.meta, sets));
        let guess_after = plan.sql_type == SqlType::Update
            && !computes_after
            && !reads_any(filter, plan.set_columns);
        let mut batch = format!("{select} FOR UPDATE;{statement}");
        if guess_after {
            // In key order, as a read by key returns the rows (the lock key and the undo log
            // list them in image order).
            let keys: Vec<String> = plan.meta.primary_keys.iter().map(|k| quote(k)).collect();
            let keys = keys.join(", ");
            if filter.order_by.is_empty() && filter.limit.is_none() {
                batch.push_str(&format!(";{select} ORDER BY {keys}"));
            } else {
                // The filter's own ORDER BY and LIMIT pick the rows; the outer one sorts them.
                batch.push_str(&format!(
                    ";SELECT * FROM ({select}) AS seata_after ORDER BY {keys}"
                ));
            }
        }
        Some(Batch {
            sql: batch,
            guess_after,
            computes_after,
            insert: false,
        })
    }
}

/// An INSERT and the read of its rows by key: explicit keys as literals, generated ones as
/// `LAST_INSERT_ID()` plus the row's place times `@@auto_increment_increment`, evaluated by
/// MySQL right after the INSERT (the numbering `exec.rs` assumes when it reads them apart).
fn insert_batch(plan: &Plan<'_>, statement: String) -> Option<Batch> {
    let pk_cols = plan.meta.primary_key_columns();
    let mut rows = Vec::with_capacity(plan.insert_keys.len());
    for (i, row) in plan.insert_keys.iter().enumerate() {
        let values = row
            .iter()
            .zip(&pk_cols)
            .map(|(key, col)| match key {
                KeySource::Explicit(v) => sql_literal(&v.to_mysql(col.data_type == "year")),
                KeySource::Generated if i == 0 => Some("LAST_INSERT_ID()".to_string()),
                KeySource::Generated => Some(format!(
                    "LAST_INSERT_ID() + {i} * @@auto_increment_increment"
                )),
            })
            .collect::<Option<Vec<_>>>()?;
        rows.push(values);
    }
    let keys: Vec<String> = pk_cols.iter().map(|c| quote(&c.name)).collect();
    let condition = match keys.as_slice() {
        [one] => format!(
            "{one} IN ({})",
            rows.iter()
                .map(|r| r.join(""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => rows
            .iter()
            .map(|r| {
                let pairs: Vec<String> = keys
                    .iter()
                    .zip(r)
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                format!("({})", pairs.join(" AND "))
            })
            .collect::<Vec<_>>()
            .join(" OR "),
    };
    if rows.is_empty() || rows.len() > 1000 {
        return None;
    }
    Some(Batch {
        sql: format!(
            "{statement};SELECT {} FROM {} WHERE {condition} ORDER BY {}",
            column_list(&plan.columns),
            plan.table.name,
            keys.join(", ")
        ),
        guess_after: true,
        computes_after: false,
        insert: true,
    })
}

/// Whether the filter's WHERE or ORDER BY names any of `columns`.
fn reads_any(filter: &Filter, columns: &[String]) -> bool {
    let hit = |e: &Expr| {
        if column_name(e).is_some_and(|n| columns.iter().any(|c| c.eq_ignore_ascii_case(n))) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    visit_expressions(&filter.selection, hit).is_break()
        || visit_expressions(&filter.order_by, hit).is_break()
}
