//! Who may hold a connection slot: the per-IP cap, the registration deadline and the policy
//! when every slot is taken.
//!
//! Policy (issue 18): a connection counts against `max-connections` from accept to close and
//! against its IP's `limits.max-connections-per-ip`; one over the per-IP cap is closed at
//! once. A new connection has `limits.register-timeout-ms` to register (RegisterTM or
//! RegisterRM; until then only registrations and heartbeats are served) or it is closed. When
//! all `max-connections` slots are taken, the accept loop still accepts and closes the
//! *oldest unregistered* connection to make room, so a registered client's reconnect is
//! never refused by connections that do nothing; only when every slot holds a registered
//! client does the new connection wait for a slot (as a full accept queue would).
//!
//! It owns no sockets: it keeps counts and handles, and closes through [`RpcHandle::close`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use seata_protocol::rpc::RpcHandle;

/// Per-IP counts and the connections that have not registered yet.
#[derive(Debug)]
pub struct Admission {
    per_ip_max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    per_ip: HashMap<IpAddr, usize>,
    /// Unregistered connections by id; ids grow, so the first is the oldest.
    unregistered: BTreeMap<u64, RpcHandle>,
    /// Registered connections. The connection's reader may handle its registration before
    /// the accept loop calls [`Admission::accepted`], so that must not undo it.
    registered: HashSet<u64>,
}

/// One connection's place in its IP's count; given back on drop.
#[derive(Debug)]
pub struct IpSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut inner = self.admission.lock();
        if let Some(n) = inner.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    /// At most `per_ip_max` connections per IP.
    pub fn new(per_ip_max: usize) -> Arc<Self> {
        Arc::new(Admission {
            per_ip_max,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counts stay consistent under a panic elsewhere (single updates).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for a connection from `ip`; `None` when the IP is at its cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut inner = self.lock();
        let n = inner.per_ip.entry(ip).or_default();
        if *n >= self.per_ip_max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            admission: self.clone(),
            ip,
        })
    }

    /// A new connection, unregistered until [`registered`](Self::registered).
    pub fn accepted(&self, conn: &RpcHandle) {
        let mut inner = self.lock();
        if !inner.registered.contains(&conn.id()) {
            inner.unregistered.insert(conn.id(), conn.clone());
        }
    }

    /// The connection registered (TM or RM): it is no longer evictable.
    pub fn registered(&self, conn_id: u64) {
        let mut inner = self.lock();
        inner.unregistered.remove(&conn_id);
        inner.registered.insert(conn_id);
    }

    /// True while the connection has not registered.
    pub fn is_unregistered(&self, conn_id: u64) -> bool {
        !self.lock().registered.contains(&conn_id)
    }

    /// The connection closed.
    pub fn closed(&self, conn_id: u64) {
        let mut inner = self.lock();
        inner.unregistered.remove(&conn_id);
        inner.registered.remove(&conn_id);
    }

    /// Closes the oldest unregistered connection; false when there is none.
    pub fn evict_oldest_unregistered(&self) -> Option<RpcHandle> {
        let victim = self.lock().unregistered.pop_first().map(|(_, c)| c);
        if let Some(c) = &victim {
            c.close();
        }
        victim
    }

    /// Connections from `ip` now.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.lock().per_ip.get(&ip).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_cap_counts_and_gives_back() {
        let a = Admission::new(2);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let s1 = a.admit(ip).unwrap();
        let _s2 = a.admit(ip).unwrap();
        assert!(a.admit(ip).is_none());
        assert!(a.admit(other).is_some());
        drop(s1);
        assert_eq!(a.count(ip), 1);
        assert!(a.admit(ip).is_some());
    }
}
