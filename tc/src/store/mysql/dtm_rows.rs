//! Rows of DTM's `trans_global` and `trans_branch_op` (spec §10) as the model's [`Trans`] and
//! [`Branch`]: the column lists, the parameters of the writes, and decoding. Decoding reads
//! columns by name and goes through `take_opt`, so a row an operator edited by hand becomes a
//! [`StoreError::Corrupt`] naming the gid, never a panic.
//!
//! Column types (`scripts/sql/mysql.sql`): times are BIGINT ms (0 = not set), as in the
//! model; `gid`/`branch_id` are VARBINARY (compared byte for byte, as the memory store does);
//! `owner` is the BIGINT token of the TC's node lease (`lease.rs`), 0 = none, shown to the
//! model as text (`""` for none); `options` is the JSON of [`TransOptions`].

use mysql_async::prelude::FromValue;
use mysql_async::{Row, Value};

use crate::dtm::model::{Branch, BranchStatus, Op, Trans, TransOptions, TransStatus, TransType};
use crate::store::StoreError;

/// The unfinished statuses, as an SQL list: what `due` looks at (spec §5.2).
pub(super) const UNFINISHED: &str = "('prepared', 'submitted', 'aborting')";
/// The final statuses, as an SQL list: what `purge` may delete.
pub(super) const FINISHED: &str = "('succeed', 'failed')";

/// Columns of `trans_global` that [`trans_from_row`] reads.
pub(super) const TRANS_COLUMNS: &str = "id, gid, trans_type, status, protocol, query_prepared, \
     custom_data, options, rollback_reason, result, create_time, update_time, finish_time, \
     rollback_time, next_cron_interval, next_cron_time, retry_count, owner, ext_data";

/// A new `trans_global` row: the parameters of [`trans_params`] after the gid and type.
pub(super) const INSERT_TRANS: &str = "INSERT INTO trans_global (gid, trans_type, status, \
     protocol, query_prepared, custom_data, options, rollback_reason, result, update_time, \
     finish_time, rollback_time, next_cron_interval, next_cron_time, retry_count, owner, \
     ext_data, create_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Everything [`DtmStore::save`](crate::store::dtm::DtmStore::save) writes (all but `id`,
/// `gid`, `trans_type`, `create_time`), if the status is still the expected one: the
/// parameters of [`trans_params`], then the gid and the expected status.
pub(super) const UPDATE_TRANS: &str = "UPDATE trans_global SET status = ?, protocol = ?, \
     query_prepared = ?, custom_data = ?, options = ?, rollback_reason = ?, result = ?, \
     update_time = ?, finish_time = ?, rollback_time = ?, next_cron_interval = ?, \
     next_cron_time = ?, retry_count = ?, owner = ?, ext_data = ? \
     WHERE gid = ? AND status = ?";

/// Columns of `trans_branch_op` that [`branch_from_row`] reads.
pub(super) const BRANCH_COLUMNS: &str = "branch_id, op, url, bin_data, status, create_time, \
     update_time, finish_time, rollback_time";

/// Start of a multi-row insert of branch ops; each row is [`BRANCH_VALUES`], filled by
/// [`push_branch_params`].
pub(super) const INSERT_BRANCHES: &str = "INSERT INTO trans_branch_op (gid, branch_id, op, url, \
     bin_data, status, create_time, update_time, finish_time, rollback_time) VALUES ";
/// One row of [`INSERT_BRANCHES`].
pub(super) const BRANCH_VALUES: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
/// Parameters per row of [`INSERT_BRANCHES`].
pub(super) const BRANCH_PARAMS: usize = 10;

/// A branch op's outcome (what [`Branch::finish`] does to a stored op): status, update and
/// finish time, and the rollback time when it is given (compensating ops), then the key.
pub(super) const UPDATE_BRANCH: &str = "UPDATE trans_branch_op SET status = ?, update_time = ?, \
     finish_time = ?, rollback_time = COALESCE(?, rollback_time) \
     WHERE gid = ? AND branch_id = ? AND op = ?";

/// The fields of `trans` that a save writes, in the order of [`UPDATE_TRANS`]'s `SET` (and
/// of [`INSERT_TRANS`] after its gid and type), with `owner` as the lease holder. 15 values.
pub(super) fn trans_params(trans: &Trans, owner: i64) -> Result<Vec<Value>, StoreError> {
    Ok(vec![
        Value::from(trans.status.as_str()),
        Value::from(trans.protocol.as_str()),
        Value::from(trans.query_prepared.as_str()),
        Value::from(trans.custom_data.as_str()),
        Value::from(options_json(&trans.options)?),
        Value::from(trans.rollback_reason.as_str()),
        Value::from(trans.result.as_str()),
        Value::from(trans.update_time),
        Value::from(trans.finish_time),
        Value::from(trans.rollback_time),
        Value::from(trans.next_cron_interval),
        Value::from(trans.next_cron_time),
        Value::from(trans.retry_count),
        Value::from(owner),
        Value::from(trans.ext_data.as_str()),
    ])
}

/// The parameters of [`INSERT_TRANS`].
pub(super) fn insert_params(trans: &Trans, owner: i64) -> Result<Vec<Value>, StoreError> {
    let mut params = Vec::with_capacity(18);
    params.push(Value::from(trans.gid.as_str()));
    params.push(Value::from(trans.trans_type.as_str()));
    params.extend(trans_params(trans, owner)?);
    params.push(Value::from(trans.create_time));
    Ok(params)
}

/// Appends one row of [`INSERT_BRANCHES`].
pub(super) fn push_branch_params(params: &mut Vec<Value>, gid: &str, b: &Branch) {
    params.extend([
        Value::from(gid),
        Value::from(b.branch_id.as_str()),
        Value::from(b.op.as_str()),
        Value::from(b.url.as_str()),
        Value::from(b.bin_data.as_slice()),
        Value::from(b.status.as_str()),
        Value::from(b.create_time),
        Value::from(b.update_time),
        Value::from(b.finish_time),
        Value::from(b.rollback_time),
    ]);
}

/// The rollback time a finished op gets, as [`Branch::finish`] sets it: only compensating ops
/// (compensate, cancel, rollback) have one.
pub(super) fn rollback_time_of(op: Op, time_ms: i64) -> Option<i64> {
    matches!(op, Op::Compensate | Op::Cancel | Op::Rollback).then_some(time_ms)
}

/// `owner` as the model shows it: the token in decimal, `""` for none.
pub(super) fn owner_text(owner: i64) -> String {
    if owner == 0 {
        String::new()
    } else {
        owner.to_string()
    }
}

fn options_json(options: &TransOptions) -> Result<String, StoreError> {
    serde_json::to_string(options)
        .map_err(|e| StoreError::Backend(format!("options do not encode as JSON: {e}")))
}

/// Decodes `options`. Fields missing from the stored JSON (written before a field was added,
/// or by hand) take their defaults rather than making the row unreadable; unknown ones are
/// ignored. Empty or NULL: all defaults.
fn options_from_json(gid: &str, json: &str) -> Result<TransOptions, StoreError> {
    if json.trim().is_empty() {
        return Ok(TransOptions::default());
    }
    let bad = |e: serde_json::Error| {
        StoreError::Corrupt(format!(
            "trans_global {gid}: options are not valid JSON: {e}"
        ))
    };
    let stored: serde_json::Value = serde_json::from_str(json).map_err(bad)?;
    let mut merged = serde_json::to_value(TransOptions::default()).map_err(bad)?;
    match (merged.as_object_mut(), stored) {
        (Some(defaults), serde_json::Value::Object(given)) => defaults.extend(given),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "trans_global {gid}: options are not a JSON object"
            )))
        }
    }
    serde_json::from_value(merged).map_err(bad)
}

/// Takes column `name` of `row`. `table`/`key` name the row in the error.
fn take<T: FromValue>(row: &mut Row, name: &str, table: &str, key: &str) -> Result<T, StoreError> {
    match row.take_opt::<T, _>(name) {
        Some(Ok(v)) => Ok(v),
        // The value itself is not shown: it may be a large body.
        Some(Err(_)) => Err(StoreError::Corrupt(format!(
            "{table} row {key}: column {name} has an unexpected type or encoding"
        ))),
        None => Err(StoreError::Corrupt(format!(
            "{table} row {key}: column {name} is missing"
        ))),
    }
}

/// A nullable text column; NULL reads as empty.
fn text(row: &mut Row, name: &str, table: &str, key: &str) -> Result<String, StoreError> {
    Ok(take::<Option<String>>(row, name, table, key)?.unwrap_or_default())
}

fn word<T: std::str::FromStr<Err = crate::dtm::model::UnknownWord>>(
    row: &mut Row,
    name: &str,
    table: &str,
    key: &str,
) -> Result<T, StoreError> {
    take::<String>(row, name, table, key)?
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{table} row {key}: {e}")))
}

/// Decodes a row of [`TRANS_COLUMNS`].
pub(super) fn trans_from_row(mut row: Row) -> Result<Trans, StoreError> {
    const T: &str = "trans_global";
    let gid: String = take(&mut row, "gid", T, "?")?;
    let r = &mut row;
    let k = gid.as_str();
    let options = text(r, "options", T, k)?;
    Ok(Trans {
        id: take(r, "id", T, k)?,
        trans_type: word::<TransType>(r, "trans_type", T, k)?,
        status: word::<TransStatus>(r, "status", T, k)?,
        protocol: text(r, "protocol", T, k)?,
        query_prepared: text(r, "query_prepared", T, k)?,
        custom_data: text(r, "custom_data", T, k)?,
        options: options_from_json(k, &options)?,
        rollback_reason: text(r, "rollback_reason", T, k)?,
        result: text(r, "result", T, k)?,
        create_time: take(r, "create_time", T, k)?,
        update_time: take(r, "update_time", T, k)?,
        finish_time: take(r, "finish_time", T, k)?,
        rollback_time: take(r, "rollback_time", T, k)?,
        next_cron_interval: take(r, "next_cron_interval", T, k)?,
        next_cron_time: take(r, "next_cron_time", T, k)?,
        retry_count: take(r, "retry_count", T, k)?,
        owner: owner_text(take(r, "owner", T, k)?),
        ext_data: text(r, "ext_data", T, k)?,
        gid,
    })
}

/// Decodes a row of [`BRANCH_COLUMNS`] of transaction `gid`.
pub(super) fn branch_from_row(gid: &str, mut row: Row) -> Result<Branch, StoreError> {
    const T: &str = "trans_branch_op";
    let branch_id: String = take(&mut row, "branch_id", T, gid)?;
    let r = &mut row;
    let key = format!("{gid}/{branch_id}");
    let k = key.as_str();
    Ok(Branch {
        op: word::<Op>(r, "op", T, k)?,
        url: text(r, "url", T, k)?,
        bin_data: take::<Option<Vec<u8>>>(r, "bin_data", T, k)?.unwrap_or_default(),
        status: word::<BranchStatus>(r, "status", T, k)?,
        create_time: take(r, "create_time", T, k)?,
        update_time: take(r, "update_time", T, k)?,
        finish_time: take(r, "finish_time", T, k)?,
        rollback_time: take(r, "rollback_time", T, k)?,
        branch_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_are_the_model_words() {
        let unfinished = [
            TransStatus::Prepared,
            TransStatus::Submitted,
            TransStatus::Aborting,
        ];
        let finished = [TransStatus::Succeed, TransStatus::Failed];
        let list = |s: &[TransStatus]| {
            let words: Vec<String> = s.iter().map(|s| format!("'{s}'")).collect();
            format!("({})", words.join(", "))
        };
        assert_eq!(list(&unfinished), UNFINISHED);
        assert_eq!(list(&finished), FINISHED);
        assert!(unfinished.iter().all(|s| !s.is_finished()));
        assert!(finished.iter().all(|s| s.is_finished()));
    }

    #[test]
    fn rollback_time_follows_branch_finish() {
        for op in [
            Op::Action,
            Op::Compensate,
            Op::Try,
            Op::Confirm,
            Op::Cancel,
            Op::Commit,
            Op::Rollback,
            Op::Msg,
        ] {
            let mut b = Branch::new("01".into(), op, String::new(), vec![], 1);
            b.finish(BranchStatus::Succeed, 9);
            let expected = (b.rollback_time != 0).then_some(9);
            assert_eq!(rollback_time_of(op, 9), expected, "{op}");
        }
    }

    #[test]
    fn statements_have_as_many_placeholders_as_parameters() {
        let count = |sql: &str| sql.matches('?').count();
        let trans = Trans {
            id: 0,
            gid: "g".into(),
            trans_type: TransType::Saga,
            status: TransStatus::Submitted,
            protocol: String::new(),
            query_prepared: String::new(),
            custom_data: String::new(),
            options: TransOptions::default(),
            rollback_reason: String::new(),
            result: String::new(),
            create_time: 1,
            update_time: 1,
            finish_time: 0,
            rollback_time: 0,
            next_cron_interval: 10,
            next_cron_time: 2,
            retry_count: 0,
            owner: String::new(),
            ext_data: String::new(),
        };
        assert_eq!(count(INSERT_TRANS), insert_params(&trans, 7).unwrap().len());
        assert_eq!(
            count(UPDATE_TRANS),
            trans_params(&trans, 7).unwrap().len() + 2
        );
        let mut params = vec![];
        let b = Branch::new("01".into(), Op::Action, "u".into(), vec![1], 1);
        push_branch_params(&mut params, "g", &b);
        assert_eq!(params.len(), BRANCH_PARAMS);
        assert_eq!(count(BRANCH_VALUES), BRANCH_PARAMS);
    }

    #[test]
    fn options_missing_fields_take_defaults_and_garbage_is_corrupt() {
        let o = options_from_json("g", r#"{"timeout_to_fail": 7, "new_field": 1}"#).unwrap();
        assert_eq!(o.timeout_to_fail, 7);
        assert_eq!(o.retry_interval, 0);
        assert_eq!(options_from_json("g", "").unwrap(), TransOptions::default());
        let mut full = TransOptions {
            wait_result: true,
            ..TransOptions::default()
        };
        full.branch_headers.insert("k".into(), "v".into());
        let json = options_json(&full).unwrap();
        assert_eq!(options_from_json("g", &json).unwrap(), full);
        assert!(matches!(
            options_from_json("g", "[1]"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            options_from_json("g", "{"),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(owner_text(0), "");
        assert_eq!(owner_text(42), "42");
    }
}
