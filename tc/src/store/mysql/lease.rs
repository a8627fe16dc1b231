//! Leases: which TC may hand out ids with a node number (`seata_rs_tc_node`), and which TC
//! drives a transaction's phase two (`seata_rs_tx_lease`).
//!
//! Each TC process picks a random `owner` token at start-up and leases a node row, which
//! holds the owner and an `expires_at` (ms since the Unix epoch). The TC that wins a phase-two
//! decision (the conditional status update in `batch.rs`) writes the transaction's lease row,
//! naming its owner, in the same DB transaction. A transaction lease is valid while its
//! owner's node row is unexpired, so one `UPDATE` of that single row every third of a lease
//! renews every lease of the process at once: a transaction driven for a long time (slow RMs)
//! stays ours while we live, and a TC killed with `kill -9` loses all its leases one lease
//! length later, when the others' orphan scans take its transactions over. (Renewing each
//! lease row instead would lock every row of the process, and deadlock with the
//! group-commit writers that insert and delete them.) A retry pass first
//! [`claim`](Leases::claim)s the lease, which succeeds only if it is ours or its owner is gone.
//! The lease row's own `expires_at` is written for operators' eyes only.
//!
//! A claim is answered from memory while the last renewal is fresh, so a pass on a session
//! this TC already drives costs no query. The renewal's margin (a third of the lease)
//! absorbs clock differences between TCs smaller than that.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use dashmap::DashSet;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Value};
use tracing::{error, info};

use super::db;
use super::rows::repeat_row;
use crate::id::{now_ms, MAX_SERVER_NODE};
use crate::store::StoreError;

/// SQL condition, on a lease row `l` and a bound `now` (ms): its owner holds no live node,
/// so the lease is free to take.
pub(super) const OWNER_GONE: &str = "NOT EXISTS (SELECT 1 FROM seata_rs_tc_node n \
     WHERE n.owner = l.owner AND n.expires_at >= ?)";

/// Tries of the node allocation before giving up (each loses only to another TC starting).
const NODE_TRIES: usize = 64;

/// This process's leases.
#[derive(Debug)]
pub(super) struct Leases {
    pool: Pool,
    owner: i64,
    lease_ms: i64,
    node: u16,
    /// Transactions whose lease row names us.
    owned: DashSet<i64>,
    /// Until when (ms) `owned` may be trusted without asking the database.
    trusted_until: AtomicI64,
    /// Our node row was found leased by another TC (we stalled longer than the lease): ids
    /// made with our node number could repeat that TC's, so none may be written any more.
    node_lost: AtomicBool,
}

impl Leases {
    /// Picks an owner token and leases a free node number.
    pub(super) async fn start(pool: Pool, lease_ms: u64) -> Result<Self, StoreError> {
        let lease_ms = i64::try_from(lease_ms).unwrap_or(i64::MAX / 4).max(300);
        // Random enough to tell processes apart; positive so it reads well in SQL.
        let owner = (RandomState::new().hash_one((std::process::id(), now_ms())) >> 1) as i64;
        let node = allocate_node(&pool, owner, lease_ms).await?;
        info!(node, "leased server node from the database");
        Ok(Leases {
            pool,
            owner,
            lease_ms,
            node,
            owned: DashSet::new(),
            trusted_until: AtomicI64::new(now_ms() + lease_ms - lease_ms / 3),
            node_lost: AtomicBool::new(false),
        })
    }

    pub(super) fn node(&self) -> u16 {
        self.node
    }

    /// This process's owner token, as written in node rows and in the `owner` of the
    /// transactions it drives.
    pub(super) fn owner(&self) -> i64 {
        self.owner
    }

    pub(super) fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// Writes our lease on transactions whose status we just changed (inside that DB
    /// transaction, so the decisions and the leases land together): one multi-row upsert.
    pub(super) async fn take_in(
        &self,
        tx: &mut Conn,
        taken: &[(i64, &str)],
    ) -> Result<(), mysql_async::Error> {
        if taken.is_empty() {
            return Ok(());
        }
        let expires = now_ms() + self.lease_ms;
        let mut params: Vec<Value> = Vec::with_capacity(taken.len() * 4);
        for (transaction_id, xid) in taken {
            params.extend([
                Value::from(*xid),
                Value::from(*transaction_id),
                Value::from(self.owner),
                Value::from(expires),
            ]);
        }
        tx.exec_drop(
            format!(
                "INSERT INTO seata_rs_tx_lease (xid, transaction_id, owner, expires_at) VALUES {} \
                 ON DUPLICATE KEY UPDATE owner = VALUES(owner), expires_at = VALUES(expires_at)",
                repeat_row(taken.len(), "(?, ?, ?, ?)")
            ),
            params,
        )
        .await
    }

    /// Records locally a lease written by [`take_in`](Self::take_in) once its DB transaction
    /// committed.
    pub(super) fn taken(&self, transaction_id: i64) {
        self.owned.insert(transaction_id);
    }

    /// Forgets a transaction that ended (its lease row went with it).
    pub(super) fn forget(&self, transaction_id: i64) {
        self.owned.remove(&transaction_id);
    }

    /// Takes or keeps the lease; false when another live TC holds it or the transaction is
    /// no longer stored.
    pub(super) async fn claim(&self, transaction_id: i64, xid: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        if now < self.trusted_until.load(Ordering::Acquire) && self.owned.contains(&transaction_id)
        {
            return Ok(true);
        }
        let mut conn = self.pool.get_conn().await.map_err(db)?;
        // The pool reports matched rows (CLIENT_FOUND_ROWS), so re-claiming our own lease in
        // the same millisecond still counts.
        conn.exec_drop(
            format!(
                "UPDATE seata_rs_tx_lease l SET l.owner = ?, l.expires_at = ? \
                 WHERE l.xid = ? AND (l.owner = ? OR {OWNER_GONE})"
            ),
            (self.owner, now + self.lease_ms, xid, self.owner, now),
        )
        .await
        .map_err(db)?;
        let won = conn.affected_rows() == 1;
        if won {
            self.owned.insert(transaction_id);
        } else {
            self.owned.remove(&transaction_id);
        }
        Ok(won)
    }

    /// Claims a transaction found without a lease row (written by an older TC or by hand).
    pub(super) async fn claim_unleased(
        &self,
        transaction_id: i64,
        xid: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.get_conn().await.map_err(db)?;
        conn.exec_drop(
            "INSERT IGNORE INTO seata_rs_tx_lease (xid, transaction_id, owner, expires_at) \
             VALUES (?, ?, ?, ?)",
            (xid, transaction_id, self.owner, now_ms() + self.lease_ms),
        )
        .await
        .map_err(db)?;
        if conn.affected_rows() == 1 {
            self.owned.insert(transaction_id);
            return Ok(true);
        }
        drop(conn);
        self.claim(transaction_id, xid).await
    }

    /// Extends the node lease, and so every transaction lease of this process.
    pub(super) async fn renew(&self) -> Result<(), StoreError> {
        let now = now_ms();
        if now >= self.trusted_until.load(Ordering::Acquire) {
            // Renewals failed for too long: others may have taken some of our transactions,
            // so every claim asks the database again.
            self.owned.clear();
        }
        let expires = now + self.lease_ms;
        let mut conn = self.pool.get_conn().await.map_err(db)?;
        conn.exec_drop(
            "UPDATE seata_rs_tc_node SET expires_at = ? WHERE node = ? AND owner = ?",
            (expires, self.node, self.owner),
        )
        .await
        .map_err(db)?;
        if conn.affected_rows() != 1 {
            error!(
                node = self.node,
                "server node lease was taken by another TC (this TC stalled longer than the \
                 lease); ids may collide and its transactions are no longer ours: restart this TC"
            );
            // Our transaction leases went with the node: claims must ask the database.
            self.owned.clear();
            self.node_lost.store(true, Ordering::Release);
            return Ok(());
        }
        self.trusted_until
            .store(now + self.lease_ms - self.lease_ms / 3, Ordering::Release);
        Ok(())
    }

    /// Checks, before a write that carries a new id (a begin, a branch), that our node number
    /// is still ours: renewed recently, else renewed now. A TC that was frozen (SIGSTOP, a
    /// long pause) past its lease may find its node taken by a TC that started meanwhile;
    /// it then refuses such writes for good rather than hand out ids that TC may also give.
    pub(super) async fn ensure_node(&self) -> Result<(), StoreError> {
        if !self.node_lost.load(Ordering::Acquire)
            && now_ms() >= self.trusted_until.load(Ordering::Acquire)
        {
            self.renew().await?;
        }
        if self.node_lost.load(Ordering::Acquire) {
            return Err(StoreError::Backend(format!(
                "this TC's server node {} is leased by another TC (this one stalled longer than \
                 db-lease-ms), so its ids could collide: restart this TC",
                self.node
            )));
        }
        Ok(())
    }

    /// Gives every lease up at once (clean shutdown: the node row expires), so other TCs take
    /// over without waiting.
    pub(super) async fn release_all(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.get_conn().await.map_err(db)?;
        conn.exec_drop(
            "UPDATE seata_rs_tc_node SET expires_at = 0 WHERE node = ? AND owner = ?",
            (self.node, self.owner),
        )
        .await
        .map_err(db)?;
        self.owned.clear();
        Ok(())
    }
}

/// Leases the lowest expired node number, or a new one above the highest.
async fn allocate_node(pool: &Pool, owner: i64, lease_ms: i64) -> Result<u16, StoreError> {
    let mut conn = pool.get_conn().await.map_err(db)?;
    for _ in 0..NODE_TRIES {
        let now = now_ms();
        let free: Option<i64> = conn
            .exec_first(
                "SELECT node FROM seata_rs_tc_node WHERE expires_at < ? ORDER BY node LIMIT 1",
                (now,),
            )
            .await
            .map_err(db)?;
        if let Some(node) = free {
            conn.exec_drop(
                "UPDATE seata_rs_tc_node SET owner = ?, expires_at = ? \
                 WHERE node = ? AND expires_at < ?",
                (owner, now + lease_ms, node, now),
            )
            .await
            .map_err(db)?;
            if conn.affected_rows() == 1 {
                return node_number(node);
            }
            continue;
        }
        let next: Option<i64> = conn
            .exec_first(
                "SELECT COALESCE(MAX(node), 0) + 1 FROM seata_rs_tc_node",
                (),
            )
            .await
            .map_err(db)?;
        let node = node_number(next.unwrap_or(1))?;
        conn.exec_drop(
            "INSERT IGNORE INTO seata_rs_tc_node (node, owner, expires_at) VALUES (?, ?, ?)",
            (node, owner, now + lease_ms),
        )
        .await
        .map_err(db)?;
        if conn.affected_rows() == 1 {
            return Ok(node);
        }
    }
    Err(StoreError::Backend(
        "could not lease a server node: too many TCs starting at once; start this TC again".into(),
    ))
}

fn node_number(n: i64) -> Result<u16, StoreError> {
    u16::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_SERVER_NODE)
        .ok_or_else(|| {
            StoreError::Backend(format!(
                "every server node (0..={MAX_SERVER_NODE}) is leased by a running TC; \
                 stop one or clean seata_rs_tc_node"
            ))
        })
}
