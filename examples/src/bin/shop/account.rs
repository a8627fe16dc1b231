//! The `account` service: cents per user, a [`Ledger`] over the `account` table.

use crate::ledger::{Ledger, LedgerSql};

/// The account table: the balance and what TCC tries have frozen.
pub const DDL: &str = "CREATE TABLE account (user_id INT PRIMARY KEY, \
     balance BIGINT NOT NULL, frozen BIGINT NOT NULL DEFAULT 0)";

/// Rows: `(user_id, balance)`.
pub const SEED: &str = "INSERT INTO account (user_id, balance) VALUES (?, ?)";

/// The account's statements.
pub static SQL: LedgerSql = LedgerSql {
    take: "UPDATE account SET balance = balance - ? WHERE user_id = ? AND balance >= ?",
    give_back: "UPDATE account SET balance = balance + ? WHERE user_id = ?",
    reserve: "UPDATE account SET balance = balance - ?, frozen = frozen + ? \
              WHERE user_id = ? AND balance >= ?",
    settle: "UPDATE account SET frozen = frozen - ? WHERE user_id = ?",
    release: "UPDATE account SET balance = balance + ?, frozen = frozen - ? WHERE user_id = ?",
};

/// What an order takes from its buyer: `amount`.
pub fn take_of(order: &crate::request::OrderRequest) -> (u32, i64) {
    (order.user_id, order.amount)
}

/// The service over its database.
pub fn ledger(backend: crate::db::Backend) -> Ledger {
    Ledger::new(backend, crate::fault::Step::Account, &SQL, take_of)
}
