//! What an open local transaction has collected for its branch: the global transaction it
//! joined, one undo item per statement in execution order, the row lock keys, and why it may
//! only roll back, if it may.

use super::lock_key::LockKeys;
use super::undo_log::SqlUndoLog;

/// The state of an open local transaction.
#[derive(Debug, Default)]
pub(crate) struct LocalTx {
    /// The global transaction the local one joined (bound by its first imaged statement).
    pub(crate) xid: Option<String>,
    pub(crate) undo: Vec<SqlUndoLog>,
    pub(crate) keys: LockKeys,
    /// Why the undo log would not match the data (a statement failed after it ran, or MySQL
    /// rolled the transaction back): such a transaction may only roll back.
    pub(crate) poisoned: Option<String>,
    /// Open savepoints, oldest first: name, undo items and lock keys when it was set.
    savepoints: Vec<(String, usize, LockKeys)>,
}

impl LocalTx {
    /// `SAVEPOINT name` succeeded. MySQL replaces an older savepoint of the same name.
    pub(crate) fn savepoint(&mut self, name: &str) {
        self.savepoints
            .retain(|(n, _, _)| !n.eq_ignore_ascii_case(name));
        self.savepoints
            .push((name.to_string(), self.undo.len(), self.keys.clone()));
    }

    /// `ROLLBACK TO SAVEPOINT name` succeeded: the undo items and lock keys of the statements
    /// after it go (their changes are gone); the savepoint stays, later ones are removed.
    pub(crate) fn rollback_to(&mut self, name: &str) {
        let Some(at) = self.position(name) else {
            return;
        };
        if let Some((_, undo_len, keys)) = self.savepoints.get(at) {
            self.undo.truncate(*undo_len);
            self.keys = keys.clone();
        }
        self.savepoints.truncate(at + 1);
    }

    /// `RELEASE SAVEPOINT name` succeeded: it and later ones are removed; nothing is undone.
    pub(crate) fn release(&mut self, name: &str) {
        if let Some(at) = self.position(name) {
            self.savepoints.truncate(at);
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.savepoints
            .iter()
            .rposition(|(n, _, _)| n.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::model::image::TableRecords;
    use crate::at::model::undo_log::SqlType;

    fn item(table: &str) -> SqlUndoLog {
        SqlUndoLog {
            sql_type: SqlType::Update,
            table_name: table.into(),
            before_image: TableRecords::default(),
            after_image: TableRecords::default(),
        }
    }

    fn run(tx: &mut LocalTx, table: &str) {
        tx.undo.push(item(table));
        tx.keys.add(format!("{table}:1"));
    }

    #[test]
    fn rollback_to_a_savepoint_drops_later_items_and_keys() {
        let mut tx = LocalTx::default();
        run(&mut tx, "a");
        tx.savepoint("s1");
        run(&mut tx, "b");
        tx.savepoint("S2");
        run(&mut tx, "c");
        tx.rollback_to("s2");
        assert_eq!(tx.undo.len(), 2);
        assert_eq!(tx.keys.joined(), "a:1;b:1");
        // The savepoint stays: a second rollback to it works the same.
        run(&mut tx, "d");
        tx.rollback_to("s2");
        assert_eq!(tx.keys.joined(), "a:1;b:1");
        tx.rollback_to("s1");
        assert_eq!(tx.keys.joined(), "a:1");
        // s2 went with the rollback to s1; an unknown name changes nothing.
        run(&mut tx, "e");
        tx.rollback_to("s2");
        assert_eq!(tx.undo.len(), 2);
        tx.release("s1");
        tx.rollback_to("s1");
        assert_eq!(tx.undo.len(), 2, "released savepoints are gone");
    }
}
