//! Requests waiting for their responses, by request id.
//!
//! A request id comes from one counter per process, as in Seata (31 bits, never negative).
//! A merged batch is one outer id standing for the ids of its members, in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::error::RpcError;
use crate::message::Message;

/// The answer a waiting caller gets.
pub(crate) type Reply = Result<Message, RpcError>;

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The next request id: positive, unique in this process until the 31-bit counter wraps.
pub fn next_request_id() -> i32 {
    loop {
        let id = (NEXT_ID.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff) as i32;
        if id != 0 {
            return id;
        }
    }
}

enum Waiter {
    One(oneshot::Sender<Reply>),
    /// A MergedWarpMessage: the member ids, in the order of the results.
    Batch(Vec<i32>),
}

/// The table of requests in flight on one connection.
#[derive(Default)]
pub(crate) struct Pending {
    map: Mutex<HashMap<i32, Waiter>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("len", &self.len()).finish()
    }
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Waiter>> {
        // A poisoned map only means a waiter panicked while inserting; the map is still sound.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, id: i32, tx: oneshot::Sender<Reply>) {
        self.lock().insert(id, Waiter::One(tx));
    }

    pub(crate) fn insert_batch(&self, outer: i32, members: Vec<i32>) {
        self.lock().insert(outer, Waiter::Batch(members));
    }

    /// Forgets a request (its caller gave up).
    pub(crate) fn remove(&self, id: i32) {
        self.lock().remove(&id);
    }

    /// Hands `msg` to whoever waits for `id`. Returns false when nobody does (a late answer
    /// after a timeout, or an id we never sent).
    pub(crate) fn complete(&self, id: i32, msg: Message) -> bool {
        let mut map = self.lock();
        match map.remove(&id) {
            Some(Waiter::One(tx)) => {
                drop(map);
                let _ = tx.send(Ok(msg));
                true
            }
            Some(Waiter::Batch(members)) => {
                let results = match msg {
                    Message::MergeResultMessage(m) => m.msgs,
                    other => vec![other],
                };
                let mut senders = Vec::with_capacity(members.len());
                for id in &members {
                    if let Some(Waiter::One(tx)) = map.remove(id) {
                        senders.push(Some(tx));
                    } else {
                        senders.push(None);
                    }
                }
                drop(map);
                let mut results = results.into_iter();
                for tx in senders {
                    let Some(tx) = tx else {
                        let _ = results.next();
                        continue;
                    };
                    let reply = match results.next() {
                        Some(r) => Ok(r),
                        None => Err(RpcError::UnexpectedResponse {
                            sent: "MergedWarpMessage",
                            got: "MergeResultMessage with fewer results than requests",
                        }),
                    };
                    let _ = tx.send(reply);
                }
                true
            }
            None => false,
        }
    }

    /// Fails one request with `err`.
    pub(crate) fn fail(&self, id: i32, err: RpcError) {
        if let Some(Waiter::One(tx)) = self.lock().remove(&id) {
            let _ = tx.send(Err(err));
        }
    }

    /// Fails every waiting request with the error `make` builds.
    pub(crate) fn fail_all(&self, make: impl Fn() -> RpcError) {
        let drained: Vec<Waiter> = self.lock().drain().map(|(_, w)| w).collect();
        for w in drained {
            if let Waiter::One(tx) = w {
                let _ = tx.send(Err(make()));
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{GlobalCommitResponse, MergeResultMessage};

    #[test]
    fn ids_are_positive_and_distinct() {
        let a = next_request_id();
        let b = next_request_id();
        assert!(a > 0 && b > 0 && a != b);
    }

    #[tokio::test]
    async fn batch_results_reach_members_in_order() {
        let p = Pending::default();
        let (tx1, rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        p.insert(11, tx1);
        p.insert(12, tx2);
        p.insert_batch(99, vec![11, 12]);
        let r1 = GlobalCommitResponse {
            global_status: crate::GlobalStatus::Committed,
            ..Default::default()
        };
        let r2 = GlobalCommitResponse::default();
        let merged = MergeResultMessage {
            msgs: vec![r1.clone().into(), r2.clone().into()],
        };
        assert!(p.complete(99, merged.into()));
        assert_eq!(rx1.await.unwrap().unwrap(), r1.into());
        assert_eq!(rx2.await.unwrap().unwrap(), r2.into());
        assert_eq!(p.len(), 0);
        assert!(!p.complete(99, GlobalCommitResponse::default().into()));
    }
}
