//! One processing at a time per gid in this process: API writes and processing rounds of the
//! same transaction wait for each other, different transactions never do. Entries exist only
//! while someone holds or waits for them.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Per-gid async locks.
#[derive(Debug, Default)]
pub struct GidLocks {
    map: DashMap<String, Arc<Mutex<()>>>,
}

/// Held while working on one gid; releases (and forgets an unused entry) on drop.
#[derive(Debug)]
pub struct GidGuard<'a> {
    locks: &'a GidLocks,
    gid: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl GidLocks {
    /// Waits for the gid's lock.
    pub async fn lock(&self, gid: &str) -> GidGuard<'_> {
        let m = self.entry(gid);
        let guard = m.lock_owned().await;
        GidGuard {
            locks: self,
            gid: gid.to_owned(),
            guard: Some(guard),
        }
    }

    /// The gid's lock if nobody holds it.
    pub fn try_lock(&self, gid: &str) -> Option<GidGuard<'_>> {
        let m = self.entry(gid);
        match m.try_lock_owned() {
            Ok(guard) => Some(GidGuard {
                locks: self,
                gid: gid.to_owned(),
                guard: Some(guard),
            }),
            Err(_) => {
                self.forget_unused(gid);
                None
            }
        }
    }

    fn entry(&self, gid: &str) -> Arc<Mutex<()>> {
        self.map.entry(gid.to_owned()).or_default().clone()
    }

    fn forget_unused(&self, gid: &str) {
        // Counted under the shard lock, where every clone of the entry is made: 1 means only
        // the map still has it.
        self.map.remove_if(gid, |_, m| Arc::strong_count(m) == 1);
    }

    /// Whether no gid is locked or awaited.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Drop for GidGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.locks.forget_unused(&self.gid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_gid_and_entries_go_away() {
        let locks = GidLocks::default();
        let a = locks.lock("a").await;
        assert!(locks.try_lock("a").is_none());
        let b = locks.try_lock("b");
        assert!(b.is_some());
        drop(a);
        drop(b);
        assert!(locks.is_empty());
        assert!(locks.try_lock("a").is_some());
    }
}
