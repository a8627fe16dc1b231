//! Injected faults, the same in every mode: a step that refuses a share of the orders (409, as
//! if out of stock or money), handlers that are slow, and a service that is down for a while
//! (see `service.rs` for the stop/start and `load.rs` for when).
//!
//! A refusal is a pure function of the step and the order id, so a retried call (the server
//! retries a saga action after a 500 or a timeout) gets the same answer as the first one.

use std::time::Duration;

use clap::ValueEnum;

/// One of the three branch services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Step {
    /// `order`: creates the order row.
    Order,
    /// `stock`: takes the items from stock.
    Stock,
    /// `account`: takes the money from the buyer's account.
    Account,
}

impl Step {
    /// The service's name, as in logs and database names.
    pub fn name(self) -> &'static str {
        match self {
            Step::Order => "order",
            Step::Stock => "stock",
            Step::Account => "account",
        }
    }
}

/// What each branch service is told to get wrong.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The step that refuses some orders, if any.
    pub fail_step: Option<Step>,
    /// The share of orders (%) that step refuses.
    pub fail_percent: u32,
    /// Added to every branch call.
    pub slow: Duration,
}

impl Faults {
    /// Whether `step` refuses order `order_id` (a first phase only: a second phase cannot fail).
    pub fn refuses(&self, step: Step, order_id: u64) -> bool {
        self.fail_step == Some(step) && mix(order_id) % 100 < u64::from(self.fail_percent)
    }

    /// Waits `--slow-ms`: the simulated work of a slow service.
    pub async fn slow_down(&self) {
        if !self.slow.is_zero() {
            tokio::time::sleep(self.slow).await;
        }
    }
}

/// splitmix64: spreads consecutive order ids evenly over 0..100.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
