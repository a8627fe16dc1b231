//! Store-level tests: writes through the trait, reopen, torn tails, corruption, compaction,
//! group commit and the directory lock. Record framing has its own tests in `record.rs`.

use std::path::Path;
use std::time::Duration;

use seata_protocol::{BranchStatus, BranchType, GlobalStatus};

use super::record::{Reader, Record, SEGMENT_MAGIC};
use super::recover::{scan, segment_name, State};
use super::*;

pub(super) fn options(dir: &Path) -> FileStoreOptions {
    FileStoreOptions::new(dir, SyncMode::Fsync)
}

pub(super) async fn open(dir: &Path) -> FileStore {
    FileStore::open(options(dir)).await.unwrap()
}

/// A transaction's life as records: begin, two branches, commit decided, one branch done.
pub(super) fn history(tid: i64) -> Vec<Record<'static>> {
    let xid: &'static str = Box::leak(format!("127.0.0.1:8091:{tid}").into_boxed_str());
    let branch = |n: i64, key: &'static str| Record::BranchAdd {
        transaction_id: tid,
        branch_id: tid + n,
        branch_type: BranchType::At.code(),
        status: BranchStatus::Registered.code(),
        resource_id: "jdbc:mysql://db/it",
        lock_key: key,
        client_id: "it-rm:127.0.0.1:4000",
        application_data: "",
    };
    vec![
        Record::GlobalAdd {
            transaction_id: tid,
            xid,
            status: GlobalStatus::Begin.code(),
            application_id: "it",
            transaction_service_group: "it_tx_group",
            transaction_name: "t",
            timeout_ms: 60_000,
            begin_time_ms: 1_700_000_000_000 + tid,
        },
        branch(1, "account:1"),
        branch(2, "stock:7,8"),
        Record::BranchStatus {
            transaction_id: tid,
            branch_id: tid + 2,
            status: BranchStatus::PhaseOneDone.code(),
        },
        Record::GlobalStatus {
            transaction_id: tid,
            status: GlobalStatus::Committing.code(),
        },
        Record::BranchRemove {
            transaction_id: tid,
            branch_id: tid + 1,
        },
    ]
}

/// Sends `r` through the trait method that writes it.
pub(super) async fn submit(store: &FileStore, r: &Record<'_>) -> Result<(), StoreError> {
    match *r {
        Record::GlobalAdd {
            transaction_id,
            xid,
            status,
            application_id,
            transaction_service_group,
            transaction_name,
            timeout_ms,
            begin_time_ms,
        } => {
            store
                .add_global(GlobalRow {
                    transaction_id,
                    xid,
                    status: GlobalStatus::try_from(status).unwrap(),
                    application_id,
                    transaction_service_group,
                    transaction_name,
                    timeout_ms,
                    begin_time_ms,
                })
                .await
        }
        Record::GlobalStatus {
            transaction_id,
            status,
        } => {
            let s = GlobalStatus::try_from(status).unwrap();
            store.update_global_status(transaction_id, "x", s).await
        }
        Record::GlobalRemove { transaction_id } => store.remove_global(transaction_id, "x").await,
        Record::BranchAdd {
            transaction_id,
            branch_id,
            branch_type,
            status,
            resource_id,
            lock_key,
            client_id,
            application_data,
        } => {
            store
                .add_branch(BranchRow {
                    transaction_id,
                    xid: "x",
                    branch_id,
                    branch_type: BranchType::try_from(branch_type).unwrap(),
                    status: BranchStatus::try_from(status).unwrap(),
                    resource_id,
                    lock_key,
                    client_id,
                    application_data,
                })
                .await
        }
        Record::BranchStatus {
            transaction_id,
            branch_id,
            status,
        } => {
            let s = BranchStatus::try_from(status).unwrap();
            store
                .update_branch_status(transaction_id, "x", branch_id, s)
                .await
        }
        Record::BranchRemove {
            transaction_id,
            branch_id,
        } => store.remove_branch(transaction_id, "x", branch_id).await,
        Record::SnapshotEnd { .. }
        | Record::SnapshotEndDtm { .. }
        | Record::DtmCreate { .. }
        | Record::DtmSave { .. }
        | Record::DtmBranches { .. }
        | Record::DtmRemove { .. }
        | Record::DtmLastId { .. }
        | Record::Audit { .. } => unreachable!("not a Seata session write"),
    }
}

pub(super) fn expected(records: &[Record<'_>]) -> Vec<StoredSession> {
    let mut state = State::default();
    for r in records {
        state.apply(r.clone()).unwrap();
    }
    state.into_parts().0
}

/// Several transactions; the second ends, so its records must leave no trace.
fn workload() -> Vec<Record<'static>> {
    let mut v = Vec::new();
    for tid in [100, 200, 300] {
        v.extend(history(tid));
    }
    v.push(Record::GlobalRemove {
        transaction_id: 200,
    });
    v
}

pub(super) async fn write_all(store: &FileStore, records: &[Record<'_>]) {
    for r in records {
        submit(store, r).await.unwrap();
    }
}

#[tokio::test]
async fn reopen_recovers_sessions_with_branches_in_registration_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert!(store.recover().await.unwrap().is_empty());
    write_all(&store, &workload()).await;
    store.close().await.unwrap();
    drop(store);

    let store = open(dir.path()).await;
    let got = store.recover().await.unwrap();
    assert_eq!(got, expected(&workload()));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].global.status, GlobalStatus::Committing);
    assert_eq!(got[0].branches.len(), 1);
    assert_eq!(got[0].branches[0].lock_key, "stock:7,8");
    assert_eq!(got[0].branches[0].status, BranchStatus::PhaseOneDone);
    assert!(store.recover().await.is_err(), "handed out once");
}

#[tokio::test]
async fn dropped_store_without_close_still_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    write_all(&store, &history(7)).await;
    drop(store);
    // The writer releases the directory lock once it has stopped; retry until then.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let store = loop {
        match FileStore::open(options(dir.path())).await {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("in use"), "{e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(store.recover().await.unwrap(), expected(&history(7)));
}

/// Writes `records` into a fresh store and returns the bytes of the segment it wrote.
async fn written_segment(records: &[Record<'_>]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    write_all(&store, records).await;
    store.close().await.unwrap();
    std::fs::read(dir.path().join(segment_name(1))).unwrap()
}

/// Offsets of every record in a segment's bytes.
pub(super) fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut reader = Reader::new(bytes, SEGMENT_MAGIC.len());
    let mut v = Vec::new();
    // Stops at the end or at preallocated zeros.
    while let Ok(Some((at, _))) = reader.next_record() {
        v.push(at as usize);
    }
    v
}

async fn open_with_segment(bytes: &[u8]) -> (tempfile::TempDir, Result<FileStore, StoreError>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(segment_name(1)), bytes).unwrap();
    let r = FileStore::open(options(dir.path())).await;
    (dir, r)
}

#[tokio::test]
async fn torn_tail_at_every_offset_of_the_last_record_is_cut_off() {
    let records = workload();
    let bytes = written_segment(&records).await;
    let last = *record_offsets(&bytes).last().unwrap();
    let without_last = expected(&records[..records.len() - 1]);
    let mut cases: Vec<Vec<u8>> = (last..bytes.len())
        .map(|cut| bytes[..cut].to_vec())
        .collect();
    // A complete last record with a bad crc, and a tail the OS left as zeros.
    let mut bad_crc = bytes.clone();
    *bad_crc.last_mut().unwrap() ^= 0xff;
    cases.push(bad_crc);
    let mut zeroed = bytes[..last].to_vec();
    zeroed.extend_from_slice(&[0; 40]);
    cases.push(zeroed);
    for (i, case) in cases.iter().enumerate() {
        let (dir, store) = open_with_segment(case).await;
        let store = store.unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(store.recover().await.unwrap(), without_last, "case {i}");
        // The torn bytes are gone, so a later segment never follows damage.
        store.close().await.unwrap();
        let kept = std::fs::read(dir.path().join(segment_name(1))).unwrap_or_default();
        assert!(
            kept.is_empty() || kept.len() == last,
            "case {i}: {}",
            kept.len()
        );
    }
}

#[tokio::test]
async fn preallocated_space_of_a_killed_writer_is_read_as_the_end() {
    let records = workload();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    write_all(&store, &records).await;
    // What a `kill -9` leaves: the live segment, records followed by preallocated zeros.
    let live = std::fs::read(dir.path().join(segment_name(1))).unwrap();
    let end = *record_offsets(&live).last().unwrap();
    assert!(
        live.len() > end + 1024,
        "preallocated: {} bytes",
        live.len()
    );
    let (copy, reopened) = open_with_segment(&live).await;
    let reopened = reopened.unwrap();
    assert_eq!(reopened.recover().await.unwrap(), expected(&records));
    reopened.close().await.unwrap();
    drop(reopened);
    // Segment 1 is no longer the newest (or compacted away): had its zeros stayed, this open
    // would report corruption.
    let again = open(copy.path()).await;
    assert_eq!(again.recover().await.unwrap(), expected(&records));
    store.close().await.unwrap();
}

#[tokio::test]
async fn torn_segment_header_counts_as_an_empty_segment() {
    for cut in 0..SEGMENT_MAGIC.len() {
        let (_dir, store) = open_with_segment(&SEGMENT_MAGIC[..cut]).await;
        assert!(store.unwrap().recover().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn flipped_byte_before_the_tail_is_rejected_with_file_and_offset() {
    let records = workload();
    let bytes = written_segment(&records).await;
    let offsets = record_offsets(&bytes);
    let second = offsets[1];
    let third = offsets[2];
    // Every byte of the second record, and the magic.
    for i in (second..third).chain([0]) {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x01;
        let (_dir, store) = open_with_segment(&damaged).await;
        let err = store.expect_err("corruption must stop the open");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Corrupt(_)), "{msg}");
        assert!(msg.contains(&segment_name(1)), "{msg}");
        let at = if i == 0 { 0 } else { second };
        assert!(
            msg.contains(&format!("at byte {at}:")),
            "flip at {i}: {msg}"
        );
    }
}

#[tokio::test]
async fn damage_in_an_older_segment_is_never_a_torn_tail() {
    let bytes = written_segment(&workload()).await;
    let dir = tempfile::tempdir().unwrap();
    // Segment 1 lost its last byte; segment 2 follows it, so that is not a tail.
    std::fs::write(dir.path().join(segment_name(1)), &bytes[..bytes.len() - 1]).unwrap();
    std::fs::write(dir.path().join(segment_name(2)), SEGMENT_MAGIC).unwrap();
    let err = FileStore::open(options(dir.path())).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains(&segment_name(1)), "{err}");
}

#[tokio::test]
async fn missing_segment_is_reported() {
    let bytes = written_segment(&workload()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(segment_name(1)), &bytes).unwrap();
    std::fs::write(dir.path().join(segment_name(3)), SEGMENT_MAGIC).unwrap();
    let err = FileStore::open(options(dir.path())).await.unwrap_err();
    assert!(err.to_string().contains(&segment_name(2)), "{err}");
}

pub(super) async fn wait_for_compaction(dir: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let layout = scan(dir).unwrap();
        if !layout.snapshots.is_empty()
            && layout.segments.first() >= layout.snapshots.last()
            && layout.temps.is_empty()
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction: {layout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn compaction_then_recovery_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 600;
    let store = FileStore::open(opts.clone()).await.unwrap();
    let mut all = Vec::new();
    for tid in (1..60).map(|n| n * 10) {
        all.extend(history(tid));
        if tid % 30 == 0 {
            all.push(Record::GlobalRemove {
                transaction_id: tid - 10,
            });
        }
    }
    write_all(&store, &all).await;
    assert!(store.stats().segments_rolled > 3, "{:?}", store.stats());
    wait_for_compaction(dir.path()).await;
    store.close().await.unwrap();
    drop(store);

    let layout = scan(dir.path()).unwrap();
    assert_eq!(layout.snapshots.len(), 1, "{layout:?}");
    let store = FileStore::open(opts).await.unwrap();
    assert_eq!(store.recover().await.unwrap(), expected(&all));
    // The reopened store compacts what it replayed, and the state stays the same.
    wait_for_compaction(dir.path()).await;
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(store.recover().await.unwrap(), expected(&all));
}

#[tokio::test]
async fn compaction_interrupted_before_the_rename_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    write_all(&store, &workload()).await;
    store.close().await.unwrap();
    drop(store);
    // A crash while writing the snapshot leaves a temp file beside the full log.
    std::fs::write(
        dir.path().join("00000000000000000002.snapshot.tmp"),
        b"SEATASNP\x01",
    )
    .unwrap();
    let store = open(dir.path()).await;
    assert_eq!(store.recover().await.unwrap(), expected(&workload()));
}

#[tokio::test]
async fn concurrent_writes_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let tasks = (1..=64).map(|n| {
        let store = &store;
        async move { write_all(store, &history(n * 100)).await }
    });
    futures::future::join_all(tasks).await;
    let stats = store.stats();
    assert_eq!(stats.records, 64 * 6);
    assert!(stats.syncs < stats.records, "no sharing: {stats:?}");
    assert_eq!(stats.syncs, stats.batches);
    store.close().await.unwrap();
}

#[tokio::test]
async fn second_store_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let err = FileStore::open(options(dir.path())).await.unwrap_err();
    assert!(
        err.to_string().contains("in use by another seata-tc"),
        "{err}"
    );
    store.close().await.unwrap();
    drop(store);
    open(dir.path()).await.close().await.unwrap();
}

#[tokio::test]
async fn writes_after_close_fail_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.sync = SyncMode::None;
    let store = FileStore::open(opts).await.unwrap();
    write_all(&store, &history(1)).await;
    store.close().await.unwrap();
    assert!(store.remove_global(1, "x").await.is_err());
    assert_eq!(store.stats().syncs, 0);
}

#[tokio::test]
async fn audit_records_survive_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let record = crate::store::AuditRecord {
        at_ms: 7,
        actor: "admin:ops".into(),
        action: "give-up".into(),
        xid: "127.0.0.1:8091:10".into(),
        branch_id: Some(11),
        reason: "row fixed by hand".into(),
        status: "RollbackFailed".into(),
    };
    let store = open(dir.path()).await;
    write_all(&store, &history(10)).await;
    store.add_audit(&record).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    // First reopen replays the segment and compacts it into a snapshot; the second reads the
    // record back from that snapshot.
    for _ in 0..2 {
        let store = open(dir.path()).await;
        assert_eq!(
            store.audits(Some(&record.xid), 0).await.unwrap(),
            vec![record.clone()]
        );
        assert_eq!(store.audits(None, 10).await.unwrap().len(), 1);
        wait_for_compaction(dir.path()).await;
        store.close().await.unwrap();
        drop(store);
    }
}
