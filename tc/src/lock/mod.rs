//! Global row locks of AT branches: the lock-key grammar ([`parse_lock_key`]), the
//! [`LockManager`] trait, and the in-memory sharded implementation ([`ShardedLockManager`]).
//!
//! A row is identified by `(resourceId, table, pk)` (at-mode 4, tc-semantics 6). A row held by a
//! transaction may be re-taken by any branch of the same transaction; it stays owned by the
//! branch that took it first, so it is released only when that branch is released. Acquiring a
//! branch's whole lock key is all-or-nothing. A store shared by several TCs (MySQL
//! `lock_table`) implements the trait so conflicts are decided in the database.

use futures::future::{BoxFuture, Either, Ready};
use thiserror::Error;

use crate::store::StoreError;

mod sharded;

pub use sharded::ShardedLockManager;

/// Who holds a row: the global transaction and the branch that took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOwner {
    /// Transaction id of the global transaction.
    pub transaction_id: i64,
    /// Branch that took the row.
    pub branch_id: i64,
}

/// Why rows could not be locked or checked.
#[derive(Debug, Error)]
pub enum LockError {
    /// A row is held by another global transaction; nothing was taken.
    #[error("row {table}:{pk} of {resource_id} is held by transaction {holder_transaction_id}")]
    Conflict {
        /// Resource of the row.
        resource_id: String,
        /// Table of the row.
        table: String,
        /// Primary key of the row.
        pk: String,
        /// Transaction id of the holder.
        holder_transaction_id: i64,
    },
    /// The lock key does not follow `table:pk1,pk2;table2:pk`.
    #[error(transparent)]
    Malformed(#[from] LockKeyError),
    /// A lock store (database) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A lock key that cannot be parsed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("malformed lock key: group {group:?} {reason}; lock keys are `table:pk1,pk2;table2:pk` and PK values must not contain ';', ':' or ','")]
pub struct LockKeyError {
    /// The offending `;`-separated group (cut to 64 bytes).
    pub group: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// What a lock manager call resolves to: an immediate value (no allocation) or a boxed future.
pub type LockFuture<'a, T> =
    Either<Ready<Result<T, LockError>>, BoxFuture<'a, Result<T, LockError>>>;

/// A lock call that completed synchronously.
pub fn ready<'a, T>(value: Result<T, LockError>) -> LockFuture<'a, T> {
    Either::Left(futures::future::ready(value))
}

/// A lock call that does I/O.
pub fn boxed<'a, T>(
    fut: impl std::future::Future<Output = Result<T, LockError>> + Send + 'a,
) -> LockFuture<'a, T> {
    Either::Right(Box::pin(fut))
}

/// Decides and records global row locks. Object safe.
pub trait LockManager: Send + Sync + std::fmt::Debug + 'static {
    /// Takes every row of `lock_key` for `owner`, or none of them. Rows already held by the
    /// same transaction are left with their current owner.
    fn acquire<'a>(
        &'a self,
        owner: LockOwner,
        xid: &'a str,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> LockFuture<'a, ()>;

    /// Releases the rows of `lock_key` that `owner`'s branch holds.
    fn release<'a>(
        &'a self,
        owner: LockOwner,
        xid: &'a str,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> LockFuture<'a, ()>;

    /// True when no row of `lock_key` is held by a transaction other than `transaction_id`;
    /// with `None` (a `@GlobalLock` query without a transaction), any holder makes it false.
    fn is_lockable<'a>(
        &'a self,
        transaction_id: Option<i64>,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> LockFuture<'a, bool>;

    /// Releases every row the transaction holds in one step, when the manager can (a database:
    /// one `DELETE` by xid). `None`: release branch by branch with [`release`](Self::release).
    fn release_transaction<'a>(
        &'a self,
        transaction_id: i64,
        xid: &'a str,
    ) -> Option<LockFuture<'a, ()>> {
        let _ = (transaction_id, xid);
        None
    }

    /// Number of rows held (for stats; a database-backed manager may estimate).
    fn held_rows(&self) -> usize;
}

/// Calls `row(table, pk)` for every row of a lock key, without allocating.
///
/// Grammar (at-mode 4): groups separated by `;`, each `table:pk[,pk...]`, blank PKs skipped.
/// Seata 1.2 silently stops at the first malformed group and locks only the rows before it,
/// which leaves later rows unprotected; we reject the whole key instead so the RM fails loudly
/// rather than writing unlocked rows. Empty groups (e.g. a trailing `;`) are skipped. The key is
/// validated before the first call, so a malformed key calls `row` for nothing.
pub fn for_each_row<'k>(
    lock_key: &'k str,
    mut row: impl FnMut(&'k str, &'k str),
) -> Result<(), LockKeyError> {
    validate_lock_key(lock_key)?;
    for (table, pks) in groups(lock_key) {
        for pk in pks.split(',').filter(|pk| !pk.trim().is_empty()) {
            row(table, pk);
        }
    }
    Ok(())
}

/// Rows named by a lock key, counted without validating it (for size limits: one pass, no
/// allocation). Equals the number of [`for_each_row`] calls for a valid key.
pub fn count_rows(lock_key: &str) -> usize {
    groups(lock_key)
        .map(|(_, pks)| pks.split(',').filter(|pk| !pk.trim().is_empty()).count())
        .sum()
}

/// The `(table, pk)` pairs of a lock key (see [`for_each_row`]).
pub fn parse_lock_key(lock_key: &str) -> Result<Vec<(&str, &str)>, LockKeyError> {
    let mut rows = Vec::new();
    for_each_row(lock_key, |t, pk| rows.push((t, pk)))?;
    Ok(rows)
}

fn groups(lock_key: &str) -> impl Iterator<Item = (&str, &str)> {
    lock_key
        .split(';')
        .filter(|g| !g.trim().is_empty())
        .filter_map(|g| g.split_once(':'))
}

fn validate_lock_key(lock_key: &str) -> Result<(), LockKeyError> {
    for group in lock_key.split(';').filter(|g| !g.trim().is_empty()) {
        let Some((table, pks)) = group.split_once(':') else {
            return Err(malformed(
                group,
                "has no ':' between table and primary keys",
            ));
        };
        if table.is_empty() {
            return Err(malformed(group, "has an empty table name"));
        }
        if pks.split(',').all(|pk| pk.trim().is_empty()) {
            return Err(malformed(group, "has no primary key"));
        }
    }
    Ok(())
}

fn malformed(group: &str, reason: &'static str) -> LockKeyError {
    let mut cut = group.len().min(64);
    while !group.is_char_boundary(cut) {
        cut -= 1;
    }
    LockKeyError {
        group: group.get(..cut).unwrap_or_default().to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_table_and_composite_keys() {
        let rows = parse_lock_key("account_tbl:1,2;order_tbl:17;t:1_a,2_b").unwrap();
        assert_eq!(
            rows,
            vec![
                ("account_tbl", "1"),
                ("account_tbl", "2"),
                ("order_tbl", "17"),
                ("t", "1_a"),
                ("t", "2_b"),
            ]
        );
    }

    #[test]
    fn skips_blank_pks_and_empty_groups() {
        assert_eq!(
            parse_lock_key("t:1,,2;").unwrap(),
            vec![("t", "1"), ("t", "2")]
        );
        assert!(parse_lock_key("").unwrap().is_empty());
    }

    #[test]
    fn counts_rows_like_parse() {
        for key in [
            "account_tbl:1,2;order_tbl:17;t:1_a,2_b",
            "t:1,,2;",
            "",
            "a:1;b:2,3",
        ] {
            assert_eq!(count_rows(key), parse_lock_key(key).unwrap().len(), "{key}");
        }
    }

    #[test]
    fn rejects_group_without_colon_or_pks() {
        let e = parse_lock_key("t:1;oops").unwrap_err();
        assert_eq!(e.group, "oops");
        assert!(parse_lock_key("t:").is_err());
        assert!(parse_lock_key(":1").is_err());
    }
}
