//! The one body every call of the example carries: the shop's order, from the load driver to
//! the front and from there (or from the coordinator) to each branch service.

use serde::{Deserialize, Serialize};

/// Price of one item, in cents.
pub const PRICE: i64 = 250;

/// One order: `qty` items of `sku` for user `user_id`, paying `amount`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Unique in the run (and across the modes of `--mode all`): the order row's primary key.
    pub order_id: u64,
    /// The buyer.
    pub user_id: u32,
    /// The item.
    pub sku: u32,
    /// How many.
    pub qty: i64,
    /// `qty * PRICE`.
    pub amount: i64,
}

impl OrderRequest {
    /// Order `order_id`, spread over `users` buyers and `skus` items.
    pub fn nth(order_id: u64, users: u32, skus: u32) -> OrderRequest {
        let qty = 1 + (order_id % 3) as i64;
        OrderRequest {
            order_id,
            user_id: (order_id % u64::from(users)) as u32,
            sku: (order_id.wrapping_mul(7) % u64::from(skus)) as u32,
            qty,
            amount: qty * PRICE,
        }
    }
}
