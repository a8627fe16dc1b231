//! One log record: the postcard body ([`Record`]), its framing (length, length check, version,
//! crc) and a reader over a file's bytes that tells a torn tail from corruption. The grammar is
//! in the parent module's doc comment; this file is its only implementation.
//!
//! Knows nothing about files or sessions: the writer frames records into a byte buffer and
//! recovery walks a byte slice. The DTM rows inside dtm-* records are in `dtm_record.rs`.

use serde::{Deserialize, Serialize};

use super::dtm_record::{DtmBranch, DtmChange, DtmTrans};

/// Version byte of every record this build writes and the only one it reads.
pub(super) const RECORD_VERSION: u8 = 1;

/// `length`, `length_check`, `version`, `crc`.
pub(super) const FRAME_HEADER_LEN: usize = 4 + 4 + 1 + 4;

/// Largest record body. Seata caps a branch record at 16 KiB; the large records are DTM
/// transactions, whose create carries every branch op's request body. 16 MiB leaves room and
/// still bounds what a damaged length can make recovery allocate.
pub(super) const MAX_BODY_LEN: usize = 16 << 20;

/// First bytes of a log segment.
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"SEATAWAL";

/// First bytes of a snapshot.
pub(super) const SNAPSHOT_MAGIC: &[u8; 8] = b"SEATASNP";

/// One change, as encoded with postcard. Variants are encoded by position: only append new
/// ones (and bump [`RECORD_VERSION`] for any other change). Statuses and branch types are
/// Seata's wire codes, not postcard enum indexes, so the disk format follows the protocol's
/// numbering rather than the order of Rust variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Record<'a> {
    /// GLOBAL_ADD: a new global transaction (also the first record of each snapshotted session).
    GlobalAdd {
        transaction_id: i64,
        xid: &'a str,
        status: u8,
        application_id: &'a str,
        transaction_service_group: &'a str,
        transaction_name: &'a str,
        timeout_ms: i32,
        begin_time_ms: i64,
    },
    /// GLOBAL_UPDATE.
    GlobalStatus { transaction_id: i64, status: u8 },
    /// GLOBAL_REMOVE, with every branch still recorded under it.
    GlobalRemove { transaction_id: i64 },
    /// BRANCH_ADD (also how a snapshot lists a session's branches, in registration order).
    BranchAdd {
        transaction_id: i64,
        branch_id: i64,
        branch_type: u8,
        status: u8,
        resource_id: &'a str,
        lock_key: &'a str,
        client_id: &'a str,
        application_data: &'a str,
    },
    /// BRANCH_UPDATE.
    BranchStatus {
        transaction_id: i64,
        branch_id: i64,
        status: u8,
    },
    /// BRANCH_REMOVE.
    BranchRemove { transaction_id: i64, branch_id: i64 },
    /// Last record of a snapshot written before DTM transactions were stored: proves it is
    /// complete. Still read; no longer written ([`Record::SnapshotEndDtm`] replaced it).
    SnapshotEnd { sessions: u64, branches: u64 },
    /// DTM: a new transaction with its branch ops, its id assigned (also how a snapshot lists
    /// each DTM transaction it holds, as it stands).
    DtmCreate {
        #[serde(borrow)]
        trans: DtmTrans<'a>,
        #[serde(borrow)]
        branches: Vec<DtmBranch<'a>>,
    },
    /// DTM: a conditional save that applied (the stored status was `expect`).
    DtmSave {
        #[serde(borrow)]
        trans: DtmTrans<'a>,
        expect: &'a str,
        #[serde(borrow)]
        changes: Vec<DtmChange<'a>>,
    },
    /// DTM: branch ops registered while the transaction was prepared.
    DtmBranches {
        gid: &'a str,
        #[serde(borrow)]
        branches: Vec<DtmBranch<'a>>,
    },
    /// DTM: a finished transaction purged; `id` is its id (0: not known).
    DtmRemove { gid: &'a str, id: i64 },
    /// Last record of a snapshot: proves it is complete.
    SnapshotEndDtm {
        sessions: u64,
        branches: u64,
        dtm_transactions: u64,
        dtm_branches: u64,
    },
    /// An audited event (operator action, RM's unretryable report); kept by compaction.
    Audit {
        at_ms: i64,
        actor: &'a str,
        action: &'a str,
        xid: &'a str,
        branch_id: Option<i64>,
        reason: &'a str,
        status: &'a str,
    },
    /// DTM: the highest transaction id ever assigned, purged ones included, so a reopened
    /// store never hands out an id again (a snapshot holds only the unpurged transactions).
    DtmLastId { id: i64 },
}

/// Why a record could not be framed.
#[derive(Debug)]
pub(super) enum EncodeError {
    /// postcard refused the value.
    Postcard(postcard::Error),
    /// The body is over [`MAX_BODY_LEN`].
    TooLarge(usize),
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::Postcard(e) => write!(f, "cannot encode record: {e}"),
            EncodeError::TooLarge(n) => write!(
                f,
                "record of {n} bytes is over the {MAX_BODY_LEN}-byte limit; shorten the lock key \
                 or the DTM transaction's branch bodies"
            ),
        }
    }
}

/// postcard output straight onto the end of an existing buffer, so a record costs no
/// allocation once the buffer has grown.
struct AppendFlavor<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendFlavor<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// postcard output that only counts its bytes.
struct CountFlavor(usize);

impl postcard::ser_flavors::Flavor for CountFlavor {
    type Output = usize;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0 = self.0.saturating_add(data.len());
        Ok(())
    }

    fn try_push(&mut self, _data: u8) -> postcard::Result<()> {
        self.0 = self.0.saturating_add(1);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.0)
    }
}

/// Checks that `record` can be framed (its body is within [`MAX_BODY_LEN`]) without
/// encoding it anywhere.
pub(super) fn check_len(record: &Record<'_>) -> Result<(), EncodeError> {
    match postcard::serialize_with_flavor(record, CountFlavor(0)) {
        Ok(n) if n <= MAX_BODY_LEN => Ok(()),
        Ok(n) => Err(EncodeError::TooLarge(n)),
        Err(e) => Err(EncodeError::Postcard(e)),
    }
}

/// One framed record in a buffer of its own, to be queued later by
/// [`Shared::submit_framed`](super::wal::Shared::submit_framed).
pub(super) fn frame(record: &Record<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::new();
    append(&mut buf, record)?;
    Ok(buf)
}

/// Whether `record` would frame within [`MAX_BODY_LEN`], without encoding it.
pub(super) fn check_size(record: &Record<'_>) -> Result<(), EncodeError> {
    let len = postcard::serialize_with_flavor(record, postcard::ser_flavors::Size::default())
        .map_err(EncodeError::Postcard)?;
    if len > MAX_BODY_LEN {
        return Err(EncodeError::TooLarge(len));
    }
    Ok(())
}

/// CRC-32 of `length ‖ version ‖ body`.
fn crc_of(length: u32, version: u8, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&length.to_le_bytes());
    h.update(&[version]);
    h.update(body);
    h.finalize()
}

/// Appends one framed record to `buf`. On error `buf` is left as it was.
pub(super) fn append(buf: &mut Vec<u8>, record: &Record<'_>) -> Result<(), EncodeError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    let body_start = buf.len();
    if let Err(e) = postcard::serialize_with_flavor(record, AppendFlavor(buf)) {
        buf.truncate(start);
        return Err(EncodeError::Postcard(e));
    }
    let body_len = buf.len() - body_start;
    let length = match u32::try_from(body_len) {
        Ok(n) if body_len <= MAX_BODY_LEN => n,
        _ => {
            buf.truncate(start);
            return Err(EncodeError::TooLarge(body_len));
        }
    };
    let crc = crc_of(
        length,
        RECORD_VERSION,
        buf.get(body_start..).unwrap_or_default(),
    );
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&length.to_le_bytes());
    header[4..8].copy_from_slice(&(!length).to_le_bytes());
    header[8] = RECORD_VERSION;
    header[9..].copy_from_slice(&crc.to_le_bytes());
    if let Some(h) = buf.get_mut(start..body_start) {
        h.copy_from_slice(&header);
    }
    Ok(())
}

/// A record that could not be read, at `offset` of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BadRecord {
    /// Byte offset of the record's first byte in the file.
    pub(super) offset: u64,
    /// What was wrong.
    pub(super) reason: String,
    /// The damage is what an interrupted append leaves (a record cut short, or a complete
    /// record with a bad crc ending exactly at the end of the file), so in the last segment it
    /// is a torn tail rather than corruption.
    pub(super) torn: bool,
}

/// Reads framed records from a file's bytes, after its magic.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

impl<'a> Reader<'a> {
    /// Reads `bytes` (a whole file) starting at `pos`.
    pub(super) fn new(bytes: &'a [u8], pos: usize) -> Self {
        Reader { bytes, pos }
    }

    /// Offset of the next record (or of the end once all were read).
    pub(super) fn position(&self) -> u64 {
        self.pos as u64
    }

    /// The next record and its offset; `Ok(None)` at the end of the bytes.
    pub(super) fn next_record(&mut self) -> Result<Option<(u64, Record<'a>)>, BadRecord> {
        let at = self.pos;
        let rest = self.bytes.get(at..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(None);
        }
        let bad = |reason: String, torn: bool| BadRecord {
            offset: at as u64,
            reason,
            torn,
        };
        if rest.len() < FRAME_HEADER_LEN {
            return Err(bad(
                format!("record header cut short ({} bytes)", rest.len()),
                true,
            ));
        }
        let (Some(length), Some(check), Some(crc)) =
            (u32_at(rest, 0), u32_at(rest, 4), u32_at(rest, 9))
        else {
            return Err(bad("record header unreadable".into(), true));
        };
        let version = rest.get(8).copied().unwrap_or_default();
        // A length and its complement disagree only if the header itself was damaged: an
        // interrupted append never leaves a complete header with a wrong length.
        if check != !length {
            return Err(bad(
                format!("record length {length} fails its check ({check:#010x})"),
                false,
            ));
        }
        let body_len = length as usize;
        if body_len > MAX_BODY_LEN {
            return Err(bad(
                format!("record length {body_len} over the {MAX_BODY_LEN}-byte limit"),
                false,
            ));
        }
        let end = FRAME_HEADER_LEN + body_len;
        let Some(body) = rest.get(FRAME_HEADER_LEN..end) else {
            return Err(bad(
                format!(
                    "record body cut short ({} of {body_len} bytes)",
                    rest.len() - FRAME_HEADER_LEN
                ),
                true,
            ));
        };
        if version != RECORD_VERSION {
            // The crc covers the version, so check it first: a damaged version byte is
            // corruption, an intact unknown one was written by another build.
            let msg = if crc_of(length, version, body) == crc {
                format!("record version {version} is not supported (this build reads {RECORD_VERSION}); run a newer seata-tc")
            } else {
                "record crc mismatch".to_owned()
            };
            return Err(bad(msg, end == rest.len()));
        }
        if crc_of(length, version, body) != crc {
            return Err(bad("record crc mismatch".into(), end == rest.len()));
        }
        let record = match postcard::take_from_bytes::<Record<'a>>(body) {
            Ok((r, [])) => r,
            Ok((_, left)) => {
                return Err(bad(
                    format!("{} bytes left over after the record body", left.len()),
                    false,
                ))
            }
            Err(e) => return Err(bad(format!("record body does not decode: {e}"), false)),
        };
        self.pos = at + end;
        Ok(Some((at as u64, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::dtm_record::DtmOptions;
    use super::*;

    fn samples() -> Vec<Record<'static>> {
        vec![
            Record::GlobalAdd {
                transaction_id: 42,
                xid: "10.0.0.1:8091:42",
                status: 1,
                application_id: "order",
                transaction_service_group: "my_tx_group",
                transaction_name: "place-order",
                timeout_ms: 60_000,
                begin_time_ms: 1_700_000_000_000,
            },
            Record::BranchAdd {
                transaction_id: 42,
                branch_id: 43,
                branch_type: 0,
                status: 0,
                resource_id: "jdbc:mysql://db/order",
                lock_key: "order:1,2;item:7",
                client_id: "order:10.0.0.2:5000",
                application_data: "",
            },
            Record::GlobalStatus {
                transaction_id: 42,
                status: 8,
            },
            Record::BranchStatus {
                transaction_id: 42,
                branch_id: 43,
                status: 5,
            },
            Record::BranchRemove {
                transaction_id: 42,
                branch_id: 43,
            },
            Record::GlobalRemove { transaction_id: -1 },
            Record::SnapshotEnd {
                sessions: u64::MAX,
                branches: 0,
            },
            Record::DtmCreate {
                trans: dtm_trans(),
                branches: vec![dtm_branch("01", "action"), dtm_branch("01", "compensate")],
            },
            Record::DtmSave {
                trans: dtm_trans(),
                expect: "prepared",
                changes: vec![DtmChange {
                    branch_id: "01",
                    op: "action",
                    status: "succeed",
                    time_ms: 1_700_000_000_500,
                }],
            },
            Record::DtmBranches {
                gid: "gid-1",
                branches: vec![dtm_branch("b1", "confirm")],
            },
            Record::DtmRemove {
                gid: "gid-1",
                id: 9,
            },
            Record::SnapshotEndDtm {
                sessions: 1,
                branches: 2,
                dtm_transactions: 3,
                dtm_branches: u64::MAX,
            },
            Record::Audit {
                at_ms: 1,
                actor: "admin:ops",
                action: "give-up",
                xid: "127.0.0.1:8091:5",
                branch_id: Some(6),
                reason: "row fixed by hand",
                status: "RollbackFailed",
            },
            Record::DtmLastId { id: i64::MAX },
        ]
    }

    fn dtm_trans() -> DtmTrans<'static> {
        DtmTrans {
            id: 9,
            gid: "gid-1",
            trans_type: "saga",
            status: "submitted",
            protocol: "http",
            query_prepared: "",
            custom_data: "{\"concurrent\":false}",
            options: DtmOptions {
                wait_result: true,
                timeout_to_fail: 30,
                request_timeout: 3,
                retry_interval: 10,
                retry_limit: -1,
                branch_headers: vec![("authorization", "Bearer x"), ("x-id", "7")],
                concurrent: false,
            },
            rollback_reason: "",
            result: "",
            create_time: 1_700_000_000_000,
            update_time: 1_700_000_000_100,
            finish_time: 0,
            rollback_time: 0,
            next_cron_interval: 10,
            next_cron_time: 1_700_000_010_000,
            retry_count: 2,
            owner: "",
            ext_data: "",
        }
    }

    fn dtm_branch(id: &'static str, op: &'static str) -> DtmBranch<'static> {
        DtmBranch {
            branch_id: id,
            op,
            url: "http://svc/api/step",
            bin_data: b"\x00\xff{\"amount\":30}",
            status: "prepared",
            create_time: 1_700_000_000_000,
            update_time: 1_700_000_000_000,
            finish_time: 0,
            rollback_time: 0,
        }
    }

    /// Variants are encoded by position: the first byte of a body is the variant index, and
    /// the indexes of records already on disk never move.
    #[test]
    fn record_kinds_keep_their_numbers() {
        let kinds: Vec<u8> = samples()
            .iter()
            .map(|r| postcard::to_allocvec(r).unwrap()[0])
            .collect();
        assert_eq!(kinds, [0, 3, 1, 4, 5, 2, 6, 7, 8, 9, 10, 11, 12, 13]);
    }

    #[test]
    fn branch_bodies_are_stored_as_one_byte_string() {
        let body = postcard::to_allocvec(&Record::DtmBranches {
            gid: "g",
            branches: vec![dtm_branch("b", "confirm")],
        })
        .unwrap();
        let raw: &[u8] = b"\x00\xff{\"amount\":30}";
        let mut expected = vec![raw.len() as u8];
        expected.extend_from_slice(raw);
        assert!(
            body.windows(expected.len())
                .any(|w| w == expected.as_slice()),
            "{body:?}"
        );
    }

    #[test]
    fn check_len_agrees_with_framing() {
        for r in samples() {
            check_len(&r).unwrap();
            assert_eq!(frame(&r).unwrap().len(), {
                let mut buf = Vec::new();
                append(&mut buf, &r).unwrap();
                buf.len()
            });
        }
        let body = vec![7u8; MAX_BODY_LEN];
        let mut b = dtm_branch("b", "confirm");
        b.bin_data = &body;
        let big = Record::DtmBranches {
            gid: "g",
            branches: vec![b],
        };
        assert!(matches!(check_len(&big), Err(EncodeError::TooLarge(n)) if n > MAX_BODY_LEN));
        assert!(matches!(frame(&big), Err(EncodeError::TooLarge(_))));
    }

    #[test]
    fn records_round_trip_through_one_buffer() {
        let mut buf = Vec::new();
        for r in samples() {
            append(&mut buf, &r).unwrap();
        }
        let mut reader = Reader::new(&buf, 0);
        let mut back = Vec::new();
        while let Some((_, r)) = reader.next_record().unwrap() {
            back.push(r);
        }
        assert_eq!(back, samples());
        assert_eq!(reader.position(), buf.len() as u64);
    }

    #[test]
    fn every_cut_of_the_last_record_is_torn() {
        let mut buf = Vec::new();
        append(&mut buf, &samples()[0]).unwrap();
        let first = buf.len();
        append(&mut buf, &samples()[1]).unwrap();
        for cut in first + 1..buf.len() {
            let mut reader = Reader::new(&buf[..cut], 0);
            assert!(reader.next_record().unwrap().is_some());
            let e = reader.next_record().unwrap_err();
            assert!(e.torn, "cut at {cut}: {e:?}");
            assert_eq!(e.offset, first as u64);
        }
    }

    #[test]
    fn flipped_byte_before_the_last_record_is_corruption() {
        let mut buf = Vec::new();
        append(&mut buf, &samples()[0]).unwrap();
        let first = buf.len();
        append(&mut buf, &samples()[1]).unwrap();
        for i in 0..first {
            let mut bytes = buf.clone();
            bytes[i] ^= 0x10;
            let e = Reader::new(&bytes, 0).next_record().unwrap_err();
            assert!(!e.torn, "flip at {i}: {e:?}");
            assert_eq!(e.offset, 0);
        }
    }

    #[test]
    fn unknown_version_is_named() {
        let mut buf = Vec::new();
        append(&mut buf, &samples()[2]).unwrap();
        let len = u32::from_le_bytes(buf[..4].try_into().unwrap());
        buf[8] = 9;
        let crc = crc_of(len, 9, &buf[FRAME_HEADER_LEN..]);
        buf[9..13].copy_from_slice(&crc.to_le_bytes());
        append(&mut buf, &samples()[3]).unwrap();
        let e = Reader::new(&buf, 0).next_record().unwrap_err();
        assert!(e.reason.contains("version 9"), "{e:?}");
        assert!(!e.torn);
    }

    #[test]
    fn oversized_record_is_refused_and_buffer_kept() {
        let mut buf = Vec::new();
        append(&mut buf, &samples()[2]).unwrap();
        let before = buf.clone();
        let key = "k".repeat(MAX_BODY_LEN + 1);
        let r = Record::BranchAdd {
            transaction_id: 1,
            branch_id: 2,
            branch_type: 0,
            status: 0,
            resource_id: "r",
            lock_key: &key,
            client_id: "c",
            application_data: "",
        };
        assert!(matches!(
            append(&mut buf, &r),
            Err(EncodeError::TooLarge(_))
        ));
        assert_eq!(buf, before);
    }
}
