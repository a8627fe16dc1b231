//! DTM transactions as the log writes them: borrowed mirrors of the model's rows
//! ([`Trans`], [`Branch`], [`BranchChange`]) that are fields of the dtm-* records in
//! `record.rs`, and their conversion back into the model at replay.
//!
//! Why mirrors rather than the model types themselves: postcard encodes a struct by field
//! position and an enum by variant index, so writing the model directly would tie the disk
//! format to the order of fields and variants in `dtm/model.rs`. Here every status, type and op
//! is DTM's word (as on its wire, so stable by definition), and the conversions destructure the
//! model exhaustively: a field added to the model does not compile until this file says how it
//! is stored. Writing borrows everything (no copy of a body on the hot path); replay reads
//! strings and bodies borrowed from the record bytes and copies them once, into the table.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dtm::model::{Branch, BranchChange, Trans, TransOptions};

/// `dtm-trans`: the global row, every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DtmTrans<'a> {
    pub(super) id: i64,
    pub(super) gid: &'a str,
    pub(super) trans_type: &'a str,
    pub(super) status: &'a str,
    pub(super) protocol: &'a str,
    pub(super) query_prepared: &'a str,
    pub(super) custom_data: &'a str,
    #[serde(borrow)]
    pub(super) options: DtmOptions<'a>,
    pub(super) rollback_reason: &'a str,
    pub(super) result: &'a str,
    pub(super) create_time: i64,
    pub(super) update_time: i64,
    pub(super) finish_time: i64,
    pub(super) rollback_time: i64,
    pub(super) next_cron_interval: i64,
    pub(super) next_cron_time: i64,
    pub(super) retry_count: i64,
    pub(super) owner: &'a str,
    pub(super) ext_data: &'a str,
}

/// `dtm-options`: the client's options of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DtmOptions<'a> {
    pub(super) wait_result: bool,
    pub(super) timeout_to_fail: i64,
    pub(super) request_timeout: i64,
    pub(super) retry_interval: i64,
    pub(super) retry_limit: i64,
    /// In the model's (sorted) order.
    #[serde(borrow)]
    pub(super) branch_headers: Vec<(&'a str, &'a str)>,
    pub(super) concurrent: bool,
}

/// `dtm-branch`: one branch op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DtmBranch<'a> {
    pub(super) branch_id: &'a str,
    pub(super) op: &'a str,
    pub(super) url: &'a str,
    /// Any bytes, not only UTF-8: the body is sent back byte for byte.
    #[serde(with = "bytes")]
    pub(super) bin_data: &'a [u8],
    pub(super) status: &'a str,
    pub(super) create_time: i64,
    pub(super) update_time: i64,
    pub(super) finish_time: i64,
    pub(super) rollback_time: i64,
}

/// `dtm-change`: a branch op's new status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DtmChange<'a> {
    pub(super) branch_id: &'a str,
    pub(super) op: &'a str,
    pub(super) status: &'a str,
    pub(super) time_ms: i64,
}

/// `bin_data` as postcard's byte string (a varint length, then the bytes), written in one
/// piece rather than byte by byte, and borrowed from the record when read.
mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'de [u8], D::Error> {
        <&'de [u8]>::deserialize(d)
    }
}

/// A word of the model read back; an unknown one (damage, or a newer build's) is an error.
pub(super) fn word<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| format!("DTM record: {e}"))
}

impl<'a> DtmTrans<'a> {
    /// The row as logged.
    pub(super) fn of(t: &'a Trans) -> Self {
        let Trans {
            id,
            gid,
            trans_type,
            status,
            protocol,
            query_prepared,
            custom_data,
            options,
            rollback_reason,
            result,
            create_time,
            update_time,
            finish_time,
            rollback_time,
            next_cron_interval,
            next_cron_time,
            retry_count,
            owner,
            ext_data,
        } = t;
        DtmTrans {
            id: *id,
            gid,
            trans_type: trans_type.as_str(),
            status: status.as_str(),
            protocol,
            query_prepared,
            custom_data,
            options: DtmOptions::of(options),
            rollback_reason,
            result,
            create_time: *create_time,
            update_time: *update_time,
            finish_time: *finish_time,
            rollback_time: *rollback_time,
            next_cron_interval: *next_cron_interval,
            next_cron_time: *next_cron_time,
            retry_count: *retry_count,
            owner,
            ext_data,
        }
    }

    /// The model's row.
    pub(super) fn to_model(&self) -> Result<Trans, String> {
        Ok(Trans {
            id: self.id,
            gid: self.gid.to_owned(),
            trans_type: word(self.trans_type)?,
            status: word(self.status)?,
            protocol: self.protocol.to_owned(),
            query_prepared: self.query_prepared.to_owned(),
            custom_data: self.custom_data.to_owned(),
            options: self.options.to_model(),
            rollback_reason: self.rollback_reason.to_owned(),
            result: self.result.to_owned(),
            create_time: self.create_time,
            update_time: self.update_time,
            finish_time: self.finish_time,
            rollback_time: self.rollback_time,
            next_cron_interval: self.next_cron_interval,
            next_cron_time: self.next_cron_time,
            retry_count: self.retry_count,
            owner: self.owner.to_owned(),
            ext_data: self.ext_data.to_owned(),
        })
    }
}

impl<'a> DtmOptions<'a> {
    fn of(o: &'a TransOptions) -> Self {
        let TransOptions {
            wait_result,
            timeout_to_fail,
            request_timeout,
            retry_interval,
            retry_limit,
            branch_headers,
            concurrent,
        } = o;
        DtmOptions {
            wait_result: *wait_result,
            timeout_to_fail: *timeout_to_fail,
            request_timeout: *request_timeout,
            retry_interval: *retry_interval,
            retry_limit: *retry_limit,
            branch_headers: branch_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            concurrent: *concurrent,
        }
    }

    fn to_model(&self) -> TransOptions {
        TransOptions {
            wait_result: self.wait_result,
            timeout_to_fail: self.timeout_to_fail,
            request_timeout: self.request_timeout,
            retry_interval: self.retry_interval,
            retry_limit: self.retry_limit,
            branch_headers: self
                .branch_headers
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            concurrent: self.concurrent,
        }
    }
}

impl<'a> DtmBranch<'a> {
    /// The op as logged.
    pub(super) fn of(b: &'a Branch) -> Self {
        let Branch {
            branch_id,
            op,
            url,
            bin_data,
            status,
            create_time,
            update_time,
            finish_time,
            rollback_time,
        } = b;
        DtmBranch {
            branch_id,
            op: op.as_str(),
            url,
            bin_data,
            status: status.as_str(),
            create_time: *create_time,
            update_time: *update_time,
            finish_time: *finish_time,
            rollback_time: *rollback_time,
        }
    }

    /// The model's op.
    pub(super) fn to_model(&self) -> Result<Branch, String> {
        Ok(Branch {
            branch_id: self.branch_id.to_owned(),
            op: word(self.op)?,
            url: self.url.to_owned(),
            bin_data: self.bin_data.to_vec(),
            status: word(self.status)?,
            create_time: self.create_time,
            update_time: self.update_time,
            finish_time: self.finish_time,
            rollback_time: self.rollback_time,
        })
    }

    /// Every op of a slice, as logged.
    pub(super) fn all(branches: &'a [Branch]) -> Vec<Self> {
        branches.iter().map(DtmBranch::of).collect()
    }

    /// Every op of a record, for the model.
    pub(super) fn all_to_model(branches: &[DtmBranch<'_>]) -> Result<Vec<Branch>, String> {
        branches.iter().map(DtmBranch::to_model).collect()
    }
}

impl<'a> DtmChange<'a> {
    /// The change as logged.
    pub(super) fn of(c: &'a BranchChange) -> Self {
        let BranchChange {
            branch_id,
            op,
            status,
            time_ms,
        } = c;
        DtmChange {
            branch_id,
            op: op.as_str(),
            status: status.as_str(),
            time_ms: *time_ms,
        }
    }

    /// The model's change.
    pub(super) fn to_model(&self) -> Result<BranchChange, String> {
        Ok(BranchChange {
            branch_id: self.branch_id.to_owned(),
            op: word(self.op)?,
            status: word(self.status)?,
            time_ms: self.time_ms,
        })
    }
}
