//! The statement shapes AT mode works with ([`Recognized`] and its parts), as `recognize.rs`
//! produces them from SQL text: target tables, row filters with their parameters, INSERT rows.

use mysql_async::Value;
use sqlparser::ast::{Expr, Ident, ObjectName, OrderByExpr};

use super::int_set::IntSet;

/// What a statement means to AT mode.
#[derive(Debug, Clone)]
pub enum Recognized {
    /// Runs as is: no image, no lock (plain SELECT, DDL, SET, ...).
    Plain,
    /// A single-table `INSERT ... VALUES`.
    Insert(InsertStmt),
    /// A single-table `UPDATE`.
    Update(UpdateStmt),
    /// A single-table `DELETE`.
    Delete(DeleteStmt),
    /// A single-table `SELECT ... FOR UPDATE`.
    SelectForUpdate(SelectStmt),
    /// A multi-table `UPDATE` (`UPDATE a JOIN b ON ... SET ...`) or `DELETE` (`DELETE a, b FROM
    /// a JOIN b ...`, `DELETE FROM a USING a JOIN b ...`): imaged per written table.
    Joined(JoinedStmt),
    /// Several statements in one string, each recognized on its own with its SQL text.
    Many(Vec<(String, Recognized)>),
    /// `BEGIN`/`START TRANSACTION`, `COMMIT`, `ROLLBACK` and savepoints sent as SQL: the proxy
    /// must track them, or undo items would be committed without an undo log (or kept for
    /// changes a `ROLLBACK TO SAVEPOINT` took back).
    Transaction(TxControl),
}

/// A transaction-control statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxControl {
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT`.
    Commit,
    /// `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`).
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `RELEASE SAVEPOINT name`.
    Release(String),
}

/// The target table as written in the statement.
#[derive(Debug, Clone)]
pub struct TableRef {
    /// The name as written (may carry a schema and back-quotes).
    pub name: ObjectName,
    /// The schema part, unquoted, if written.
    pub schema: Option<String>,
    /// The table part, unquoted.
    pub table: String,
    /// The alias, if any.
    pub alias: Option<Ident>,
}

impl TableRef {
    /// `name [alias]`, ready for a FROM clause.
    pub fn from_sql(&self) -> String {
        match &self.alias {
            Some(a) => format!("{} {}", self.name, a),
            None => self.name.to_string(),
        }
    }
}

/// The row filter of an UPDATE/DELETE/SELECT: the WHERE, ORDER BY and LIMIT pieces of the
/// statement and the parameters their `?`s take, in order.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The WHERE condition.
    pub selection: Option<Expr>,
    /// ORDER BY items (MySQL single-table UPDATE/DELETE, SELECT).
    pub order_by: Vec<OrderByExpr>,
    /// The LIMIT clause rendered with a leading space (` LIMIT 10`), if any.
    pub limit: Option<String>,
    /// Values for the `?`s of the three pieces above, in text order.
    pub params: Vec<Value>,
}

impl Filter {
    /// ` WHERE ... ORDER BY ... LIMIT ...` (each part only when present).
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Some(w) = &self.selection {
            s.push_str(&format!(" WHERE {w}"));
        }
        if !self.order_by.is_empty() {
            let items: Vec<String> = self.order_by.iter().map(ToString::to_string).collect();
            s.push_str(&format!(" ORDER BY {}", items.join(", ")));
        }
        if let Some(l) = &self.limit {
            s.push_str(l);
        }
        s
    }
}

/// One value of an INSERT row, as far as the primary key needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A literal or a bound parameter.
    Value(Value),
    /// `NULL` (on an auto-increment key: "generate one").
    Null,
    /// `DEFAULT`.
    Default,
    /// Any other expression (function call, arithmetic...), rendered.
    Expr(String),
}

/// `INSERT INTO t [(cols)] VALUES (...), (...)` or `INSERT INTO t SET c = v, ...`.
#[derive(Debug, Clone)]
pub struct InsertStmt {
    /// The target table.
    pub table: TableRef,
    /// The column list, unquoted; empty when the statement has none (all columns in order).
    pub columns: Vec<String>,
    /// The VALUES rows.
    pub rows: Vec<Vec<Cell>>,
    /// What happens to a row whose key is already taken.
    pub on_conflict: OnConflict,
}

/// What an INSERT does with a row that collides on the primary key or a unique key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The statement fails (a plain INSERT).
    Error,
    /// `INSERT IGNORE`: the row is skipped.
    Ignore,
    /// `ON DUPLICATE KEY UPDATE`: the existing row is updated instead.
    UpdateDuplicate,
    /// `REPLACE`: the colliding rows are deleted, then the row is inserted.
    Replace,
}

impl OnConflict {
    /// The construct's name, for messages and the support matrix.
    pub fn construct(self) -> &'static str {
        match self {
            OnConflict::Error => "INSERT",
            OnConflict::Ignore => "INSERT IGNORE",
            OnConflict::UpdateDuplicate => "INSERT ... ON DUPLICATE KEY UPDATE",
            OnConflict::Replace => "REPLACE",
        }
    }
}

/// Whether a multi-table statement updates or deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinedKind {
    /// `UPDATE ... JOIN ... SET`.
    Update,
    /// `DELETE t1[, t2] FROM ... JOIN ...`.
    Delete,
}

/// A multi-table UPDATE or DELETE.
#[derive(Debug, Clone)]
pub struct JoinedStmt {
    /// Update or delete.
    pub kind: JoinedKind,
    /// The FROM clause as written (tables, joins and their ON conditions), for image queries.
    pub from: String,
    /// Every table the FROM clause names, with its alias.
    pub tables: Vec<TableRef>,
    /// The tables written to, by the name or alias the statement uses for them; for an UPDATE,
    /// the SET columns of each (resolved when the statement leaves a column unqualified).
    pub targets: Vec<(String, Vec<String>)>,
    /// UPDATE: SET columns written without a table qualifier; the driver assigns each to the
    /// one table that has it.
    pub unqualified: Vec<String>,
    /// The WHERE condition.
    pub selection: Option<Expr>,
    /// Values for the `?`s of the FROM clause and the WHERE condition, in text order.
    pub params: Vec<Value>,
}

impl TableRef {
    /// The name the statement's other clauses use for this table: its alias, else its name.
    pub fn qualifier(&self) -> &str {
        self.alias
            .as_ref()
            .map_or(self.table.as_str(), |a| a.value.as_str())
    }
}

/// `UPDATE t SET ... [WHERE] [ORDER BY] [LIMIT]`.
#[derive(Debug, Clone)]
pub struct UpdateStmt {
    /// The target table.
    pub table: TableRef,
    /// The SET columns in statement order, unquoted.
    pub columns: Vec<String>,
    /// The rows it touches.
    pub filter: Filter,
    /// The SETs as integer changes, when every one is (see `int_set.rs`).
    pub int_sets: Option<Vec<IntSet>>,
}

/// `DELETE FROM t [WHERE] [ORDER BY] [LIMIT]`.
#[derive(Debug, Clone)]
pub struct DeleteStmt {
    /// The target table.
    pub table: TableRef,
    /// The rows it removes.
    pub filter: Filter,
}

/// `SELECT ... FROM t [WHERE] ... FOR UPDATE`.
#[derive(Debug, Clone)]
pub struct SelectStmt {
    /// The table read.
    pub table: TableRef,
    /// The rows it locks.
    pub filter: Filter,
}
