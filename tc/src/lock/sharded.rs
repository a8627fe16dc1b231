//! [`ShardedLockManager`]: row locks in memory, spread over shards by a hash of the row key so
//! unrelated transactions rarely touch the same mutex.
//!
//! A branch's rows are grouped by shard and the shards are locked in ascending index order
//! before any row is checked: every multi-shard acquirer takes its mutexes in the same order,
//! so there is no deadlock, and the check-then-insert of the whole set is atomic
//! (all-or-nothing with no visible partial state). Release and query lock one shard at a time.
//!
//! A lock key over [`STEP_KEY_BYTES`] is taken in steps of [`STEP_ROWS`] rows with a yield to
//! the runtime between steps, so a branch locking 100,000 rows does not hold every shard, nor
//! its worker thread, for the whole set: other requests run between the steps. It is still
//! all-or-nothing (a conflict in a later step gives back the rows of the earlier ones), but a
//! concurrent acquirer may meet the rows of an earlier step before that happens and be told
//! of a conflict it would not have had: the same answer as a lock held a moment longer.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    boxed, for_each_row, parse_lock_key, ready, LockError, LockFuture, LockManager, LockOwner,
};

/// Lock keys longer than this are acquired and released in steps.
pub const STEP_KEY_BYTES: usize = 64 * 1024;
/// Rows per step of a large lock key.
pub const STEP_ROWS: usize = 4096;

/// Default shard count; a power of two so the shard index is a mask.
const DEFAULT_SHARDS: usize = 64;

type Shard = HashMap<Box<str>, LockOwner, RandomState>;

/// In-memory row locks (Seata's file/memory mode locker). Locks are not persisted; the
/// coordinator rebuilds them from the recovered AT branches' lock keys.
#[derive(Debug)]
pub struct ShardedLockManager {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

/// One row of a lock key, with its storage key `resourceId^^^table^^^pk` (Seata's row key).
struct Row<'k> {
    shard: usize,
    key: String,
    table: &'k str,
    pk: &'k str,
}

impl Default for ShardedLockManager {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardedLockManager {
    /// A manager with the default shard count.
    pub fn new() -> Self {
        Self::with_shards(DEFAULT_SHARDS)
    }

    /// A manager with `shards` shards, rounded up to a power of two (at least 1).
    pub fn with_shards(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        let hasher = RandomState::new();
        let shards = (0..n)
            .map(|_| Mutex::new(HashMap::with_hasher(hasher.clone())))
            .collect();
        ShardedLockManager { hasher, shards }
    }

    fn shard_of(&self, key: &str) -> usize {
        // Truncating the hash is fine: only the low bits pick the shard.
        (self.hasher.hash_one(key) as usize) & (self.shards.len() - 1)
    }

    fn lock_shard(&self, index: usize) -> Option<MutexGuard<'_, Shard>> {
        // A poisoned shard only means a panic elsewhere while holding it; the map itself is
        // always consistent (single inserts/removes), so keep using it.
        self.shards
            .get(index)
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Synchronous body of [`LockManager::acquire`].
    pub fn acquire_now(
        &self,
        owner: LockOwner,
        resource_id: &str,
        lock_key: &str,
    ) -> Result<(), LockError> {
        let mut rows: Vec<Row<'_>> = Vec::new();
        for_each_row(lock_key, |table, pk| {
            rows.push(self.row(resource_id, table, pk))
        })?;
        self.take_rows(owner, resource_id, rows)
    }

    fn row<'k>(&self, resource_id: &str, table: &'k str, pk: &'k str) -> Row<'k> {
        let key = row_key(resource_id, table, pk);
        Row {
            shard: self.shard_of(&key),
            key,
            table,
            pk,
        }
    }

    /// Takes all of `rows` for `owner` or none of them.
    fn take_rows(
        &self,
        owner: LockOwner,
        resource_id: &str,
        mut rows: Vec<Row<'_>>,
    ) -> Result<(), LockError> {
        if rows.is_empty() {
            return Ok(());
        }
        rows.sort_unstable_by(|a, b| a.shard.cmp(&b.shard).then_with(|| a.key.cmp(&b.key)));
        rows.dedup_by(|a, b| a.key == b.key);

        // Ascending shard order (rows are sorted by shard): see the module comment.
        let mut guards = Vec::new();
        for chunk in rows.chunk_by(|a, b| a.shard == b.shard) {
            if let Some(g) = chunk.first().and_then(|r| self.lock_shard(r.shard)) {
                guards.push(g);
            }
        }
        for (chunk, map) in rows.chunk_by(|a, b| a.shard == b.shard).zip(guards.iter()) {
            for row in chunk {
                if let Some(holder) = map.get(row.key.as_str()) {
                    if holder.transaction_id != owner.transaction_id {
                        return Err(LockError::Conflict {
                            resource_id: resource_id.to_owned(),
                            table: row.table.to_owned(),
                            pk: row.pk.to_owned(),
                            holder_transaction_id: holder.transaction_id,
                        });
                    }
                }
            }
        }
        let chunks = rows.chunk_by(|a, b| a.shard == b.shard);
        for (chunk, map) in chunks.zip(guards.iter_mut()) {
            for row in chunk {
                // A row the same transaction already holds keeps its first owner, so it is
                // released with that branch (tc-semantics 6).
                if !map.contains_key(row.key.as_str()) {
                    map.insert(row.key.as_str().into(), owner);
                }
            }
        }
        Ok(())
    }

    /// [`LockManager::acquire`] of a large key: steps of [`STEP_ROWS`] rows, yielding between
    /// them; a conflict gives back the earlier steps' rows.
    async fn acquire_in_steps(
        &self,
        owner: LockOwner,
        resource_id: &str,
        lock_key: &str,
    ) -> Result<(), LockError> {
        let pairs = parse_lock_key(lock_key)?;
        for (i, step) in pairs.chunks(STEP_ROWS).enumerate() {
            let rows = step
                .iter()
                .map(|(table, pk)| self.row(resource_id, table, pk))
                .collect();
            if let Err(e) = self.take_rows(owner, resource_id, rows) {
                for (n, done) in pairs.chunks(STEP_ROWS).take(i).enumerate() {
                    self.release_pairs(owner, resource_id, done);
                    if n % 4 == 3 {
                        tokio::task::yield_now().await;
                    }
                }
                return Err(e);
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// [`LockManager::release`] of a large key, yielding between steps.
    async fn release_in_steps(
        &self,
        owner: LockOwner,
        resource_id: &str,
        lock_key: &str,
    ) -> Result<(), LockError> {
        let pairs = parse_lock_key(lock_key)?;
        for step in pairs.chunks(STEP_ROWS) {
            self.release_pairs(owner, resource_id, step);
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    fn release_pairs(&self, owner: LockOwner, resource_id: &str, pairs: &[(&str, &str)]) {
        let mut key = String::new();
        for (table, pk) in pairs {
            write_row_key(&mut key, resource_id, table, pk);
            if let Some(mut map) = self.lock_shard(self.shard_of(&key)) {
                if map.get(key.as_str()) == Some(&owner) {
                    map.remove(key.as_str());
                }
            }
        }
    }

    /// Synchronous body of [`LockManager::release`].
    pub fn release_now(
        &self,
        owner: LockOwner,
        resource_id: &str,
        lock_key: &str,
    ) -> Result<(), LockError> {
        let mut key = String::new();
        for_each_row(lock_key, |table, pk| {
            write_row_key(&mut key, resource_id, table, pk);
            if let Some(mut map) = self.lock_shard(self.shard_of(&key)) {
                if map.get(key.as_str()) == Some(&owner) {
                    map.remove(key.as_str());
                }
            }
        })?;
        Ok(())
    }

    /// Synchronous body of [`LockManager::is_lockable`].
    pub fn is_lockable_now(
        &self,
        transaction_id: Option<i64>,
        resource_id: &str,
        lock_key: &str,
    ) -> Result<bool, LockError> {
        let mut key = String::new();
        let mut lockable = true;
        for_each_row(lock_key, |table, pk| {
            if !lockable {
                return;
            }
            write_row_key(&mut key, resource_id, table, pk);
            if let Some(map) = self.lock_shard(self.shard_of(&key)) {
                if let Some(holder) = map.get(key.as_str()) {
                    lockable = Some(holder.transaction_id) == transaction_id;
                }
            }
        })?;
        Ok(lockable)
    }

    /// The owner of one row, if held (tests and diagnostics).
    pub fn holder(&self, resource_id: &str, table: &str, pk: &str) -> Option<LockOwner> {
        let key = row_key(resource_id, table, pk);
        self.lock_shard(self.shard_of(&key))
            .and_then(|map| map.get(key.as_str()).copied())
    }

    /// Bytes of heap one held row costs: its key allocation plus its slot in a shard's table
    /// (entry, control byte, and the table's spare capacity at its 7/8 load factor).
    pub fn approx_bytes_per_row(key_len: usize) -> usize {
        let slot = std::mem::size_of::<(Box<str>, LockOwner)>() + 1;
        // Allocators round small blocks up to 16 bytes.
        key_len.div_ceil(16) * 16 + slot * 8 / 7
    }
}

fn row_key(resource_id: &str, table: &str, pk: &str) -> String {
    let mut key = String::with_capacity(resource_id.len() + table.len() + pk.len() + 6);
    write_row_key(&mut key, resource_id, table, pk);
    key
}

fn write_row_key(key: &mut String, resource_id: &str, table: &str, pk: &str) {
    key.clear();
    key.push_str(resource_id);
    key.push_str("^^^");
    key.push_str(table);
    key.push_str("^^^");
    key.push_str(pk);
}

impl LockManager for ShardedLockManager {
    fn acquire<'a>(
        &'a self,
        owner: LockOwner,
        _xid: &'a str,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> LockFuture<'a, ()> {
        if lock_key.len() > STEP_KEY_BYTES {
            return boxed(self.acquire_in_steps(owner, resource_id, lock_key));
        }
        ready(self.acquire_now(owner, resource_id, lock_key))
    }

    fn release<'a>(
        &'a self,
        owner: LockOwner,
        _xid: &'a str,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> LockFuture<'a, ()> {
        if lock_key.len() > STEP_KEY_BYTES {
            return boxed(self.release_in_steps(owner, resource_id, lock_key));
        }
        ready(self.release_now(owner, resource_id, lock_key))
    }

    fn is_lockable<'a>(
        &'a self,
        transaction_id: Option<i64>,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> LockFuture<'a, bool> {
        ready(self.is_lockable_now(transaction_id, resource_id, lock_key))
    }

    fn held_rows(&self) -> usize {
        self.shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "jdbc:mysql://db/a";

    fn owner(t: i64, b: i64) -> LockOwner {
        LockOwner {
            transaction_id: t,
            branch_id: b,
        }
    }

    fn large_key(from: usize, to: usize) -> String {
        let pks: Vec<String> = (from..to).map(|i| format!("{i:08}")).collect();
        format!("t:{}", pks.join(","))
    }

    #[tokio::test]
    async fn large_key_is_taken_in_steps_and_all_or_nothing() {
        let m = ShardedLockManager::new();
        let key = large_key(0, 3 * STEP_ROWS + 5);
        assert!(key.len() > STEP_KEY_BYTES);
        // A row of the last step is held by another transaction: nothing stays taken.
        m.acquire_now(owner(2, 21), R, &format!("t:{:08}", 3 * STEP_ROWS + 1))
            .unwrap();
        let e = m.acquire(owner(1, 11), "x", R, &key).await.unwrap_err();
        assert!(matches!(
            e,
            LockError::Conflict {
                holder_transaction_id: 2,
                ..
            }
        ));
        assert_eq!(m.held_rows(), 1);
        m.release(owner(2, 21), "y", R, &format!("t:{:08}", 3 * STEP_ROWS + 1))
            .await
            .unwrap();
        m.acquire(owner(1, 11), "x", R, &key).await.unwrap();
        assert_eq!(m.held_rows(), 3 * STEP_ROWS + 5);
        m.release(owner(1, 11), "x", R, &key).await.unwrap();
        assert_eq!(m.held_rows(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn large_key_lets_other_tasks_run_between_steps() {
        let m = std::sync::Arc::new(ShardedLockManager::new());
        let key = large_key(0, 8 * STEP_ROWS);
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran2 = ran.clone();
        // On one thread, the other task can only run if the acquisition yields.
        let other = tokio::spawn(async move {
            ran2.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        m.acquire(owner(1, 11), "x", R, &key).await.unwrap();
        let seen_before_end = ran.load(std::sync::atomic::Ordering::SeqCst);
        other.await.unwrap();
        assert!(
            seen_before_end,
            "another task ran while the large key was being locked"
        );
    }

    #[test]
    fn conflicting_set_takes_nothing() {
        let m = ShardedLockManager::with_shards(4);
        m.acquire_now(owner(1, 11), R, "t:2").unwrap();
        let e = m.acquire_now(owner(2, 21), R, "t:1,2,3;u:9").unwrap_err();
        assert!(matches!(
            e,
            LockError::Conflict { ref table, ref pk, holder_transaction_id: 1, .. }
                if table == "t" && pk == "2"
        ));
        assert_eq!(m.held_rows(), 1);
        assert!(m.holder(R, "t", "1").is_none());
    }

    #[test]
    fn same_transaction_retakes_row_and_first_branch_keeps_it() {
        let m = ShardedLockManager::new();
        m.acquire_now(owner(1, 11), R, "t:1").unwrap();
        m.acquire_now(owner(1, 12), R, "t:1,2").unwrap();
        assert_eq!(m.holder(R, "t", "1"), Some(owner(1, 11)));
        m.release_now(owner(1, 12), R, "t:1,2").unwrap();
        assert_eq!(m.holder(R, "t", "1"), Some(owner(1, 11)));
        assert!(m.holder(R, "t", "2").is_none());
        m.release_now(owner(1, 11), R, "t:1").unwrap();
        assert_eq!(m.held_rows(), 0);
    }

    #[test]
    fn same_pk_in_other_resource_or_table_is_another_row() {
        let m = ShardedLockManager::new();
        m.acquire_now(owner(1, 11), R, "t:1").unwrap();
        m.acquire_now(owner(2, 21), "jdbc:mysql://db/b", "t:1")
            .unwrap();
        m.acquire_now(owner(3, 31), R, "u:1").unwrap();
        assert_eq!(m.held_rows(), 3);
    }

    #[test]
    fn lockable_query_with_and_without_transaction() {
        let m = ShardedLockManager::new();
        m.acquire_now(owner(1, 11), R, "t:1").unwrap();
        assert!(m.is_lockable_now(Some(1), R, "t:1,2").unwrap());
        assert!(!m.is_lockable_now(Some(2), R, "t:1").unwrap());
        assert!(!m.is_lockable_now(None, R, "t:1").unwrap());
        assert!(m.is_lockable_now(None, R, "t:2").unwrap());
    }

    #[test]
    fn duplicate_rows_in_one_key_are_taken_once() {
        let m = ShardedLockManager::new();
        m.acquire_now(owner(1, 11), R, "t:1,1;t:1").unwrap();
        assert_eq!(m.held_rows(), 1);
    }

    #[test]
    fn concurrent_disjoint_and_overlapping_sets_never_deadlock() {
        let m = std::sync::Arc::new(ShardedLockManager::with_shards(8));
        let threads: Vec<_> = (0..4i64)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..500i64 {
                        let key = format!("t:{},{},{}", i % 7, (i * 3) % 11, t * 1000 + i);
                        let o = owner(t * 10_000 + i, t * 10_000 + i);
                        if m.acquire_now(o, R, &key).is_ok() {
                            m.release_now(o, R, &key).unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.held_rows(), 0);
    }
}
