//! [`GlobalTransaction`]: one global transaction as this process sees it, with its local
//! lifecycle and the drop check. The requests themselves are [`TmClient`]'s.
//!
//! ```text
//!                 commit                 TC decided to commit
//!   Active ──────────────▶ Committing ───────────────────────▶ Committed
//!     │                        │ rolled back instead ───────▶ RolledBack
//!     │                        │ CommitFailed / Finished ───▶ CommitFailed
//!     │                        │ no answer ─────────────────▶ Unknown ─┐
//!     │                        └ not sent ──────────────────▶ Active   │ commit / rollback
//!     │   rollback                                                      │ again (the TC answers
//!     └──────────────▶ Rollbacking ──▶ RolledBack | RollbackFailed      │ with its current
//!                          │       ──▶ Committed (TC was committing)    │ status)
//!                          └ no answer ──────────────────────▶ Unknown ─┘
//! ```
//!
//! Only the launcher (the one that began the transaction) ends it. A participant (a handle on
//! an XID received from elsewhere) ignores commit and rollback, as Seata's participants do.

use seata_protocol::GlobalStatus;
use tracing::{debug, warn};

use crate::client::TmClient;
use crate::error::{Op, TmError};

/// Where a transaction is in its local lifecycle (see the module diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// Begun; branches may join; must be committed or rolled back.
    Active,
    /// A commit request is in flight.
    Committing,
    /// The TC decided to commit (phase two may still be running on the TC).
    Committed,
    /// The commit did not commit and the TC no longer holds the transaction for us to end.
    CommitFailed,
    /// A rollback request is in flight.
    Rollbacking,
    /// The TC decided to roll back (phase two may still be running on the TC).
    RolledBack,
    /// A branch could not be rolled back and the TC gave up.
    RollbackFailed,
    /// A commit or rollback went out and no answer came; query the status.
    Unknown,
}

impl TxState {
    /// A state from which no commit or rollback may be sent any more.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            TxState::Committed
                | TxState::CommitFailed
                | TxState::RolledBack
                | TxState::RollbackFailed
        )
    }
}

/// Whether this handle began the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Began the transaction: commits or rolls it back.
    Launcher,
    /// Joined an XID from elsewhere: never ends the transaction.
    Participant,
}

/// A global transaction. Dropping a launcher that is still [`TxState::Active`] logs a warning
/// with its XID: the TC then rolls it back only when its timeout expires.
#[derive(Debug)]
pub struct GlobalTransaction {
    client: TmClient,
    xid: String,
    role: Role,
    state: TxState,
}

impl GlobalTransaction {
    pub(crate) fn launcher(client: TmClient, xid: String) -> Self {
        GlobalTransaction {
            client,
            xid,
            role: Role::Launcher,
            state: TxState::Active,
        }
    }

    /// A participant handle on a transaction begun elsewhere (e.g. an XID from a request
    /// header). Its `commit` and `rollback` do nothing.
    pub fn participant(client: TmClient, xid: impl Into<String>) -> Self {
        GlobalTransaction {
            client,
            xid: xid.into(),
            role: Role::Participant,
            state: TxState::Active,
        }
    }

    /// The XID (`ip:port:transactionId`).
    pub fn xid(&self) -> &str {
        &self.xid
    }

    /// The local lifecycle state.
    pub fn state(&self) -> TxState {
        self.state
    }

    /// Launcher or participant.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Commits (launcher only; a participant returns `Begin` without asking the TC, since its
    /// launcher decides). See [`TmClient::commit`] for the statuses and errors.
    pub async fn commit(&mut self) -> Result<GlobalStatus, TmError> {
        if self.role == Role::Participant {
            debug!(xid = %self.xid, "participant does not commit; the launcher will");
            return Ok(GlobalStatus::Begin);
        }
        self.check_not_final(Op::Commit)?;
        self.state = TxState::Committing;
        let result = self.client.commit(&self.xid).await;
        self.state = match &result {
            Ok(_) => TxState::Committed,
            Err(TmError::RolledBackInstead { .. }) => TxState::RolledBack,
            Err(TmError::CommitFailed { .. } | TmError::AlreadyFinished { .. }) => {
                TxState::CommitFailed
            }
            Err(e) if e.is_not_sent() => TxState::Active,
            Err(_) => TxState::Unknown,
        };
        result
    }

    /// Rolls back (launcher only; a participant returns `Begin` without asking the TC). See
    /// [`TmClient::rollback`] for the statuses and errors.
    pub async fn rollback(&mut self) -> Result<GlobalStatus, TmError> {
        if self.role == Role::Participant {
            debug!(xid = %self.xid, "participant does not roll back; the launcher will");
            return Ok(GlobalStatus::Begin);
        }
        self.check_not_final(Op::Rollback)?;
        self.state = TxState::Rollbacking;
        let result = self.client.rollback(&self.xid).await;
        self.state = match &result {
            Ok(_) => TxState::RolledBack,
            Err(TmError::RollbackFailed { .. }) => TxState::RollbackFailed,
            Err(TmError::CommittedInstead { .. }) => TxState::Committed,
            Err(e) if e.is_not_sent() => TxState::Active,
            Err(_) => TxState::Unknown,
        };
        result
    }

    /// The TC's status of this transaction (`Finished` once the TC no longer holds it).
    pub async fn status(&self) -> Result<GlobalStatus, TmError> {
        self.client.status(&self.xid).await
    }

    /// Reports the status a SAGA transaction reached (launcher only); a final status ends the
    /// local lifecycle accordingly.
    pub async fn report(&mut self, status: GlobalStatus) -> Result<GlobalStatus, TmError> {
        if self.role == Role::Participant {
            debug!(xid = %self.xid, "participant does not report; the launcher will");
            return Ok(GlobalStatus::Begin);
        }
        self.check_not_final(Op::Report)?;
        let tc_status = self.client.report(&self.xid, status).await?;
        match status {
            GlobalStatus::Committed => self.state = TxState::Committed,
            GlobalStatus::Rollbacked | GlobalStatus::TimeoutRollbacked => {
                self.state = TxState::RolledBack
            }
            _ => {}
        }
        Ok(tc_status)
    }

    fn check_not_final(&self, op: Op) -> Result<(), TmError> {
        if self.state.is_final() {
            return Err(TmError::InvalidState {
                op,
                xid: self.xid.clone(),
                state: self.state,
            });
        }
        Ok(())
    }
}

impl Drop for GlobalTransaction {
    fn drop(&mut self) {
        if self.role != Role::Launcher {
            return;
        }
        match self.state {
            TxState::Active => warn!(
                xid = %self.xid,
                "global transaction dropped while active: neither committed nor rolled back; \
                 the TC rolls it back when its timeout expires"
            ),
            TxState::Committing | TxState::Rollbacking => warn!(
                xid = %self.xid,
                state = ?self.state,
                "global transaction dropped while its commit/rollback was in flight: outcome \
                 unknown, query its status"
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::fake_tc::FakeTc;

    /// Collects formatted log lines.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        // With one registered dispatcher, tracing caches a callsite's interest, for every
        // thread, from the default of the thread that reaches it first: another test (no
        // subscriber) reaching the warning first would hide it from this one. A second
        // dispatcher kept for the process makes tracing ask all of them.
        static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SECOND.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    #[tokio::test]
    async fn dropping_an_active_launcher_warns_with_its_xid() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let (logs, _guard) = capture();
        let tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        let xid = tx.xid().to_owned();
        drop(tx);
        let text = logs.text();
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains(&xid), "{text}");
        assert!(text.contains("dropped while active"), "{text}");
    }

    #[tokio::test]
    async fn dropping_an_ended_or_joined_transaction_is_quiet() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let (logs, _guard) = capture();
        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        tx.commit().await.unwrap();
        drop(tx);
        drop(GlobalTransaction::participant(
            tm.clone(),
            "10.0.0.1:8091:5",
        ));
        assert!(!logs.text().contains("dropped"), "{}", logs.text());
    }

    #[tokio::test]
    async fn a_participant_never_ends_the_transaction() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let launcher = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        let mut joined = GlobalTransaction::participant(tm.clone(), launcher.xid());
        assert_eq!(joined.role(), Role::Participant);
        assert_eq!(joined.commit().await.unwrap(), GlobalStatus::Begin);
        assert_eq!(joined.rollback().await.unwrap(), GlobalStatus::Begin);
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 0);
        assert_eq!(tc.state.rollbacks.load(Ordering::SeqCst), 0);
        assert_eq!(joined.status().await.unwrap(), GlobalStatus::Begin);
        let mut launcher = launcher;
        launcher.rollback().await.unwrap();
    }

    #[tokio::test]
    async fn a_finished_transaction_refuses_another_decision() {
        let tc = FakeTc::start().await;
        let tm = tc.client().await;
        let mut tx = tm.begin("t", Duration::from_secs(60)).await.unwrap();
        tx.rollback().await.unwrap();
        let err = tx.commit().await.unwrap_err();
        assert!(
            matches!(
                err,
                TmError::InvalidState {
                    op: Op::Commit,
                    state: TxState::RolledBack,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(tc.state.commits.load(Ordering::SeqCst), 0);
    }
}
