//! Dirty rollbacks: a branch whose rows were changed after phase one by someone outside the
//! global lock cannot be undone without destroying that change (at-mode.md 7.1). Seata 1.2
//! retries such a rollback forever; we stop, keep the undo log, and describe the conflict:
//!
//! - [`DirtyReport`]: per differing row its table, primary key and the before, after and
//!   current values, as JSON for operators (from `AtResourceManager::dirty_report`);
//! - [`DirtyReport::summary`]: the short JSON the RM puts in its BranchRollback answer. Seata's
//!   codec carries a response message only with resultCode Failed and cuts it to 128 UTF-16
//!   units, so it names the table, the keys that fit and how many did not; the XID and branch
//!   id travel in the answer itself.

use serde::Serialize;

use super::image::{diff, Row, TableRecords};
use super::undo_log::SqlUndoLog;
use super::value::FieldValue;

/// The longest message Seata's codec keeps (UTF-16 code units).
const MESSAGE_MAX: usize = 128;

/// Why a branch's rollback was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirtyReport {
    /// The global transaction.
    pub xid: String,
    /// The branch.
    pub branch_id: i64,
    /// The resource (`jdbc:mysql://host:port/db`).
    pub resource_id: String,
    /// The rows that differ from the after image, in undo order.
    pub rows: Vec<DirtyRow>,
}

/// One row changed after phase one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirtyRow {
    /// The table (metadata name).
    pub table: String,
    /// The primary key in lock-key form (`1`, `1_a` for a composite key).
    pub pk: String,
    /// The row before the branch's statement (columns of the image), or `None` if it inserted
    /// the row.
    pub before: Option<Vec<(String, Option<String>)>>,
    /// The row as the branch left it, or `None` if it deleted the row.
    pub after: Option<Vec<(String, Option<String>)>>,
    /// The row now, or `None` if it is gone.
    pub current: Option<Vec<(String, Option<String>)>>,
}

/// `(column, value)` pairs, values in Java's `String.valueOf` form and SQL NULL as `None`.
fn columns(row: &Row) -> Vec<(String, Option<String>)> {
    row.fields
        .iter()
        .map(|f| {
            let v = match &f.value {
                FieldValue::Null => None,
                v => Some(v.lock_key_text()),
            };
            (f.name.clone(), v)
        })
        .collect()
}

fn find<'a>(image: &'a TableRecords, key: &str) -> Option<&'a Row> {
    image.rows.iter().find(|r| r.key_text() == key)
}

/// The rows of `item` that `current` (the rows read by the undo keys) shows changed after
/// phase one; empty when undoing is safe (nothing changed, or it is already undone).
pub(crate) fn dirty_rows(item: &SqlUndoLog, current: &TableRecords) -> Vec<DirtyRow> {
    if diff(&item.before_image, &item.after_image).is_empty()
        || diff(&item.after_image, current).is_empty()
        || diff(&item.before_image, current).is_empty()
    {
        return Vec::new();
    }
    diff(&item.after_image, current)
        .into_iter()
        .map(|pk| DirtyRow {
            table: current.table_name.clone(),
            before: find(&item.before_image, &pk).map(columns),
            after: find(&item.after_image, &pk).map(columns),
            current: find(current, &pk).map(columns),
            pk,
        })
        .collect()
}

impl DirtyReport {
    /// The whole report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The BranchRollback answer's message: `{"dirty":"<table>","pks":[...],"more":n}`, at most
    /// 128 UTF-16 units (see the module docs).
    pub fn summary(&self) -> String {
        let table = self.rows.first().map_or("", |r| r.table.as_str());
        let mut pks: Vec<&str> = Vec::new();
        let render = |pks: &[&str], more: usize| {
            serde_json::json!({ "dirty": table, "pks": pks, "more": more }).to_string()
        };
        for row in &self.rows {
            pks.push(&row.pk);
            if render(&pks, self.rows.len() - pks.len())
                .encode_utf16()
                .count()
                > MESSAGE_MAX
            {
                pks.pop();
                break;
            }
        }
        render(&pks, self.rows.len() - pks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::model::image::{Field, KeyType};
    use crate::at::model::undo_log::SqlType;

    fn image(rows: &[(i32, i32)]) -> TableRecords {
        TableRecords {
            table_name: "account".into(),
            rows: rows
                .iter()
                .map(|(id, money)| Row {
                    fields: vec![
                        Field {
                            name: "id".into(),
                            key_type: KeyType::PrimaryKey,
                            jdbc_type: 4,
                            value: FieldValue::Int(*id),
                        },
                        Field {
                            name: "money".into(),
                            key_type: KeyType::Null,
                            jdbc_type: 4,
                            value: FieldValue::Int(*money),
                        },
                    ],
                })
                .collect(),
        }
    }

    #[test]
    fn reports_rows_changed_after_phase_one_only() {
        let item = SqlUndoLog {
            sql_type: SqlType::Update,
            table_name: "account".into(),
            before_image: image(&[(1, 100), (2, 200)]),
            after_image: image(&[(1, 90), (2, 190)]),
        };
        assert!(
            dirty_rows(&item, &image(&[(1, 90), (2, 190)])).is_empty(),
            "as left"
        );
        assert!(
            dirty_rows(&item, &image(&[(1, 100), (2, 200)])).is_empty(),
            "undone"
        );
        let rows = dirty_rows(&item, &image(&[(1, 90), (2, 5)]));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].pk, "2");
        let money = |r: &Option<Vec<(String, Option<String>)>>| r.as_ref().unwrap()[1].1.clone();
        assert_eq!(money(&rows[0].before).as_deref(), Some("200"));
        assert_eq!(money(&rows[0].after).as_deref(), Some("190"));
        assert_eq!(money(&rows[0].current).as_deref(), Some("5"));
    }

    #[test]
    fn summary_fits_seatas_message_limit() {
        let row = |pk: String| DirtyRow {
            table: "account".into(),
            pk,
            before: None,
            after: None,
            current: None,
        };
        let report = DirtyReport {
            xid: "x".into(),
            branch_id: 1,
            resource_id: "r".into(),
            rows: (0..100)
                .map(|i| row(format!("{}", 1_000_000 + i)))
                .collect(),
        };
        let s = report.summary();
        assert!(s.len() <= MESSAGE_MAX, "{s}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["dirty"], "account");
        let shown = v["pks"].as_array().unwrap().len();
        assert!(shown > 0);
        assert_eq!(v["more"].as_u64().unwrap() as usize, 100 - shown);
    }
}
