//! Transaction and branch ids, and XID formatting/parsing.
//!
//! Ids are snowflake-style positive `i64`s: `0 | 41 bits ms since 2024-01-01 UTC | 10 bits
//! server node | 12 bits sequence`. The node bits keep several TCs apart; the timestamp keeps
//! restarts apart, and [`IdGenerator::observe`] raises the generator past every id recovered
//! from the store so a clock stepped backwards across a restart cannot repeat an id. Within one
//! process ids are strictly increasing: when a millisecond's 4096 sequence numbers run out (or
//! the clock goes backwards), the generator borrows the next millisecond instead of waiting.
//! (Seata 1.2 used a counter seeded from the seconds since New Year instead; 1.3 moved to a
//! snowflake like this one. The ids only need to be unique, so either is wire compatible.)

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 2024-01-01T00:00:00Z in ms since the Unix epoch.
const EPOCH_MS: i64 = 1_704_067_200_000;
const SEQUENCE_BITS: u32 = 12;
const NODE_BITS: u32 = 10;
const SEQUENCE_MASK: i64 = (1 << SEQUENCE_BITS) - 1;
const TIMESTAMP_SHIFT: u32 = SEQUENCE_BITS + NODE_BITS;
/// Largest server node (10 bits).
pub const MAX_SERVER_NODE: u16 = (1 << NODE_BITS) - 1;

/// Hands out unique ids for one TC process.
#[derive(Debug)]
pub struct IdGenerator {
    node_bits: i64,
    last: AtomicI64,
}

impl IdGenerator {
    /// A generator for `server_node` (only its low 10 bits are used; config validation keeps
    /// it in 0..=1023).
    pub fn new(server_node: u16) -> Self {
        IdGenerator {
            node_bits: i64::from(server_node & MAX_SERVER_NODE) << SEQUENCE_BITS,
            last: AtomicI64::new(0),
        }
    }

    /// The next id, with the wall clock as time source.
    pub fn next_id(&self) -> i64 {
        self.next_id_at(now_ms())
    }

    /// The next id as if the wall clock read `now_ms`; strictly greater than every id this
    /// generator returned or observed before.
    pub fn next_id_at(&self, now_ms: i64) -> i64 {
        let base = ((now_ms - EPOCH_MS).max(0) << TIMESTAMP_SHIFT) | self.node_bits;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = if base > last {
                base
            } else if last & SEQUENCE_MASK == SEQUENCE_MASK {
                // Sequence exhausted: borrow the next millisecond, keeping our node bits.
                (((last >> TIMESTAMP_SHIFT) + 1) << TIMESTAMP_SHIFT) | self.node_bits
            } else {
                last + 1
            };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// Raises the generator so every later id is greater than `id` (used at recovery).
    pub fn observe(&self, id: i64) {
        self.last.fetch_max(id, Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The transaction id of an XID: the text after the last `:` (Seata's `XID.getTransactionId`).
pub fn transaction_id_of(xid: &str) -> Option<i64> {
    xid.rsplit_once(':').and_then(|(_, id)| id.parse().ok())
}

/// The XID prefix `ip:port:` this TC writes before every transaction id.
pub fn xid_prefix(ip: std::net::IpAddr, port: u16) -> String {
    format!("{ip}:{port}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_increasing_and_carry_the_node() {
        let g = IdGenerator::new(5);
        let now = EPOCH_MS + 1_000;
        let a = g.next_id_at(now);
        let b = g.next_id_at(now);
        assert!(a > 0 && b == a + 1);
        assert_eq!((a >> SEQUENCE_BITS) & i64::from(MAX_SERVER_NODE), 5);
        let far = g.next_id_at(EPOCH_MS + (1i64 << 40));
        assert!(far > b && far > 0);
    }

    #[test]
    fn exhausted_sequence_and_backward_clock_still_increase() {
        let g = IdGenerator::new(1);
        let now = EPOCH_MS + 10;
        let mut prev = 0;
        for _ in 0..5000 {
            let id = g.next_id_at(now);
            assert!(id > prev);
            assert_eq!((id >> SEQUENCE_BITS) & i64::from(MAX_SERVER_NODE), 1);
            prev = id;
        }
        assert!(g.next_id_at(now - 5) > prev);
    }

    #[test]
    fn two_nodes_never_collide_in_the_same_millisecond() {
        let (a, b) = (IdGenerator::new(1), IdGenerator::new(2));
        let now = EPOCH_MS + 77;
        let xs: std::collections::HashSet<i64> = (0..100)
            .flat_map(|_| [a.next_id_at(now), b.next_id_at(now)])
            .collect();
        assert_eq!(xs.len(), 200);
    }

    #[test]
    fn observe_raises_past_recovered_ids() {
        let g = IdGenerator::new(1);
        let recovered = g.next_id_at(EPOCH_MS + 1_000_000);
        let g2 = IdGenerator::new(1);
        g2.observe(recovered);
        assert!(g2.next_id_at(EPOCH_MS + 5) > recovered);
    }

    #[test]
    fn parses_transaction_id_after_last_colon() {
        assert_eq!(
            transaction_id_of("10.0.0.1:8091:2000042948"),
            Some(2000042948)
        );
        assert_eq!(transaction_id_of("::1:8091:42"), Some(42));
        assert_eq!(transaction_id_of("nocolon"), None);
        assert_eq!(transaction_id_of("a:b:x"), None);
    }
}
