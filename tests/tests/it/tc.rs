//! The real `seata-tc` over TCP, driven with the protocol crate: registration, both phase-two
//! paths, row locks, timeouts, RM loss and return, bad frames, merged requests, heartbeats.

use futures::{SinkExt, StreamExt};
use seata_it::clients::{
    begin, commit, lockable, rollback, status, tm, wait_status, Answer, Phase, TestRm, WAIT,
};
use seata_it::tc::TcProcess;
use seata_protocol::{
    BranchType, GlobalBeginRequest, GlobalStatus, GlobalStatusRequest, MergedWarpMessage, Message,
    MessageType, RegisterTmRequest, RpcFrame, SeataCodec, TransactionExceptionCode, SEATA_VERSION,
};
use tokio_util::codec::Framed;

const DB: &str = "jdbc:mysql://127.0.0.1:3306/it";

#[tokio::test]
async fn at_commit_is_async_and_every_branch_gets_phase_two() {
    let tc = TcProcess::start();
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let xid = begin(&tm, 60_000).await;
    assert!(xid.ends_with(|c: char| c.is_ascii_digit()), "xid {xid}");
    let b1 = rm.register(&xid, DB, "account:1").await;
    let b2 = rm.register(&xid, DB, "account:2").await;
    assert!(b1.result.is_success() && b2.result.is_success());
    assert_ne!(b1.branch_id, b2.branch_id);
    assert!(!lockable(&rm, DB, "account:1").await);

    let r = commit(&tm, &xid).await;
    assert!(r.result.is_success(), "{:?}", r.result);
    assert_eq!(r.global_status, GlobalStatus::Committed);
    let calls = rm.wait_for(WAIT, |c| c.len() == 2).await;
    assert!(calls
        .iter()
        .all(|c| c.phase == Phase::Commit && c.xid == xid));
    wait_status(&tm, &xid, GlobalStatus::Finished).await;
    assert!(lockable(&rm, DB, "account:1;account:2").await);
}

#[tokio::test]
async fn rollback_undoes_branches_in_reverse_order_then_frees_rows() {
    let tc = TcProcess::start();
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let xid = begin(&tm, 60_000).await;
    // One after another: registrations in flight together join the transaction in the order
    // their locks and store writes finish, which no client can know.
    let mut by_registration = Vec::new();
    for key in ["t:1", "t:2", "t:3"] {
        by_registration.push(rm.register(&xid, DB, key).await.branch_id);
    }

    let r = rollback(&tm, &xid).await;
    assert!(r.result.is_success(), "{:?}", r.result);
    assert_eq!(r.global_status, GlobalStatus::Rollbacked);
    let calls = rm.calls();
    let order: Vec<i64> = calls.iter().map(|c| c.branch_id).collect();
    let mut expected = by_registration.clone();
    expected.reverse();
    assert_eq!(order, expected);
    assert!(calls.iter().all(|c| c.phase == Phase::Rollback));
    assert!(lockable(&rm, DB, "t:1,2,3").await);
    assert_eq!(status(&tm, &xid).await, GlobalStatus::Finished);
}

#[tokio::test]
async fn conflicting_row_lock_is_refused_until_the_holder_finishes() {
    let tc = TcProcess::start();
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let first = begin(&tm, 60_000).await;
    let second = begin(&tm, 60_000).await;
    assert!(rm
        .register(&first, DB, "stock:7,8")
        .await
        .result
        .is_success());

    let refused = rm.register(&second, DB, "stock:9,8").await;
    assert!(!refused.result.is_success());
    assert_eq!(
        refused.result.transaction_exception_code,
        TransactionExceptionCode::LockKeyConflict
    );
    // All or nothing: row 9 was not taken by the refused register.
    let probe = begin(&tm, 60_000).await;
    assert!(rm.register(&probe, DB, "stock:9").await.result.is_success());
    assert_eq!(
        rollback(&tm, &probe).await.global_status,
        GlobalStatus::Rollbacked
    );

    assert_eq!(
        rollback(&tm, &first).await.global_status,
        GlobalStatus::Rollbacked
    );
    let retried = rm.register(&second, DB, "stock:9,8").await;
    assert!(retried.result.is_success(), "{:?}", retried.result);
    assert_eq!(
        commit(&tm, &second).await.global_status,
        GlobalStatus::Committed
    );
}

#[tokio::test]
async fn expired_transaction_is_rolled_back_by_the_tc() {
    let tc = TcProcess::start();
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let xid = begin(&tm, 200).await;
    assert!(rm.register(&xid, DB, "order:1").await.result.is_success());
    rm.wait_for(WAIT, |c| {
        c.iter().any(|c| c.phase == Phase::Rollback && c.xid == xid)
    })
    .await;
    wait_status(&tm, &xid, GlobalStatus::Finished).await;
    assert!(lockable(&rm, DB, "order:1").await);
    // The TM's late commit learns the transaction is over.
    let late = commit(&tm, &xid).await;
    assert_ne!(late.global_status, GlobalStatus::Committed);
}

#[tokio::test]
async fn branch_of_a_vanished_rm_completes_when_an_rm_for_the_resource_returns() {
    let tc = TcProcess::start();
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let xid = begin(&tm, 60_000).await;
    assert!(rm.register(&xid, DB, "pay:1").await.result.is_success());
    rm.client.shutdown();
    drop(rm);

    let r = rollback(&tm, &xid).await;
    assert_ne!(
        r.global_status,
        GlobalStatus::Rollbacked,
        "no RM could have undone it"
    );
    assert!(!r.global_status.is_final());

    let back = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    back.wait_for(WAIT, |c| {
        c.iter().any(|c| c.phase == Phase::Rollback && c.xid == xid)
    })
    .await;
    wait_status(&tm, &xid, GlobalStatus::Finished).await;
    assert!(lockable(&back, DB, "pay:1").await);
}

#[tokio::test]
async fn retryable_rollback_failure_is_retried_until_it_succeeds() {
    let tc = TcProcess::start();
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-rm", &[DB]).await;
    let xid = begin(&tm, 60_000).await;
    assert!(rm.register(&xid, DB, "r:1").await.result.is_success());
    rm.answer(Answer::Retryable);
    let r = rollback(&tm, &xid).await;
    assert_eq!(r.global_status, GlobalStatus::RollbackRetrying);
    assert!(
        !lockable(&rm, DB, "r:1").await,
        "rows stay locked until really undone"
    );
    rm.answer(Answer::Done);
    wait_status(&tm, &xid, GlobalStatus::Finished).await;
    assert!(lockable(&rm, DB, "r:1").await);
}

#[tokio::test]
async fn each_kind_of_malformed_frame_closes_only_its_own_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tc = TcProcess::start_with(&["--store", "memory"]);
    // A raw registered connection: unlike a client it never reconnects, so a TC that drops
    // every connection on a bad frame fails the begin below.
    let mut good = crate::hardening::raw_tm(tc.addr()).await;
    let header = |len: u32, version: u8, codec: u8| {
        let mut h = vec![0xda, 0xda, version];
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[0, 16, 2, codec, 0, 0, 0, 0, 1]);
        h
    };
    let mut garbage_body = header(16 + 6, 1, 1);
    garbage_body.extend_from_slice(&[0, 1, 0xff, 0xff, 0xff, 0xff]); // GlobalBegin, cut short
    let mut kryo_body = header(16 + 4, 1, 4);
    kryo_body.extend_from_slice(&[0, 1, 0, 0]);
    let mut cut_short = header(64, 1, 1);
    cut_short.extend_from_slice(&[0, 1]);
    let kinds: [(&str, Vec<u8>); 6] = [
        ("length over the limit", header(0x7fff_ffff, 1, 1)),
        ("not Seata at all", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("protocol version 2", header(16, 2, 1)),
        ("body that does not decode", garbage_body),
        ("codec other than SEATA", kryo_body),
        ("connection ends inside a frame", cut_short),
    ];
    for (i, (kind, bytes)) in kinds.iter().enumerate() {
        let mut bad = tokio::net::TcpStream::connect(tc.addr()).await.unwrap();
        bad.write_all(bytes).await.unwrap();
        if kind.starts_with("connection ends") {
            bad.shutdown().await.unwrap();
        }
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(WAIT, bad.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{kind}: connection not closed"))
            .unwrap_or(0);
        assert_eq!(n, 0, "{kind}: closed without an answer");
        let reply = crate::hardening::raw_begin(&mut good, 10 + i as i32).await;
        assert!(reply.result.is_success(), "{kind}: {:?}", reply.result);
    }
}

#[tokio::test]
async fn unregistered_connection_may_only_register_or_ping() {
    let tc = TcProcess::start();
    let stream = tokio::net::TcpStream::connect(tc.addr()).await.unwrap();
    let mut framed = Framed::new(stream, SeataCodec::default());
    framed.send(RpcFrame::ping(5)).await.unwrap();
    let pong = framed.next().await.unwrap().unwrap();
    assert_eq!(pong.message_type, MessageType::HeartbeatResponse);
    assert_eq!(pong.request_id, 5);
    let begin = GlobalBeginRequest {
        timeout: 1000,
        transaction_name: "x".into(),
    };
    framed
        .send(RpcFrame::request(6, begin.into()))
        .await
        .unwrap();
    assert!(framed.next().await.is_none(), "closed without an answer");
}

#[tokio::test]
async fn merged_requests_get_one_merged_result_in_order() {
    let tc = TcProcess::start();
    let stream = tokio::net::TcpStream::connect(tc.addr()).await.unwrap();
    let mut framed = Framed::new(stream, SeataCodec::default());
    let reg = RegisterTmRequest {
        version: SEATA_VERSION.into(),
        application_id: "raw".into(),
        transaction_service_group: "g".into(),
        extra_data: String::new(),
    };
    framed.send(RpcFrame::request(1, reg.into())).await.unwrap();
    let r = framed.next().await.unwrap().unwrap();
    assert!(matches!(r.body, Some(Message::RegisterTmResponse(ref x)) if x.identified));

    let batch = MergedWarpMessage {
        msgs: vec![
            GlobalBeginRequest {
                timeout: 60_000,
                transaction_name: "a".into(),
            }
            .into(),
            GlobalStatusRequest {
                xid: "127.0.0.1:1:404".into(),
                extra_data: String::new(),
            }
            .into(),
            GlobalBeginRequest {
                timeout: 60_000,
                transaction_name: "b".into(),
            }
            .into(),
        ],
        unread: None,
    };
    framed
        .send(RpcFrame::merged_request(2, batch.into()))
        .await
        .unwrap();
    let reply = framed.next().await.unwrap().unwrap();
    assert_eq!(reply.request_id, 2);
    let Some(Message::MergeResultMessage(results)) = reply.body else {
        panic!("expected MergeResultMessage, got {:?}", reply.body);
    };
    let names: Vec<&str> = results.msgs.iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        [
            "GlobalBeginResponse",
            "GlobalStatusResponse",
            "GlobalBeginResponse"
        ]
    );
    match &results.msgs[1] {
        Message::GlobalStatusResponse(s) => assert_eq!(s.global_status, GlobalStatus::Finished),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tcc_branches_commit_synchronously_in_registration_order() {
    let tc = TcProcess::start();
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "it-rm", &["tcc-action"]).await;
    let xid = begin(&tm, 60_000).await;
    let a = rm
        .register_typed(&xid, BranchType::Tcc, "tcc-action", "")
        .await;
    let b = rm
        .register_typed(&xid, BranchType::Tcc, "tcc-action", "")
        .await;
    let r = commit(&tm, &xid).await;
    assert_eq!(r.global_status, GlobalStatus::Committed);
    let order: Vec<i64> = rm.calls().iter().map(|c| c.branch_id).collect();
    assert_eq!(order, [a.branch_id, b.branch_id]);
}

#[tokio::test]
async fn sigterm_stops_the_tc_cleanly() {
    let mut tc = TcProcess::start();
    let tm = tm(tc.addr()).await;
    let _ = begin(&tm, 60_000).await;
    assert!(
        tc.terminate(),
        "seata-tc exits 0 on SIGTERM; log:\n{}",
        tc.log()
    );
}
