//! Conversions between Seata's table rows and the store's types: the `lock_table` row key
//! (`resourceId^^^table^^^pk`) with the column size limits of the 1.2 DDL, and decoding of
//! `global_table`/`branch_table` rows. Decoding goes through `from_row_opt` so a row an
//! operator edited by hand becomes a [`StoreError::Corrupt`], never a panic.

use mysql_async::{from_row_opt, Row};
use seata_protocol::{BranchStatus, BranchType, GlobalStatus};

use crate::lock::{for_each_row, LockError, LockKeyError};
use crate::store::{StoreError, StoredBranch, StoredGlobal};

/// Separator of the parts of a row key (Seata's `LockStoreDataBaseDAO`).
const ROW_KEY_SEP: &str = "^^^";
/// `lock_table.row_key` is VARCHAR(128).
const MAX_ROW_KEY: usize = 128;
/// `lock_table.table_name` is VARCHAR(32).
const MAX_TABLE: usize = 32;
/// `lock_table.pk` is VARCHAR(36).
const MAX_PK: usize = 36;

/// One row of a branch's lock key, ready for `lock_table`. Owned, because a register
/// travels to a writer task (`writer.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LockRow {
    /// Primary key of `lock_table`.
    pub(super) row_key: String,
    /// Table of the locked row.
    pub(super) table: String,
    /// Primary key value of the locked row.
    pub(super) pk: String,
}

/// The rows of `lock_key`, de-duplicated and sorted by row key. Sorting gives every
/// transaction the same insert order, which keeps InnoDB deadlocks between overlapping
/// registers rare. A row that does not fit the 1.2 columns is rejected: MySQL would otherwise
/// truncate it (or fail the whole register with an opaque error), and truncated keys of
/// different rows could collide.
pub(super) fn lock_rows(resource_id: &str, lock_key: &str) -> Result<Vec<LockRow>, LockError> {
    let mut rows = Vec::new();
    let mut too_long = None;
    for_each_row(lock_key, |table, pk| {
        let row_key = format!("{resource_id}{ROW_KEY_SEP}{table}{ROW_KEY_SEP}{pk}");
        if row_key.chars().count() > MAX_ROW_KEY
            || table.chars().count() > MAX_TABLE
            || pk.chars().count() > MAX_PK
        {
            too_long.get_or_insert_with(|| format!("{table}:{pk}"));
        }
        rows.push(LockRow {
            row_key,
            table: table.to_owned(),
            pk: pk.to_owned(),
        });
    })?;
    if let Some(group) = too_long {
        return Err(LockError::Malformed(LockKeyError {
            group,
            reason: "does not fit lock_table (resourceId^^^table^^^pk at most 128 characters, table 32, pk 36)",
        }));
    }
    rows.sort_by(|a, b| a.row_key.cmp(&b.row_key));
    rows.dedup_by(|a, b| a.row_key == b.row_key);
    Ok(rows)
}

/// `?, ?, ...` with `n` placeholders.
pub(super) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// `VALUES` list of `n` copies of `row` (e.g. `(?, ?, now())`), for multi-row statements.
pub(super) fn repeat_row(n: usize, row: &str) -> String {
    let mut s = String::with_capacity(n * (row.len() + 2));
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(row);
    }
    s
}

/// Columns of [`global_from_row`], in order.
pub(super) const GLOBAL_COLUMNS: &str = "xid, transaction_id, status, application_id, \
     transaction_service_group, transaction_name, timeout, begin_time";

type GlobalTuple = (
    String,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i64>,
);

type BranchTuple = (
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Decodes a row of [`GLOBAL_COLUMNS`]. A missing transaction id is taken from the XID.
pub(super) fn global_from_row(row: Row) -> Result<StoredGlobal, StoreError> {
    let (xid, tid, status, app, group, name, timeout, begin): GlobalTuple =
        from_row_opt(row).map_err(|e| corrupt("global_table", e))?;
    let transaction_id = match tid.or_else(|| crate::id::transaction_id_of(&xid)) {
        Some(t) => t,
        None => {
            return Err(StoreError::Corrupt(format!(
                "global_table row {xid} has no transaction id"
            )))
        }
    };
    Ok(StoredGlobal {
        transaction_id,
        status: global_status(status)?,
        xid,
        application_id: app.unwrap_or_default(),
        transaction_service_group: group.unwrap_or_default(),
        transaction_name: name.unwrap_or_default(),
        timeout_ms: timeout.unwrap_or(0),
        begin_time_ms: begin.unwrap_or(0),
    })
}

/// Decodes a row of `branch_id, branch_type, status, resource_id, client_id,
/// application_data`. The lock key is not stored in `branch_table` (the
/// rows are in `lock_table`, released by branch id), so it comes back empty.
pub(super) fn branch_from_row(row: Row) -> Result<StoredBranch, StoreError> {
    branch_of(from_row_opt(row).map_err(|e| corrupt("branch_table", e))?)
}

fn branch_of(columns: BranchTuple) -> Result<StoredBranch, StoreError> {
    let (branch_id, branch_type, status, resource_id, client_id, application_data) = columns;
    Ok(StoredBranch {
        branch_id,
        branch_type: branch_type_of(branch_type.as_deref().unwrap_or_default())?,
        status: u8::try_from(status.unwrap_or(0))
            .ok()
            .and_then(|c| BranchStatus::try_from(c).ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!("branch {branch_id} has status {status:?}"))
            })?,
        resource_id: resource_id.unwrap_or_default(),
        lock_key: String::new(),
        client_id: client_id.unwrap_or_default(),
        application_data: application_data.unwrap_or_default(),
    })
}

/// Columns of [`branch_with_xid_from_row`], in order.
pub(super) const BRANCH_COLUMNS_WITH_XID: &str =
    "xid, branch_id, branch_type, status, resource_id, client_id, application_data";

/// Decodes a row of [`BRANCH_COLUMNS_WITH_XID`]: the branch and the XID it belongs to.
pub(super) fn branch_with_xid_from_row(row: Row) -> Result<(String, StoredBranch), StoreError> {
    type Tuple = (
        String,
        i64,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let (xid, branch_id, branch_type, status, resource_id, client_id, application_data): Tuple =
        from_row_opt(row).map_err(|e| corrupt("branch_table", e))?;
    let branch = branch_of((
        branch_id,
        branch_type,
        status,
        resource_id,
        client_id,
        application_data,
    ))?;
    Ok((xid, branch))
}

/// A `global_table.status` code.
pub(super) fn global_status(code: i64) -> Result<GlobalStatus, StoreError> {
    u8::try_from(code)
        .ok()
        .and_then(|c| GlobalStatus::try_from(c).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!("global_table status {code} is not a GlobalStatus"))
        })
}

/// `branch_table.branch_type` holds the enum name (tc-semantics 1).
fn branch_type_of(name: &str) -> Result<BranchType, StoreError> {
    [
        BranchType::At,
        BranchType::Tcc,
        BranchType::Saga,
        BranchType::Xa,
    ]
    .into_iter()
    .find(|t| t.java_name() == name)
    .ok_or_else(|| StoreError::Corrupt(format!("branch_type {name:?} is not AT, TCC, SAGA or XA")))
}

fn corrupt(table: &str, e: mysql_async::FromRowError) -> StoreError {
    StoreError::Corrupt(format!("{table} row has unexpected column types: {e}"))
}

/// `NULL` for an empty string (Seata leaves unset columns NULL).
pub(super) fn null_if_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_rows_are_sorted_deduplicated_and_keyed_like_seata() {
        let rows = lock_rows("jdbc:mysql://db/x", "t:2,1;t:1").unwrap();
        let keys: Vec<&str> = rows.iter().map(|r| r.row_key.as_str()).collect();
        assert_eq!(
            keys,
            ["jdbc:mysql://db/x^^^t^^^1", "jdbc:mysql://db/x^^^t^^^2"]
        );
        assert_eq!((rows[0].table.as_str(), rows[0].pk.as_str()), ("t", "1"));
    }

    #[test]
    fn lock_rows_too_long_for_the_columns_are_rejected() {
        let long_pk = "9".repeat(37);
        assert!(matches!(
            lock_rows("db", &format!("t:{long_pk}")),
            Err(LockError::Malformed(_))
        ));
        let long_resource = "r".repeat(125);
        assert!(lock_rows(&long_resource, "t:1").is_err());
        assert!(lock_rows("db", "t:oops;").is_ok());
    }

    #[test]
    fn placeholders_are_comma_separated() {
        assert_eq!(placeholders(3), "?, ?, ?");
        assert_eq!(placeholders(1), "?");
        assert_eq!(repeat_row(2, "(?, now())"), "(?, now()), (?, now())");
    }

    #[test]
    fn branch_type_names_round_trip() {
        for t in [
            BranchType::At,
            BranchType::Tcc,
            BranchType::Saga,
            BranchType::Xa,
        ] {
            assert_eq!(branch_type_of(t.java_name()).unwrap(), t);
        }
        assert!(branch_type_of("XX").is_err());
        assert!(global_status(99).is_err());
        assert_eq!(global_status(8).unwrap(), GlobalStatus::AsyncCommitting);
    }
}
