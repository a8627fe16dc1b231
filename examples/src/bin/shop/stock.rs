//! The `stock` service: items per sku, a [`Ledger`] over the `stock` table.

use crate::ledger::{Ledger, LedgerSql};

/// The stock table: what is on the shelf and what TCC tries have put aside.
pub const DDL: &str = "CREATE TABLE stock (sku INT PRIMARY KEY, \
     available BIGINT NOT NULL, reserved BIGINT NOT NULL DEFAULT 0)";

/// Rows: `(sku, available)`.
pub const SEED: &str = "INSERT INTO stock (sku, available) VALUES (?, ?)";

/// The stock's statements.
pub static SQL: LedgerSql = LedgerSql {
    take: "UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?",
    give_back: "UPDATE stock SET available = available + ? WHERE sku = ?",
    reserve: "UPDATE stock SET available = available - ?, reserved = reserved + ? \
              WHERE sku = ? AND available >= ?",
    settle: "UPDATE stock SET reserved = reserved - ? WHERE sku = ?",
    release: "UPDATE stock SET available = available + ?, reserved = reserved - ? WHERE sku = ?",
};

/// What an order takes from stock: `qty` of its sku.
pub fn take_of(order: &crate::request::OrderRequest) -> (u32, i64) {
    (order.sku, order.qty)
}

/// The service over its database.
pub fn ledger(backend: crate::db::Backend) -> Ledger {
    Ledger::new(backend, crate::fault::Step::Stock, &SQL, take_of)
}
