//! The coordinator's scrape-time gauges: sessions by status and row locks held, read from
//! the session map and the lock manager when `/metrics` is scraped, never kept up to date on
//! the request paths.

use crate::metrics::gauges::{SessionGauges, StatusCounts};

use super::Coordinator;

impl SessionGauges for Coordinator {
    fn sessions_by_status(&self) -> StatusCounts {
        let mut counts = [0u64; 16];
        // Each session's mutex is taken alone and briefly (the lock order of `mod.rs`: the
        // map may lock sessions, never the other way round).
        for entry in self.sessions.iter() {
            let status = entry.value().status();
            if let Some(c) = counts.get_mut(usize::from(status.code())) {
                *c += 1;
            }
        }
        counts
    }

    fn row_locks_held(&self) -> u64 {
        u64::try_from(self.locks.held_rows()).unwrap_or(u64::MAX)
    }
}
