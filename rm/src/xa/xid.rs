//! The XA branch XID Seata 1.2 gives a branch (tcc-xa-saga.md §3.1): format id 9752, gtrid the
//! global XID's UTF-8 bytes, bqual `"-" + branchId` (empty for branch 0). Java tooling and a
//! Java RM recovering the same database read it as their own.

use std::fmt::Write;

/// Seata's XA format id.
pub const XA_FORMAT_ID: i64 = 9752;

/// MySQL caps gtrid and bqual at 64 bytes each.
const MAX_PART: usize = 64;

/// One branch's XA XID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BranchXid {
    /// The global transaction id's bytes.
    pub gtrid: Vec<u8>,
    /// `-<branch id>`.
    pub bqual: Vec<u8>,
}

impl BranchXid {
    /// The XID of branch `branch_id` of global transaction `xid`.
    pub fn new(xid: &str, branch_id: i64) -> Self {
        let bqual = if branch_id == 0 {
            Vec::new()
        } else {
            format!("-{branch_id}").into_bytes()
        };
        BranchXid {
            gtrid: xid.as_bytes().to_vec(),
            bqual,
        }
    }

    /// Java's `toString`, `xid-branchId`: the key of a held connection.
    pub fn key(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.gtrid),
            String::from_utf8_lossy(&self.bqual)
        )
    }

    /// The global XID, if gtrid is UTF-8.
    pub fn global_xid(&self) -> Option<&str> {
        std::str::from_utf8(&self.gtrid).ok()
    }

    /// The XID as MySQL's `X'gtrid',X'bqual',9752`. XA statements cannot be prepared, so the
    /// XID is written into the SQL, as hex digits only (what Connector/J sends too).
    pub fn sql(&self) -> String {
        format!(
            "X'{}',X'{}',{XA_FORMAT_ID}",
            hex(&self.gtrid),
            hex(&self.bqual)
        )
    }

    /// Whether MySQL accepts it (gtrid 1..=64 bytes, bqual ≤ 64).
    pub fn is_valid(&self) -> bool {
        !self.gtrid.is_empty() && self.gtrid.len() <= MAX_PART && self.bqual.len() <= MAX_PART
    }

    /// A row of `XA RECOVER` (`formatID, gtrid_length, bqual_length, data`), if it is a Seata
    /// XID whose lengths fit its data.
    pub fn from_recover_row(
        format_id: i64,
        gtrid_len: i64,
        bqual_len: i64,
        data: &[u8],
    ) -> Option<Self> {
        if format_id != XA_FORMAT_ID {
            return None;
        }
        let g = usize::try_from(gtrid_len).ok()?;
        let b = usize::try_from(bqual_len).ok()?;
        let gtrid = data.get(..g)?.to_vec();
        let bqual = data.get(g..g.checked_add(b)?)?.to_vec();
        Some(BranchXid { gtrid, bqual })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_seata_1_2() {
        let x = BranchXid::new("192.168.0.2:8091:2000042948", 2000042950);
        assert_eq!(x.gtrid, b"192.168.0.2:8091:2000042948");
        assert_eq!(x.bqual, b"-2000042950");
        assert_eq!(x.key(), "192.168.0.2:8091:2000042948-2000042950");
        assert!(BranchXid::new("x", 0).bqual.is_empty());
        assert!(x.is_valid());
    }

    #[test]
    fn writes_hex_sql() {
        let x = BranchXid::new("ab", 1);
        assert_eq!(x.sql(), "X'6162',X'2d31',9752");
    }

    #[test]
    fn reads_recover_rows_defensively() {
        let x = BranchXid::from_recover_row(9752, 2, 2, b"ab-1").unwrap();
        assert_eq!(x, BranchXid::new("ab", 1));
        assert_eq!(BranchXid::from_recover_row(1, 2, 2, b"ab-1"), None);
        assert_eq!(BranchXid::from_recover_row(9752, 3, 2, b"ab-1"), None);
        assert_eq!(BranchXid::from_recover_row(9752, -1, 2, b"ab-1"), None);
    }
}
