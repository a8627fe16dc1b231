//! DTM transactions in the file store: writes through [`DtmStore`], reopen, refused writes,
//! torn tails, replay rules, snapshots and compaction, and Seata sessions in the same log.
//! The DTM record shapes have their own tests in `record.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use super::record::{self, Reader, Record, SEGMENT_MAGIC, SNAPSHOT_MAGIC};
use super::recover::{scan, segment_name, snapshot_name, State};
use super::tests::{
    expected, history, open, options, record_offsets, submit, wait_for_compaction, write_all,
};
use super::*;
use crate::dtm::model::{BranchStatus as OpStatus, Op, TransOptions, TransType};

const T0: i64 = 1_700_000_000_000;

fn trans(gid: &str, trans_type: TransType, status: TransStatus) -> Trans {
    Trans {
        id: 0,
        gid: gid.into(),
        trans_type,
        status,
        protocol: "http".into(),
        query_prepared: String::new(),
        custom_data: String::new(),
        options: TransOptions::default(),
        rollback_reason: String::new(),
        result: String::new(),
        create_time: T0,
        update_time: T0,
        finish_time: 0,
        rollback_time: 0,
        next_cron_interval: 10,
        next_cron_time: T0 + 10_000,
        retry_count: 0,
        owner: String::new(),
        ext_data: String::new(),
    }
}

/// Bodies that are not UTF-8, so a store that went through strings would change them.
fn body(n: u8) -> Vec<u8> {
    vec![0x00, 0xff, n, b'{', b'}', 0x80]
}

fn op(id: &str, op: Op, n: u8) -> Branch {
    Branch::new(id.into(), op, format!("http://svc/{op}/{id}"), body(n), T0)
}

/// A submitted saga with two steps, in DTM's order (compensate before action per step).
fn saga(gid: &str) -> TransRecord {
    let mut t = trans(gid, TransType::Saga, TransStatus::Submitted);
    t.custom_data = r#"{"orders":{"2":["1"]}}"#.into();
    TransRecord {
        trans: t,
        branches: vec![
            op("01", Op::Compensate, 1),
            op("01", Op::Action, 2),
            op("02", Op::Compensate, 3),
            op("02", Op::Action, 4),
        ],
    }
}

/// A prepared TCC transaction with options and no branches yet.
fn tcc(gid: &str) -> TransRecord {
    let mut t = trans(gid, TransType::Tcc, TransStatus::Prepared);
    t.options = TransOptions {
        wait_result: true,
        timeout_to_fail: 30,
        request_timeout: 5,
        retry_interval: 15,
        retry_limit: 3,
        branch_headers: BTreeMap::from([
            ("authorization".to_string(), "Bearer t".to_string()),
            ("x-tenant".to_string(), "7".to_string()),
        ]),
        concurrent: true,
    };
    TransRecord {
        trans: t,
        branches: vec![],
    }
}

fn tcc_ops(id: &str, n: u8) -> Vec<Branch> {
    vec![op(id, Op::Cancel, n), op(id, Op::Confirm, n + 1)]
}

fn change(id: &str, op: Op, status: OpStatus, time_ms: i64) -> BranchChange {
    BranchChange {
        branch_id: id.into(),
        op,
        status,
        time_ms,
    }
}

/// The stored row moved to `status` at `now`, as the engine would save it.
fn moved(store: &FileStore, gid: &str, status: TransStatus, now: i64) -> Trans {
    let mut t = store.dtm.get(gid).unwrap().trans;
    t.status = status;
    t.update_time = now;
    t.retry_count += 1;
    t.next_cron_time = now + 10_000;
    if status.is_finished() {
        t.finish_time = now;
    }
    if matches!(status, TransStatus::Aborting | TransStatus::Failed) {
        t.rollback_time = now;
        t.rollback_reason = "branch said FAILURE".into();
    }
    t
}

async fn create(store: &FileStore, r: &TransRecord) -> i64 {
    match store.create(r).await.unwrap() {
        Created::New { id } => id,
        c => panic!("{} not created: {c:?}", r.trans.gid),
    }
}

async fn save(store: &FileStore, gid: &str, status: TransStatus, changes: &[BranchChange]) {
    let from = store.dtm.get(gid).unwrap().trans.status;
    let t = moved(store, gid, status, T0 + 1_000);
    assert!(store.save(&t, from, changes).await.unwrap(), "{gid}");
}

/// Every transaction held, oldest first, read through the trait.
async fn held(store: &FileStore) -> Vec<TransRecord> {
    let page = store
        .list(&ListQuery {
            limit: usize::MAX,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    let mut all = Vec::new();
    for t in page.transactions.iter().rev() {
        all.push(store.get(&t.gid).await.unwrap().unwrap());
    }
    all
}

async fn reopen(store: FileStore, dir: &Path) -> FileStore {
    store.close().await.unwrap();
    drop(store);
    open(dir).await
}

/// Records of a segment or snapshot file, after its magic.
fn records_of(bytes: &[u8]) -> Vec<Record<'_>> {
    let mut reader = Reader::new(bytes, SEGMENT_MAGIC.len());
    let mut v = Vec::new();
    while let Ok(Some((_, r))) = reader.next_record() {
        v.push(r);
    }
    v
}

fn kind(r: &Record<'_>) -> &'static str {
    match r {
        Record::DtmCreate { .. } => "create",
        Record::DtmSave { .. } => "save",
        Record::DtmBranches { .. } => "branches",
        Record::DtmRemove { .. } => "remove",
        Record::SnapshotEnd { .. } | Record::SnapshotEndDtm { .. } => "end",
        _ => "seata",
    }
}

#[tokio::test]
async fn dtm_transactions_come_back_exactly_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert!(store.dtm().is_some());
    assert_eq!(create(&store, &saga("s1")).await, 1);
    assert_eq!(create(&store, &tcc("t1")).await, 2);
    let mut msg = trans("m1", TransType::Msg, TransStatus::Prepared);
    msg.query_prepared = "http://svc/query".into();
    let msg = TransRecord {
        trans: msg,
        branches: vec![op("01", Op::Action, 9)],
    };
    assert_eq!(create(&store, &msg).await, 3);

    for (id, n) in [("b1", 10), ("b2", 20)] {
        let added = store.add_branches("t1", &tcc_ops(id, n)).await.unwrap();
        assert_eq!(added, BranchesAdded::Added);
    }
    save(
        &store,
        "s1",
        TransStatus::Submitted,
        &[change("01", Op::Action, OpStatus::Succeed, T0 + 900)],
    )
    .await;
    save(
        &store,
        "t1",
        TransStatus::Submitted,
        &[change("b1", Op::Confirm, OpStatus::Succeed, T0 + 950)],
    )
    .await;
    save(&store, "m1", TransStatus::Failed, &[]).await;
    assert_eq!(store.purge(T0 + 2_000, 100).await.unwrap(), 1);

    let before = held(&store).await;
    let gids: Vec<_> = before.iter().map(|r| r.trans.gid.as_str()).collect();
    assert_eq!(gids, ["s1", "t1"]);
    assert_eq!(before[0].trans.id, 1);
    assert_eq!(before[0].trans.retry_count, 1);
    assert_eq!(before[0].branches[1].status, OpStatus::Succeed);
    assert_eq!(before[0].branches[1].finish_time, T0 + 900);
    assert_eq!(before[0].branches[3].bin_data, body(4));
    let t1_ops: Vec<_> = before[1]
        .branches
        .iter()
        .map(|b| (b.branch_id.as_str(), b.op, b.status))
        .collect();
    assert_eq!(
        t1_ops,
        [
            ("b1", Op::Cancel, OpStatus::Prepared),
            ("b1", Op::Confirm, OpStatus::Succeed),
            ("b2", Op::Cancel, OpStatus::Prepared),
            ("b2", Op::Confirm, OpStatus::Prepared),
        ]
    );
    assert_eq!(before[1].trans.options, tcc("t1").trans.options);

    let store = reopen(store, dir.path()).await;
    assert_eq!(held(&store).await, before);
    assert_eq!(store.get("m1").await.unwrap(), None, "purged stays purged");
    assert!(store.recover().await.unwrap().is_empty());
    // The purged transaction's id was the highest; the log still has its create.
    assert_eq!(create(&store, &tcc("t2")).await, 4);
    // Timers came back too: only the new one is due before the saved ones' next round.
    assert_eq!(store.due(T0 + 10_500, 10).await.unwrap(), ["t2"]);

    let store = reopen(store, dir.path()).await;
    assert_eq!(held(&store).await.len(), 3);
    store.close().await.unwrap();
}

#[tokio::test]
async fn refused_dtm_writes_log_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    create(&store, &tcc("t1")).await;
    let ops = tcc_ops("b1", 1);
    assert_eq!(
        store.add_branches("t1", &ops).await.unwrap(),
        BranchesAdded::Added
    );
    save(&store, "t1", TransStatus::Submitted, &[]).await;
    let logged = store.stats().records;
    assert_eq!(logged, 3);

    let again = store.create(&tcc("t1")).await.unwrap();
    assert!(matches!(again, Created::Exists(r) if r.trans.status == TransStatus::Submitted));
    let stale = moved(&store, "t1", TransStatus::Aborting, T0 + 5);
    assert!(!store
        .save(&stale, TransStatus::Prepared, &[])
        .await
        .unwrap());
    let mut ghost = stale.clone();
    ghost.gid = "nobody".into();
    assert!(!store
        .save(&ghost, TransStatus::Submitted, &[])
        .await
        .unwrap());
    assert_eq!(
        store.add_branches("t1", &tcc_ops("b2", 3)).await.unwrap(),
        BranchesAdded::NotPrepared(Some(TransStatus::Submitted))
    );
    assert_eq!(
        store.add_branches("nobody", &ops).await.unwrap(),
        BranchesAdded::NotPrepared(None)
    );
    assert_eq!(store.purge(i64::MAX, 0).await.unwrap(), 0, "none finished");
    assert_eq!(store.stats().records, logged);

    create(&store, &tcc("t2")).await;
    assert_eq!(
        store.add_branches("t2", &ops).await.unwrap(),
        BranchesAdded::Added
    );
    let logged = store.stats().records;
    assert_eq!(
        store.add_branches("t2", &ops).await.unwrap(),
        BranchesAdded::Identical
    );
    let mut other = ops.clone();
    other[0].bin_data = b"changed".to_vec();
    assert_eq!(
        store.add_branches("t2", &other).await.unwrap(),
        BranchesAdded::Conflict {
            branch_id: "b1".into()
        }
    );
    assert_eq!(store.stats().records, logged);
    let t1 = store.get("t1").await.unwrap().unwrap();
    assert_eq!(t1.trans.status, TransStatus::Submitted);
    assert_eq!(t1.branches.len(), 2);
    store.close().await.unwrap();

    let bytes = std::fs::read(dir.path().join(segment_name(1))).unwrap();
    let kinds: Vec<_> = records_of(&bytes).iter().map(kind).collect();
    assert_eq!(kinds, ["create", "branches", "save", "create", "branches"]);
}

#[tokio::test]
async fn dtm_store_refuses_reads_and_writes_once_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    create(&store, &tcc("t1")).await;
    store.close().await.unwrap();
    assert!(store.get("t1").await.is_err());
    assert!(store.create(&tcc("t1")).await.is_err(), "no 'exists'");
    assert!(store.due(i64::MAX, 10).await.is_err());
    assert!(store.purge(i64::MAX, 0).await.is_err());
    assert_eq!(store.stats().records, 1);
}

#[tokio::test]
async fn oversized_dtm_transaction_is_refused_without_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut big = saga("big");
    big.branches[1].bin_data = vec![b'x'; record::MAX_BODY_LEN];
    let err = store.create(&big).await.unwrap_err();
    assert!(err.to_string().contains("over the"), "{err}");
    assert_eq!(store.get("big").await.unwrap(), None);
    create(&store, &tcc("t1")).await;
    let err = store
        .add_branches("t1", &[op("b1", Op::Confirm, 1), big.branches[1].clone()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("over the"), "{err}");
    assert!(store.get("t1").await.unwrap().unwrap().branches.is_empty());
    assert_eq!(store.stats().records, 1);
    // Ops registered one call at a time, each small enough for its own record: the one that
    // would make the whole transaction too large for a snapshot is refused, nothing added.
    let mut half = op("b1", Op::Confirm, 1);
    half.bin_data = vec![b'x'; record::MAX_BODY_LEN / 2];
    store.add_branches("t1", &[half.clone()]).await.unwrap();
    half.branch_id = "b2".into();
    let err = store.add_branches("t1", &[half]).await.unwrap_err();
    assert!(err.to_string().contains("over the"), "{err}");
    let ops: Vec<_> = store.get("t1").await.unwrap().unwrap().branches;
    assert_eq!(ops.len(), 1);
    assert_eq!(store.stats().records, 2);
    let store = reopen(store, dir.path()).await;
    assert_eq!(held(&store).await.len(), 1);
    assert_eq!(store.get("t1").await.unwrap().unwrap().branches.len(), 1);
    store.close().await.unwrap();
}

/// Writes Seata sessions and DTM transactions into one log, ending with `last`; returns the
/// segment, the Seata records and the DTM state before `last`.
async fn log_ending_with(
    last: impl AsyncFnOnce(&FileStore),
) -> (Vec<u8>, Vec<Record<'static>>, Vec<TransRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let seata = history(100);
    write_all(&store, &seata[..3]).await;
    create(&store, &saga("s1")).await;
    write_all(&store, &seata[3..]).await;
    let before = held(&store).await;
    last(&store).await;
    store.close().await.unwrap();
    let bytes = std::fs::read(dir.path().join(segment_name(1))).unwrap();
    (bytes, seata, before)
}

#[tokio::test]
async fn torn_tail_after_a_dtm_record_is_cut_off() {
    let (save_log, seata, before_save) = log_ending_with(async |s: &FileStore| {
        let changes = [change("01", Op::Action, OpStatus::Failed, T0 + 7)];
        save(s, "s1", TransStatus::Aborting, &changes).await;
    })
    .await;
    let (create_log, _, before_create) = log_ending_with(async |s: &FileStore| {
        create(s, &saga("s2")).await;
    })
    .await;
    assert_eq!(before_save, before_create);
    for (bytes, last_kind) in [(save_log, "save"), (create_log, "create")] {
        let last = *record_offsets(&bytes).last().unwrap();
        assert_eq!(kind(records_of(&bytes).last().unwrap()), last_kind);
        let mut cases: Vec<Vec<u8>> = (last..bytes.len())
            .map(|cut| bytes[..cut].to_vec())
            .collect();
        let mut bad_crc = bytes.clone();
        *bad_crc.last_mut().unwrap() ^= 0x40;
        cases.push(bad_crc);
        // The whole log: the last change is there.
        cases.push(bytes.clone());
        for (i, case) in cases.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(segment_name(1)), case).unwrap();
            let store = FileStore::open(options(dir.path()))
                .await
                .unwrap_or_else(|e| panic!("{last_kind} case {i}: {e}"));
            assert_eq!(store.recover().await.unwrap(), expected(&seata));
            let got = held(&store).await;
            if case.len() == bytes.len() && i + 1 == cases.len() {
                assert_ne!(got, before_save, "{last_kind}: the last change is kept");
            } else {
                assert_eq!(got, before_save, "{last_kind} case {i}");
            }
            store.close().await.unwrap();
        }
    }
}

#[tokio::test]
async fn seata_sessions_and_dtm_transactions_interleaved_both_recover() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut seata = Vec::new();
    for tid in [100, 200, 300] {
        let gid = format!("g{tid}");
        for (i, r) in history(tid).into_iter().enumerate() {
            submit(&store, &r).await.unwrap();
            match i {
                0 => {
                    create(&store, &tcc(&gid)).await;
                }
                2 => {
                    let added = store.add_branches(&gid, &tcc_ops("b", 1)).await.unwrap();
                    assert_eq!(added, BranchesAdded::Added);
                }
                4 => save(&store, &gid, TransStatus::Submitted, &[]).await,
                _ => {}
            }
            seata.push(r);
        }
        if tid == 200 {
            submit(
                &store,
                &Record::GlobalRemove {
                    transaction_id: 200,
                },
            )
            .await
            .unwrap();
            seata.push(Record::GlobalRemove {
                transaction_id: 200,
            });
            let changes = [change("b", Op::Confirm, OpStatus::Succeed, T0 + 3)];
            save(&store, &gid, TransStatus::Succeed, &changes).await;
        }
    }
    let before = held(&store).await;
    assert_eq!(before.len(), 3);
    assert_eq!(before[1].trans.status, TransStatus::Succeed);
    let store = reopen(store, dir.path()).await;
    let sessions = store.recover().await.unwrap();
    assert_eq!(sessions, expected(&seata));
    assert_eq!(sessions.len(), 2);
    assert_eq!(held(&store).await, before);
    store.close().await.unwrap();
}

async fn dtm_round(store: &FileStore, n: i64) {
    let gid = format!("saga-{n}");
    create(store, &saga(&gid)).await;
    if n % 3 != 0 {
        let now = T0 + n;
        let mut t = moved(store, &gid, TransStatus::Succeed, now);
        t.finish_time = now;
        let changes = [
            change("01", Op::Action, OpStatus::Succeed, now),
            change("02", Op::Action, OpStatus::Succeed, now),
        ];
        assert!(store
            .save(&t, TransStatus::Submitted, &changes)
            .await
            .unwrap());
    }
}

/// Writes (and removes) a Seata session until the store starts a new segment, which makes it
/// compact the ones before; returns the records written.
async fn roll_segment(store: &FileStore, dir: &Path) -> Vec<Record<'static>> {
    let mut written = Vec::new();
    let rolled_at = scan(dir).unwrap().segments.last().copied().unwrap();
    while scan(dir).unwrap().segments.last().copied().unwrap() == rolled_at {
        let h = history(9_000);
        write_all(store, &h).await;
        written.extend(h);
        written.push(Record::GlobalRemove {
            transaction_id: 9_000,
        });
        submit(store, written.last().unwrap()).await.unwrap();
    }
    written
}

/// Snapshot `n`'s records, which must include DTM transactions.
fn snapshot_dtm_count(dir: &Path, n: u64) -> (usize, u64) {
    let bytes = std::fs::read(dir.join(snapshot_name(n))).unwrap();
    assert_eq!(&bytes[..SNAPSHOT_MAGIC.len()], SNAPSHOT_MAGIC);
    let records = records_of(&bytes);
    let creates = records.iter().filter(|r| kind(r) == "create").count();
    match records.last() {
        Some(Record::SnapshotEndDtm {
            dtm_transactions, ..
        }) => (creates, *dtm_transactions),
        other => panic!("snapshot ends with {other:?}"),
    }
}

#[tokio::test]
async fn compaction_keeps_dtm_transactions_including_after_purge() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 600;
    let store = FileStore::open(opts.clone()).await.unwrap();
    let mut seata = Vec::new();
    let mut purged = 0;
    for n in 1..=40 {
        dtm_round(&store, n).await;
        if n % 4 == 0 {
            let h = history(n * 10);
            write_all(&store, &h).await;
            seata.extend(h);
        }
        if n % 10 == 0 {
            // Forgets the finished ones older than the last five rounds.
            purged += store.purge(T0 + n - 5, 1_000).await.unwrap();
        }
    }
    assert!(purged > 10, "{purged}");
    assert!(store.stats().segments_rolled > 3, "{:?}", store.stats());
    let before = held(&store).await;
    let finished = before
        .iter()
        .filter(|r| r.trans.status.is_finished())
        .count();
    assert!(finished > 0 && finished < before.len(), "{finished}");
    assert_eq!(before.len() + purged, 40);
    wait_for_compaction(dir.path()).await;
    store.close().await.unwrap();
    drop(store);

    let layout = scan(dir.path()).unwrap();
    assert_eq!(layout.snapshots.len(), 1, "{layout:?}");
    let (creates, listed) = snapshot_dtm_count(dir.path(), layout.snapshots[0]);
    assert!(creates > 0, "the snapshot carries DTM transactions");
    assert_eq!(creates as u64, listed);

    let store = FileStore::open(opts.clone()).await.unwrap();
    assert_eq!(store.recover().await.unwrap(), expected(&seata));
    assert_eq!(held(&store).await, before);
    let highest = before.iter().map(|r| r.trans.id).max().unwrap();
    assert!(create(&store, &tcc("after")).await > highest);

    // Purge everything finished, roll (and compact) past the removals, and reopen again.
    let gone = store.purge(i64::MAX, 0).await.unwrap();
    assert_eq!(gone, finished);
    for n in 41..=50 {
        create(&store, &saga(&format!("saga-{n}"))).await;
    }
    let after = held(&store).await;
    assert!(after.iter().all(|r| !r.trans.status.is_finished()));
    assert_eq!(after.len(), before.len() - finished + 11);
    seata.extend(roll_segment(&store, dir.path()).await);
    wait_for_compaction(dir.path()).await;
    store.close().await.unwrap();
    drop(store);
    let layout = scan(dir.path()).unwrap();
    let (creates, _) = snapshot_dtm_count(dir.path(), *layout.snapshots.last().unwrap());
    assert_eq!(creates, after.len(), "purged ones left the snapshot");
    let store = FileStore::open(opts).await.unwrap();
    assert_eq!(store.recover().await.unwrap(), expected(&seata));
    assert_eq!(held(&store).await, after);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_purged_transactions_id_is_not_handed_out_again_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 600;
    let store = FileStore::open(opts.clone()).await.unwrap();
    for n in 1..=3 {
        create(&store, &saga(&format!("saga-{n}"))).await;
    }
    // The newest one finishes and is purged: no held transaction has the highest id.
    let mut t = moved(&store, "saga-3", TransStatus::Succeed, T0 + 10);
    t.finish_time = T0 + 10;
    assert!(store.save(&t, TransStatus::Submitted, &[]).await.unwrap());
    assert_eq!(store.purge(i64::MAX, 0).await.unwrap(), 1);
    let highest = 3;
    // Roll past the purge and compact: the create and the removal leave the log.
    roll_segment(&store, dir.path()).await;
    wait_for_compaction(dir.path()).await;
    store.close().await.unwrap();
    drop(store);
    let layout = scan(dir.path()).unwrap();
    let (creates, _) = snapshot_dtm_count(dir.path(), *layout.snapshots.last().unwrap());
    assert_eq!(creates, 2, "the purged one left the snapshot");
    for n in layout.segments {
        let bytes = std::fs::read(dir.path().join(segment_name(n))).unwrap();
        assert!(
            !records_of(&bytes).iter().any(|r| kind(r) == "create"),
            "segment {n} still has a create"
        );
    }

    let store = FileStore::open(opts).await.unwrap();
    assert_eq!(held(&store).await.len(), 2);
    assert!(create(&store, &saga("after")).await > highest);
    store.close().await.unwrap();
}

fn snapshot_file(records: &[Record<'_>]) -> Vec<u8> {
    let mut bytes = SNAPSHOT_MAGIC.to_vec();
    for r in records {
        record::append(&mut bytes, r).unwrap();
    }
    bytes
}

#[tokio::test]
async fn snapshot_from_before_dtm_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let global = history(5).swap_remove(0);
    let bytes = snapshot_file(&[
        global.clone(),
        Record::SnapshotEnd {
            sessions: 1,
            branches: 0,
        },
    ]);
    std::fs::write(dir.path().join(snapshot_name(1)), bytes).unwrap();
    let store = open(dir.path()).await;
    assert_eq!(store.recover().await.unwrap(), expected(&[global]));
    assert!(held(&store).await.is_empty());
    store.close().await.unwrap();
}

#[tokio::test]
async fn snapshot_whose_dtm_count_disagrees_is_corrupt() {
    let t = tcc("t1");
    let snapshots = [
        // An older end record cannot vouch for DTM transactions.
        vec![
            compact::dtm_record(&t),
            Record::SnapshotEnd {
                sessions: 0,
                branches: 0,
            },
        ],
        vec![
            compact::dtm_record(&t),
            compact::dtm_record(&t),
            Record::SnapshotEndDtm {
                sessions: 0,
                branches: 0,
                dtm_transactions: 2,
                dtm_branches: 0,
            },
        ],
    ];
    for records in snapshots {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(snapshot_name(1)), snapshot_file(&records)).unwrap();
        let err = FileStore::open(options(dir.path())).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains("DTM transactions"), "{err}");
    }
}

fn apply(state: &mut State, r: Record<'_>) -> Result<(), String> {
    state.apply(r)
}

fn save_record<'a>(trans: &'a Trans, expect: &'static str) -> Record<'a> {
    Record::DtmSave {
        trans: DtmTrans::of(trans),
        expect,
        changes: vec![],
    }
}

#[test]
fn replay_skips_changes_of_unknown_gids_and_rejects_impossible_ones() {
    let mut state = State::default();
    let mut t = tcc("t1").trans;
    t.id = 1;
    let mut next = t.clone();
    next.status = TransStatus::Submitted;
    let save = save_record;
    let ops = tcc_ops("b1", 1);
    let branches = || Record::DtmBranches {
        gid: "t1",
        branches: DtmBranch::all(&ops),
    };
    // Unknown gid: a save or registration of a transaction a removal took.
    apply(&mut state, save(&next, "prepared")).unwrap();
    apply(&mut state, branches()).unwrap();
    assert_eq!(state.dtm().len(), 0);

    let created = TransRecord {
        trans: t.clone(),
        branches: vec![],
    };
    apply(&mut state, compact::dtm_record(&created)).unwrap();
    apply(&mut state, branches()).unwrap();
    let e = apply(&mut state, branches()).unwrap_err();
    assert!(e.contains("Identical"), "{e}");
    let e = apply(&mut state, save(&next, "aborting")).unwrap_err();
    assert!(e.contains("expects status aborting"), "{e}");
    let e = apply(&mut state, save(&next, "prepaid")).unwrap_err();
    assert!(e.contains("unknown TransStatus"), "{e}");
    apply(&mut state, save(&next, "prepared")).unwrap();
    assert_eq!(
        state.dtm().get("t1").unwrap().trans.status,
        TransStatus::Submitted
    );

    // A removal takes only the finished row it purged.
    let remove = |id| Record::DtmRemove { gid: "t1", id };
    apply(&mut state, remove(1)).unwrap();
    assert!(state.dtm().get("t1").is_some(), "unfinished: a newer one");
    let mut done = next.clone();
    done.status = TransStatus::Succeed;
    apply(&mut state, save(&done, "submitted")).unwrap();
    apply(&mut state, remove(7)).unwrap();
    assert!(state.dtm().get("t1").is_some(), "another id: a newer one");
    apply(&mut state, remove(1)).unwrap();
    assert!(state.dtm().get("t1").is_none());
    apply(&mut state, remove(1)).unwrap();

    // A create of a held gid (the purge window) replaces it, keeping its own id.
    let mut old = created.clone();
    old.trans.status = TransStatus::Failed;
    apply(&mut state, compact::dtm_record(&old)).unwrap();
    let mut newer = created;
    newer.trans.id = 9;
    apply(&mut state, compact::dtm_record(&newer)).unwrap();
    apply(&mut state, remove(1)).unwrap();
    assert_eq!(state.dtm().get("t1").unwrap(), newer);
    assert!(apply(
        &mut state,
        Record::SnapshotEndDtm {
            sessions: 0,
            branches: 0,
            dtm_transactions: 1,
            dtm_branches: 0,
        }
    )
    .is_err());
}
