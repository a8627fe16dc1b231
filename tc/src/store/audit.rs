//! [`AuditRecord`]: what an operator did through the admin API (give up a branch, delete a
//! kept record, resume a rollback) and what an RM reported that needs an operator (an
//! unretryable phase two with its report). Every store keeps them beside the sessions: the
//! memory store in memory, the file store as `audit` log records (kept by compaction), the
//! db store in the `seata_audit` table.

use serde::{Deserialize, Serialize};

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Who: `admin` (a bearer-token holder, with the name it gave), `rm` or `tc`.
    pub actor: String,
    /// What: `give-up`, `delete`, `retry`, `commit`, `rollback`, `rm-unretryable`.
    pub action: String,
    /// The global transaction (XID or DTM gid).
    pub xid: String,
    /// The branch concerned, if one (a string in JSON: see [`id_json`]).
    #[serde(with = "id_json::option")]
    pub branch_id: Option<i64>,
    /// The operator's reason, or the RM's report.
    pub reason: String,
    /// The status the transaction had when it happened.
    pub status: String,
}

/// The records of `xid` (all of them), else the newest `limit`, oldest first.
pub(crate) fn select(all: &[AuditRecord], xid: Option<&str>, limit: usize) -> Vec<AuditRecord> {
    match xid {
        Some(x) => all.iter().filter(|r| r.xid == x).cloned().collect(),
        None => all
            .iter()
            .skip(all.len().saturating_sub(limit))
            .cloned()
            .collect(),
    }
}

/// Transaction and branch ids as JSON strings: they pass 2^53, so a JavaScript client (the
/// console) would round them as numbers and then name a branch that does not exist.
pub mod id_json {
    use serde::{Deserialize, Deserializer, Serializer};

    /// `i64` ↔ `"123"`.
    pub fn serialize<S: Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    /// `"123"` (or a number) → `i64`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Id {
            Text(String),
            Number(i64),
        }
        match Id::deserialize(d)? {
            Id::Number(n) => Ok(n),
            Id::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }

    /// The same for `Option<i64>` (`null` when absent).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        /// `Some(i64)` ↔ `"123"`, `None` ↔ `null`.
        pub fn serialize<S: Serializer>(id: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match id {
                Some(id) => s.collect_str(id),
                None => s.serialize_none(),
            }
        }

        /// `"123"`, a number or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] i64);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(n)| n))
        }
    }
}
