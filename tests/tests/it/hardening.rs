//! The real `seata-tc` against hostile and broken peers (issue 18): registration deadline,
//! per-IP cap, room made for registered clients when full, a peer that never reads, the frame
//! memory budget, size limits with failed answers, unknown message types, and what a peer's
//! reset is logged as. Limits are set small through `[limits]` in a config file; nothing here
//! waits on a clock: each test waits for the event itself, bounded by [`WAIT`].

use std::path::PathBuf;

use futures::{SinkExt, StreamExt};
use seata_it::clients::{tm, TestRm, WAIT};
use seata_it::tc::TcProcess;
use seata_protocol::{
    BranchRegisterRequest, BranchType, GlobalBeginRequest, GlobalBeginResponse, Message,
    RegisterRmRequest, RegisterTmRequest, RpcFrame, SeataCodec, SEATA_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// A raw protocol connection (no reconnects, no heartbeats of its own).
pub type Raw = Framed<TcpStream, SeataCodec>;

/// A TC on the memory store with `limits` (TOML lines of the `[limits]` table) and `top`
/// (top-level TOML lines). The returned directory holds the config; keep it while the TC runs.
fn tc_with(top: &str, limits: &str) -> (TcProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("tc.toml");
    std::fs::write(&path, format!("{top}\n[limits]\n{limits}\n")).unwrap();
    let tc = TcProcess::start_with(&["--store", "memory", "--config", path.to_str().unwrap()]);
    (tc, dir)
}

/// Connects and registers as a TM, reading the answer.
pub async fn raw_tm(addr: &str) -> Raw {
    let mut framed = Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        SeataCodec::default(),
    );
    let reg = RegisterTmRequest {
        version: SEATA_VERSION.into(),
        application_id: "raw".into(),
        transaction_service_group: "g".into(),
        extra_data: String::new(),
    };
    framed.send(RpcFrame::request(1, reg.into())).await.unwrap();
    let r = next(&mut framed).await.expect("registration answered");
    assert!(matches!(r.body, Some(Message::RegisterTmResponse(ref x)) if x.identified));
    framed
}

/// The next frame, or `None` when the TC closed the connection; fails after [`WAIT`].
async fn next(framed: &mut Raw) -> Option<RpcFrame> {
    match tokio::time::timeout(WAIT, framed.next()).await {
        Ok(Some(Ok(f))) => Some(f),
        Ok(_) => None,
        Err(_) => panic!("no frame and no close within {WAIT:?}"),
    }
}

/// Sends a GlobalBegin with request id `id` and returns its answer.
pub async fn raw_begin(framed: &mut Raw, id: i32) -> GlobalBeginResponse {
    let begin = GlobalBeginRequest {
        timeout: 60_000,
        transaction_name: "raw".into(),
    };
    framed
        .send(RpcFrame::request(id, begin.into()))
        .await
        .unwrap();
    loop {
        let f = next(framed).await.expect("connection stays up");
        if f.request_id != id {
            continue; // a heartbeat or an older answer
        }
        match f.body {
            Some(Message::GlobalBeginResponse(r)) => return r,
            other => panic!("expected a begin answer, got {other:?}"),
        }
    }
}

/// Waits until the TC closes `stream` (EOF or reset), reading and dropping what it sends.
async fn closed_by_tc(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("{what}: still open after {WAIT:?}"),
        }
    }
}

/// Waits until the TC's log (collected from its output by the harness) contains `needle`.
async fn wait_log(tc: &TcProcess, needle: &str) {
    let until = tokio::time::Instant::now() + WAIT;
    while !tc.log().contains(needle) {
        assert!(
            tokio::time::Instant::now() < until,
            "{needle:?} never logged: {}",
            tc.log()
        );
        // Polling the collected log; the outcome does not depend on this interval.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn unregistered_connection_is_closed_at_the_registration_deadline() {
    // Read idle far away: only the registration deadline can close the connection.
    let (tc, _dir) = tc_with("read-idle-timeout-ms = 600000", "register-timeout-ms = 300");
    let mut registered = raw_tm(tc.addr()).await;
    let mut idle = TcpStream::connect(tc.addr()).await.unwrap();
    // A heartbeat is allowed before registering, and answered.
    let mut ping = Vec::new();
    let mut enc = bytes::BytesMut::new();
    RpcFrame::ping(3).encode(&mut enc).unwrap();
    ping.extend_from_slice(&enc);
    idle.write_all(&ping).await.unwrap();
    closed_by_tc(&mut idle, "unregistered connection").await;
    // The registered one outlives the deadline.
    assert!(raw_begin(&mut registered, 2).await.result.is_success());
    wait_log(&tc, "not registered within").await;
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_are_closed_at_accept() {
    let (tc, _dir) = tc_with("", "max-connections-per-ip = 2");
    let mut a = raw_tm(tc.addr()).await;
    let b = raw_tm(tc.addr()).await;
    let mut third = TcpStream::connect(tc.addr()).await.unwrap();
    closed_by_tc(&mut third, "third connection from 127.0.0.1").await;
    // A slot given back is taken again.
    drop(b);
    let mut again = None;
    let until = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < until {
        // The TC notices the close asynchronously: retry until the slot is free.
        let mut s = TcpStream::connect(tc.addr()).await.unwrap();
        let mut enc = bytes::BytesMut::new();
        RpcFrame::ping(4).encode(&mut enc).unwrap();
        if s.write_all(&enc).await.is_ok() {
            let mut buf = [0u8; 16];
            if let Ok(Ok(16)) = tokio::time::timeout(WAIT, s.read_exact(&mut buf)).await {
                again = Some(s);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(again.is_some(), "a freed slot is never given again");
    assert!(raw_begin(&mut a, 5).await.result.is_success());
}

#[tokio::test]
async fn full_tc_closes_the_oldest_unregistered_connection_for_a_new_client() {
    let (tc, _dir) = tc_with(
        "max-connections = 3\nread-idle-timeout-ms = 600000",
        "register-timeout-ms = 600000",
    );
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(tc.addr()).await.unwrap());
    }
    // All slots are held by connections that never register; a real client still gets in
    // (without the policy it would wait in the accept queue until its 10 s connect gives up).
    let client = tm(tc.addr()).await;
    let xid = seata_it::clients::begin(&client, 60_000).await;
    assert!(xid.contains(':'));
    closed_by_tc(&mut idle[0], "oldest unregistered connection").await;
}

#[tokio::test]
async fn client_that_never_reads_is_closed_by_the_write_timeout() {
    let (tc, _dir) = tc_with(
        "read-idle-timeout-ms = 600000",
        "write-timeout-ms = 300\nmax-inflight-per-connection = 8",
    );
    let mut framed = raw_tm(tc.addr()).await;
    let mut enc = bytes::BytesMut::new();
    let mut codec = SeataCodec::default();
    for id in 0..2_000 {
        let begin = GlobalBeginRequest {
            timeout: 60_000,
            transaction_name: "never-read".into(),
        };
        tokio_util::codec::Encoder::encode(
            &mut codec,
            RpcFrame::request(100 + id, begin.into()),
            &mut enc,
        )
        .unwrap();
    }
    let mut stream = framed.into_parts().io;
    // Keep sending begins and never read an answer: once the socket buffers are full the TC's
    // writes stall, the write timeout closes the connection, and our writes fail.
    let sent = tokio::time::timeout(WAIT * 3, async {
        loop {
            if stream.write_all(&enc).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        sent.is_ok(),
        "the TC kept a connection that reads nothing; log:\n{}",
        tc.log()
    );
    // The TC itself is fine.
    framed = raw_tm(tc.addr()).await;
    assert!(raw_begin(&mut framed, 1).await.result.is_success());
}

#[tokio::test]
async fn frames_over_the_memory_budget_close_their_connection() {
    // Budget = one largest frame (the smallest allowed).
    let (tc, _dir) = tc_with("max-frame-len = 1048576", "frame-memory-budget = 1048576");
    let mut registered = raw_tm(tc.addr()).await;
    // Two connections each send most of a 1 MiB frame: together they pass the budget.
    let mut header = vec![0xda, 0xda, 1];
    header.extend_from_slice(&(1u32 << 20).to_be_bytes());
    header.extend_from_slice(&[0, 16, 2, 1, 0, 0, 0, 0, 1]);
    header.extend_from_slice(&vec![0u8; 700 * 1024]);
    let mut first = TcpStream::connect(tc.addr()).await.unwrap();
    first.write_all(&header).await.unwrap();
    let mut second = TcpStream::connect(tc.addr()).await.unwrap();
    // Either connection may be the one refused, depending on which grew first.
    let _ = second.write_all(&header).await;
    let (mut a, mut b) = (first, second);
    let which = tokio::time::timeout(WAIT, async {
        let mut x = [0u8; 1];
        let mut y = [0u8; 1];
        tokio::select! {
            _ = a.read(&mut x) => 0,
            _ = b.read(&mut y) => 1,
        }
    })
    .await
    .expect("one connection over the budget is closed");
    assert!(which <= 1);
    wait_log(&tc, "memory budget").await;
    assert!(raw_begin(&mut registered, 2).await.result.is_success());
}

#[tokio::test]
async fn requests_over_size_limits_get_failed_answers_and_the_connection_stays() {
    let (tc, _dir) = tc_with(
        "",
        "max-lock-keys-per-branch = 3\nmax-resource-ids-per-register = 2\nmax-application-data-bytes = 8",
    );
    let mut tmc = raw_tm(tc.addr()).await;
    let xid = raw_begin(&mut tmc, 2).await.xid;
    let rm = TestRm::connect(tc.addr(), "it-limits", &["r1"]).await;
    let too_many = rm.register(&xid, "r1", "t:1,2;u:3,4").await;
    assert!(!too_many.result.is_success());
    assert!(
        too_many.result.msg.contains("max-lock-keys-per-branch"),
        "{:?}",
        too_many.result
    );
    let r = rm
        .client
        .request::<seata_protocol::BranchRegisterResponse>(BranchRegisterRequest {
            xid: xid.clone(),
            branch_type: BranchType::Tcc,
            resource_id: "r1".into(),
            lock_key: String::new(),
            application_data: "0123456789".into(),
        })
        .await
        .unwrap();
    assert!(
        r.result.msg.contains("max-application-data-bytes"),
        "{:?}",
        r.result
    );
    // Within the limits, the same RM connection still works.
    assert!(rm.register(&xid, "r1", "t:1,2,3").await.result.is_success());

    let mut raw = Framed::new(
        TcpStream::connect(tc.addr()).await.unwrap(),
        SeataCodec::default(),
    );
    let reg = RegisterRmRequest {
        version: SEATA_VERSION.into(),
        application_id: "many".into(),
        transaction_service_group: "g".into(),
        extra_data: String::new(),
        resource_ids: "a,b,c".into(),
    };
    raw.send(RpcFrame::request(1, reg.into())).await.unwrap();
    let r = next(&mut raw).await.expect("answered");
    assert!(
        matches!(r.body, Some(Message::RegisterRmResponse(ref x)) if !x.identified),
        "{r:?}"
    );
}

#[tokio::test]
async fn unknown_message_type_is_skipped_and_the_connection_stays_up() {
    let tc = TcProcess::start_with(&["--store", "memory"]);
    let mut framed = raw_tm(tc.addr()).await;
    // A Seata 2.x-style request with a type code Seata 1.2 does not have.
    let mut frame = vec![0xda, 0xda, 1, 0, 0, 0, 22, 0, 16, 2, 1, 0, 0, 0, 0, 9];
    frame.extend_from_slice(&120i16.to_be_bytes());
    frame.extend_from_slice(&[0, 2, b'r', b'1']);
    framed.get_mut().write_all(&frame).await.unwrap();
    assert!(raw_begin(&mut framed, 10).await.result.is_success());
    wait_log(&tc, "frame skipped").await;
}

#[tokio::test]
async fn peer_reset_is_logged_as_closed_by_peer_not_as_a_bad_frame() {
    let tc = TcProcess::start_with(&["--store", "memory"]);
    let framed = raw_tm(tc.addr()).await;
    let stream = framed.into_parts().io;
    // SO_LINGER 0: close sends RST.
    stream.set_zero_linger().unwrap();
    drop(stream);
    wait_log(&tc, "connection closed by peer").await;
    assert!(!tc.log().contains("bad frame"), "{}", tc.log());
}

/// A merged request frame (request id `id`) whose sub-messages are `subs`, each already
/// encoded with its type code, as a client of a newer Seata could send it.
fn merged_frame(id: i32, subs: &[Vec<u8>]) -> Vec<u8> {
    let inner: Vec<u8> = subs.concat();
    let mut body = 59i16.to_be_bytes().to_vec();
    body.extend_from_slice(&(2 + inner.len() as i32).to_be_bytes());
    body.extend_from_slice(&(subs.len() as i16).to_be_bytes());
    body.extend_from_slice(&inner);
    let mut frame = vec![0xda, 0xda, 1];
    frame.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&[0, 16, 0, 1, 0]);
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// The answer to request `id` as a batch of results.
async fn merged_answer(framed: &mut Raw, id: i32) -> Vec<Message> {
    loop {
        let f = next(framed).await.expect("connection stays up");
        if f.request_id != id {
            continue;
        }
        match f.body {
            Some(Message::MergeResultMessage(r)) => return r.msgs,
            other => panic!("expected a merged result, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unknown_message_type_inside_a_merged_batch_gets_failed_answers_and_the_connection_stays_up(
) {
    let tc = TcProcess::start_with(&["--store", "memory"]);
    let mut framed = raw_tm(tc.addr()).await;
    let encode = |m: Message| {
        let mut b = bytes::BytesMut::new();
        m.encode_body(&mut b).unwrap();
        b.to_vec()
    };
    let begin = |name: &str| {
        encode(
            GlobalBeginRequest {
                timeout: 60_000,
                transaction_name: name.into(),
            }
            .into(),
        )
    };
    // Type 120 with a body a Seata 1.2 decoder cannot size.
    let mut unknown = 120i16.to_be_bytes().to_vec();
    unknown.extend_from_slice(&[0, 2, b'r', b'1']);

    // Last in the batch: the ones before it are served.
    let id = 21;
    framed
        .get_mut()
        .write_all(&merged_frame(id, &[begin("a"), unknown.clone()]))
        .await
        .unwrap();
    let answers = merged_answer(&mut framed, id).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    let Message::GlobalBeginResponse(a) = &answers[0] else {
        panic!("{answers:?}");
    };
    assert!(a.result.is_success(), "{:?}", a.result);
    let failed = answers[1].tx_result().expect("a result");
    assert!(!failed.is_success());
    assert!(failed.msg.contains("120"), "{failed:?}");

    // In the middle: what follows it cannot be located, so it is answered as failed (not
    // acted on); the connection still stays up.
    let id = 22;
    framed
        .get_mut()
        .write_all(&merged_frame(id, &[begin("b"), unknown, begin("c")]))
        .await
        .unwrap();
    let answers = merged_answer(&mut framed, id).await;
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert!(answers[0].tx_result().is_some_and(|r| r.is_success()));
    for a in &answers[1..] {
        let r = a.tx_result().expect("a result");
        assert!(!r.is_success() && r.msg.contains("120"), "{r:?}");
    }
    assert!(raw_begin(&mut framed, 23).await.result.is_success());
    assert!(!tc.log().contains("bad frame"), "{}", tc.log());
}

#[tokio::test]
async fn register_churn_logs_at_most_two_info_lines_per_cycle() {
    let tc = TcProcess::start_with(&["--store", "memory"]);
    // Wait for the start-up lines and the probe's own registration line to be out (the
    // answer can reach us before the line reaches the collected log), then count from there.
    let _probe = raw_tm(tc.addr()).await;
    let until = tokio::time::Instant::now() + WAIT;
    while !tc.log().contains("TM registered") {
        assert!(tokio::time::Instant::now() < until, "{}", tc.log());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let base = tc.log().lines().count();
    const CYCLES: usize = 20;
    for _ in 0..CYCLES {
        let stream = raw_tm(tc.addr()).await.into_parts().io;
        stream.set_zero_linger().unwrap();
        drop(stream); // RST
    }
    let until = tokio::time::Instant::now() + WAIT;
    while tc.log().matches("connection closed by peer").count() < CYCLES {
        assert!(
            tokio::time::Instant::now() < until,
            "not every reset was noticed:\n{}",
            tc.log()
        );
        // Polling the collected log; the outcome does not depend on this interval.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let log = tc.log();
    let lines: Vec<&str> = log.lines().skip(base).collect();
    assert!(
        lines.len() <= 2 * CYCLES,
        "{} lines for {CYCLES} connect-register-reset cycles:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("WARN") && !l.contains("ERROR")),
        "{}",
        lines.join("\n")
    );
}
