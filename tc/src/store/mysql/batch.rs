//! The statements of one group commit: every unit a writer took from its queue runs inside a
//! single DB transaction, alike units sharing multi-row statements, so a batch costs about a
//! dozen round trips and one log flush however many units it holds.
//!
//! Kinds run in a fixed order (global inserts, status updates, registers, transitions, branch
//! updates, branch removals, global removals). Units of one batch were all in flight at once,
//! so any order is a valid serialization as long as each unit's answer describes the state
//! its own statements saw; the coordinator awaits a write before it issues the next one for
//! the same session, so the order of one session's writes never depends on this one.
//!
//! Every statement over a list of keys names its index (`FORCE INDEX`): with a long `IN`
//! list over a small table the optimizer prefers a scan, which under READ COMMITTED still
//! locks every row a multi-table `DELETE` or a locking read passes, including rows of other
//! writers' transactions, and so deadlocks with them. The indexes are those of Seata's DDL
//! (`schema.rs`).
//!
//! Only two units can be refused for a reason of their own, and both decide *before* writing:
//! a register (global not in Begin, or a row lock held by another transaction: the lock
//! insert is a single statement, atomic on its own, see `locks.rs`) and a transition (status
//! not `from`, read under an exclusive row lock). So no savepoints are needed: a refused unit
//! leaves nothing behind, and any other failure aborts the batch, which the writer then
//! retries or splits (`writer.rs`).

use std::collections::{HashMap, HashSet};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use seata_protocol::GlobalStatus;

use super::lease::Leases;
use super::locks::{insert_locks, push_lock_params, DUPLICATE_KEY, INSERT_LOCKS, LOCK_VALUES};
use super::rows::{
    branch_with_xid_from_row, global_status, null_if_empty, placeholders, repeat_row, LockRow,
    BRANCH_COLUMNS_WITH_XID,
};
use super::unit::{NewBranch, Op, Outcome};
use super::{server_code, StepError};
use crate::store::{BranchAdded, StoreError, StoredBranch, Transition};

/// Each unit's answer, in the order of the batch.
pub(super) type Answers = Vec<Result<Outcome, StoreError>>;

/// Lock rows inserted by one statement for the whole batch; a batch with more takes them
/// unit by unit (a statement has at most 65,535 parameters, 7 per row).
const MAX_COMBINED_LOCK_ROWS: usize = 1024;

/// Runs `ops` on `tx`, a connection inside a DB transaction, without committing. `Err`:
/// the caller must roll back.
pub(super) async fn apply(
    tx: &mut Conn,
    ops: &[Op],
    leases: &Leases,
) -> Result<Answers, StepError> {
    let mut answers: Answers = ops.iter().map(|_| Ok(Outcome::Done)).collect();
    insert_globals(tx, ops).await?;
    set_global_statuses(tx, ops).await?;
    let found = read_statuses(tx, ops).await?;
    register(tx, ops, &found, &mut answers).await?;
    transition(tx, ops, &found, leases, &mut answers).await?;
    set_branch_statuses(tx, ops).await?;
    remove_branches(tx, ops).await?;
    remove_globals(tx, ops).await?;
    Ok(answers)
}

/// Updates this process's lease bookkeeping once the batch committed.
pub(super) fn after_commit(ops: &[Op], answers: &Answers, leases: &Leases) {
    for (op, answer) in ops.iter().zip(answers) {
        match (op, answer) {
            (
                Op::Transition {
                    transaction_id, to, ..
                },
                Ok(Outcome::Transition(Transition::Applied { .. })),
            ) if is_driving(*to) => leases.taken(*transaction_id),
            (Op::RemoveGlobal { transaction_id, .. }, Ok(_)) => leases.forget(*transaction_id),
            _ => {}
        }
    }
}

/// Phase-two statuses: whoever sets one drives the transaction and needs the lease.
fn is_driving(status: GlobalStatus) -> bool {
    !status.is_final() && status != GlobalStatus::Begin && status != GlobalStatus::UnKnown
}

fn set(answers: &mut Answers, i: usize, answer: Result<Outcome, StoreError>) {
    if let Some(slot) = answers.get_mut(i) {
        *slot = answer;
    }
}

/// `xids` without repeats, in first-seen order.
fn distinct<'a>(xids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    xids.into_iter().filter(|x| seen.insert(*x)).collect()
}

fn xid_params(xids: &[&str]) -> Vec<Value> {
    xids.iter().map(|x| Value::from(*x)).collect()
}

/// `xid -> status` of the global rows registers check and transitions compare, in one
/// locking read (after this batch's own status updates). With a transition in the batch it
/// reads `FOR UPDATE`, which the compare-and-set needs; a register then holds an exclusive
/// rather than a shared lock, which only makes registers of the same transaction through
/// other connections wait for this batch's commit. Without one, `LOCK IN SHARE MODE`:
/// registers proceed together, while a decision's UPDATE of the row (on another TC) waits
/// until this batch commits, and then reads its branches.
async fn read_statuses(tx: &mut Conn, ops: &[Op]) -> Result<HashMap<String, i64>, StepError> {
    let mut exclusive = false;
    let xids = distinct(ops.iter().filter_map(|op| match op {
        Op::Register(b) if b.check_status => Some(b.xid.as_str()),
        Op::Transition { xid, .. } => {
            exclusive = true;
            Some(xid.as_str())
        }
        _ => None,
    }));
    if xids.is_empty() {
        return Ok(HashMap::new());
    }
    let lock = if exclusive {
        "FOR UPDATE"
    } else {
        "LOCK IN SHARE MODE"
    };
    let sql = format!(
        "SELECT xid, status FROM global_table FORCE INDEX (PRIMARY) WHERE xid IN ({}) {lock}",
        placeholders(xids.len())
    );
    let rows: Vec<(String, i64)> = tx.exec(sql, xid_params(&xids)).await?;
    Ok(rows.into_iter().collect())
}

async fn insert_globals(tx: &mut Conn, ops: &[Op]) -> Result<(), StepError> {
    let mut params = Vec::new();
    let mut n = 0;
    for op in ops {
        if let Op::InsertGlobal(g) = op {
            n += 1;
            params.extend([
                Value::from(g.xid.as_str()),
                Value::from(g.transaction_id),
                Value::from(g.status.code()),
                Value::from(null_if_empty(&g.application_id)),
                Value::from(null_if_empty(&g.transaction_service_group)),
                Value::from(null_if_empty(&g.transaction_name)),
                Value::from(g.timeout_ms),
                Value::from(g.begin_time_ms),
            ]);
        }
    }
    if n == 0 {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO global_table (xid, transaction_id, status, application_id, \
         transaction_service_group, transaction_name, timeout, begin_time, gmt_create, \
         gmt_modified) VALUES {}",
        repeat_row(n, "(?, ?, ?, ?, ?, ?, ?, ?, now(), now())")
    );
    tx.exec_drop(sql, params).await?;
    Ok(())
}

/// One `UPDATE ... WHERE xid IN` per status. Should one XID appear twice, its last status
/// wins, as if the updates had run one after the other.
async fn set_global_statuses(tx: &mut Conn, ops: &[Op]) -> Result<(), StepError> {
    let mut last: Vec<(&str, GlobalStatus)> = Vec::new();
    for op in ops {
        if let Op::SetGlobalStatus { xid, status } = op {
            last.retain(|(x, _)| *x != xid.as_str());
            last.push((xid, *status));
        }
    }
    update_statuses(tx, &last).await
}

/// Sets each XID's status, one statement per distinct status.
async fn update_statuses(tx: &mut Conn, updates: &[(&str, GlobalStatus)]) -> Result<(), StepError> {
    let mut done: Vec<GlobalStatus> = Vec::new();
    for (_, status) in updates {
        if done.contains(status) {
            continue;
        }
        done.push(*status);
        let xids: Vec<&str> = updates
            .iter()
            .filter(|(_, s)| s == status)
            .map(|(x, _)| *x)
            .collect();
        let mut params = vec![Value::from(status.code())];
        params.extend(xid_params(&xids));
        let sql = format!(
            "UPDATE global_table FORCE INDEX (PRIMARY) SET status = ?, gmt_modified = now() \
             WHERE xid IN ({})",
            placeholders(xids.len())
        );
        tx.exec_drop(sql, params).await?;
    }
    Ok(())
}

/// Registers: the statuses from [`read_statuses`], one insert of every lock row, one insert
/// of every branch row. A register refused on its status, or whose rows conflict,
/// writes nothing and is answered so.
async fn register(
    tx: &mut Conn,
    ops: &[Op],
    found: &HashMap<String, i64>,
    answers: &mut Answers,
) -> Result<(), StepError> {
    let regs: Vec<(usize, &NewBranch)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Register(b) => Some((i, b)),
            _ => None,
        })
        .collect();
    if regs.is_empty() {
        return Ok(());
    }
    let mut accepted: Vec<(usize, &NewBranch)> = Vec::with_capacity(regs.len());
    for (i, b) in regs {
        if b.check_status {
            let status = match found.get(&b.xid) {
                None => Ok(GlobalStatus::Finished),
                Some(code) => global_status(*code),
            };
            match status {
                Ok(GlobalStatus::Begin) => {}
                Ok(s) => {
                    set(answers, i, Ok(Outcome::Added(BranchAdded::Refused(s))));
                    continue;
                }
                Err(e) => {
                    set(answers, i, Err(e));
                    continue;
                }
            }
        }
        accepted.push((i, b));
    }
    let refused = take_locks(tx, &accepted, answers).await?;
    accepted.retain(|(i, _)| !refused.contains(i));
    insert_branches(tx, &accepted, answers).await
}

/// Inserts the lock rows of `regs`: all in one statement when none is held, else unit by
/// unit so each conflict refuses only its own register. Returns the refused ones.
async fn take_locks(
    tx: &mut Conn,
    regs: &[(usize, &NewBranch)],
    answers: &mut Answers,
) -> Result<HashSet<usize>, StepError> {
    let locking: Vec<&(usize, &NewBranch)> =
        regs.iter().filter(|(_, b)| !b.locks.is_empty()).collect();
    let mut refused = HashSet::new();
    if locking.is_empty() {
        return Ok(refused);
    }
    let total: usize = locking.iter().map(|(_, b)| b.locks.len()).sum();
    if total <= MAX_COMBINED_LOCK_ROWS {
        // Row-key order across units, as within one (`rows.rs`), keeps deadlocks with other
        // writers rare.
        let mut rows: Vec<(&LockRow, &NewBranch)> = locking
            .iter()
            .flat_map(|(_, b)| b.locks.iter().map(move |r| (r, *b)))
            .collect();
        rows.sort_by(|a, b| a.0.row_key.cmp(&b.0.row_key));
        let mut params = Vec::with_capacity(rows.len() * 7);
        for (r, b) in &rows {
            push_lock_params(&mut params, r, &b.xid, b.owner(), &b.resource_id);
        }
        let sql = format!("{INSERT_LOCKS}{}", repeat_row(rows.len(), LOCK_VALUES));
        match tx.exec_drop(sql, params).await {
            Ok(()) => return Ok(refused),
            // Some row is taken (possibly re-entrantly, or by another unit of this batch):
            // the statement left nothing behind; sort it out unit by unit.
            Err(e) if server_code(&e) == Some(DUPLICATE_KEY) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (i, b) in locking {
        if let Err(e) = insert_locks(tx, b.owner(), &b.xid, &b.resource_id, &b.locks).await? {
            set(answers, *i, Ok(Outcome::Added(BranchAdded::Lock(e))));
            refused.insert(*i);
        }
    }
    Ok(refused)
}

async fn insert_branches(
    tx: &mut Conn,
    regs: &[(usize, &NewBranch)],
    answers: &mut Answers,
) -> Result<(), StepError> {
    if regs.is_empty() {
        return Ok(());
    }
    let mut params = Vec::with_capacity(regs.len() * 8);
    for (_, b) in regs {
        params.extend([
            Value::from(b.branch_id),
            Value::from(b.xid.as_str()),
            Value::from(b.transaction_id),
            Value::from(b.resource_id.as_str()),
            Value::from(b.branch_type.java_name()),
            Value::from(b.status.code()),
            Value::from(b.client_id.as_str()),
            Value::from(null_if_empty(&b.application_data)),
        ]);
    }
    // Branches inserted together share `now(6)`; the branch id breaks the tie in
    // registration order (`sessions.rs`).
    let sql = format!(
        "INSERT INTO branch_table (branch_id, xid, transaction_id, resource_id, branch_type, \
         status, client_id, application_data, gmt_create, gmt_modified) VALUES {}",
        repeat_row(regs.len(), "(?, ?, ?, ?, ?, ?, ?, ?, now(6), now(6))")
    );
    tx.exec_drop(sql, params).await?;
    for (i, _) in regs {
        set(answers, *i, Ok(Outcome::Added(BranchAdded::Added)));
    }
    Ok(())
}

/// Compare-and-set of global statuses: the rows were read `FOR UPDATE` ([`read_statuses`]),
/// each transition is decided on what that found (in batch order, so a second transition of one XID sees the
/// first), then the winners' statuses, leases, commit lock releases and branch lists take one
/// statement each.
async fn transition(
    tx: &mut Conn,
    ops: &[Op],
    found: &HashMap<String, i64>,
    leases: &Leases,
    answers: &mut Answers,
) -> Result<(), StepError> {
    let wanted: Vec<(usize, i64, &str, GlobalStatus, GlobalStatus)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Transition {
                transaction_id,
                xid,
                from,
                to,
            } => Some((i, *transaction_id, xid.as_str(), *from, *to)),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let xids = distinct(wanted.iter().map(|w| w.2));
    let mut current: HashMap<&str, Option<i64>> =
        xids.iter().map(|x| (*x, found.get(*x).copied())).collect();
    let mut applied: Vec<(usize, i64, &str, GlobalStatus)> = Vec::new();
    for (i, tid, xid, from, to) in wanted {
        let status = current.get(xid).copied().flatten().map(global_status);
        match status.transpose() {
            Ok(Some(s)) if s == from => {
                current.insert(xid, Some(i64::from(to.code())));
                applied.push((i, tid, xid, to));
            }
            Ok(current) => set(
                answers,
                i,
                Ok(Outcome::Transition(Transition::Lost { current })),
            ),
            Err(e) => set(answers, i, Err(e)),
        }
    }
    if applied.is_empty() {
        return Ok(());
    }
    let won = distinct(applied.iter().map(|a| a.2));
    let mut updates: Vec<(&str, GlobalStatus)> = Vec::with_capacity(won.len());
    for x in &won {
        if let Some(to) = applied.iter().rev().find(|a| a.2 == *x).map(|a| a.3) {
            updates.push((x, to));
        }
    }
    update_statuses(tx, &updates).await?;
    let driving: Vec<(i64, &str)> = distinct_pairs(
        applied
            .iter()
            .filter(|a| is_driving(a.3))
            .map(|a| (a.1, a.2)),
    );
    leases.take_in(tx, &driving).await?;
    // The branch list is stable from here on: a register of these transactions (from any
    // connection) waits for the exclusive row lock `read_statuses` took.
    let branches = branches_of(tx, &won).await?;
    // Commit decided: every row of phase one is final, so free them with the decision. The
    // rows are found by the branch ids just read (each lock row belongs to a branch row,
    // inserted with it), which spares a join.
    let released: Vec<Value> = distinct(
        applied
            .iter()
            .filter(|a| {
                matches!(
                    a.3,
                    GlobalStatus::Committing | GlobalStatus::AsyncCommitting
                )
            })
            .map(|a| a.2),
    )
    .into_iter()
    .filter_map(|x| branches.get(x))
    .flatten()
    .map(|b| Value::from(b.branch_id))
    .collect();
    if !released.is_empty() {
        let sql = format!(
            "DELETE l FROM lock_table l FORCE INDEX (idx_branch_id) WHERE l.branch_id IN ({})",
            placeholders(released.len())
        );
        tx.exec_drop(sql, released).await?;
    }
    for (i, _, xid, _) in applied {
        let list = branches.get(xid).cloned().unwrap_or_default();
        set(
            answers,
            i,
            Ok(Outcome::Transition(Transition::Applied {
                branches: Some(list),
            })),
        );
    }
    Ok(())
}

fn distinct_pairs<'a>(pairs: impl IntoIterator<Item = (i64, &'a str)>) -> Vec<(i64, &'a str)> {
    let mut seen = HashSet::new();
    pairs.into_iter().filter(|(_, x)| seen.insert(*x)).collect()
}

/// Each XID's branches in registration order (see `sessions.rs`). A row that does not decode
/// fails the batch, so that the writer isolates the transition it belongs to.
async fn branches_of(
    tx: &mut Conn,
    xids: &[&str],
) -> Result<HashMap<String, Vec<StoredBranch>>, StepError> {
    let sql = format!(
        "SELECT {BRANCH_COLUMNS_WITH_XID} FROM branch_table FORCE INDEX (idx_xid) \
         WHERE xid IN ({}) \
         ORDER BY xid, gmt_create, branch_id",
        placeholders(xids.len())
    );
    let rows: Vec<Row> = tx.exec(sql, xid_params(xids)).await?;
    let mut by_xid: HashMap<String, Vec<StoredBranch>> = HashMap::new();
    for row in rows {
        let (xid, b) = branch_with_xid_from_row(row)?;
        by_xid.entry(xid).or_default().push(b);
    }
    Ok(by_xid)
}

/// Branch status updates are rare (branch reports): one statement each.
async fn set_branch_statuses(tx: &mut Conn, ops: &[Op]) -> Result<(), StepError> {
    for op in ops {
        if let Op::SetBranchStatus {
            xid,
            branch_id,
            status,
        } = op
        {
            tx.exec_drop(
                "UPDATE branch_table SET status = ?, gmt_modified = now(6) \
                 WHERE xid = ? AND branch_id = ?",
                (status.code(), xid.as_str(), *branch_id),
            )
            .await?;
        }
    }
    Ok(())
}

/// Each branch goes with its lock rows.
async fn remove_branches(tx: &mut Conn, ops: &[Op]) -> Result<(), StepError> {
    let mut params = Vec::new();
    for op in ops {
        if let Op::RemoveBranch { xid, branch_id } = op {
            params.extend([Value::from(*branch_id), Value::from(xid.as_str())]);
        }
    }
    if params.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "DELETE b, l FROM branch_table b FORCE INDEX (PRIMARY) \
         LEFT JOIN lock_table l FORCE INDEX (idx_branch_id) ON l.branch_id = b.branch_id \
         WHERE (b.branch_id, b.xid) IN ({})",
        repeat_row(params.len() / 2, "(?, ?)")
    );
    tx.exec_drop(sql, params).await?;
    Ok(())
}

/// Each global transaction goes with its branches, lock rows and lease.
async fn remove_globals(tx: &mut Conn, ops: &[Op]) -> Result<(), StepError> {
    let xids = distinct(ops.iter().filter_map(|op| match op {
        Op::RemoveGlobal { xid, .. } => Some(xid.as_str()),
        _ => None,
    }));
    if xids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "DELETE g, b, l, s FROM global_table g FORCE INDEX (PRIMARY) \
         LEFT JOIN branch_table b FORCE INDEX (idx_xid) ON b.xid = g.xid \
         LEFT JOIN lock_table l FORCE INDEX (idx_branch_id) ON l.branch_id = b.branch_id \
         LEFT JOIN seata_rs_tx_lease s FORCE INDEX (PRIMARY) ON s.xid = g.xid \
         WHERE g.xid IN ({})",
        placeholders(xids.len())
    );
    tx.exec_drop(sql, xid_params(&xids)).await?;
    Ok(())
}
