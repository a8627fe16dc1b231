//! The client's own calls and error classes against the real TC and against sockets that
//! misbehave, and the branch extractor's 400.

use std::time::Duration;

use seata_dtm::{DtmClient, DtmError, Saga};
use seata_it::tc::TcProcess;

use crate::harness::{transfer, Env, A};

#[tokio::test]
async fn new_gid_and_query_of_an_unknown_gid() {
    let tc = TcProcess::start_with(&["--store", "memory"]);
    let dtm = DtmClient::new(tc.dtm_url()).unwrap();
    let (g1, g2) = (dtm.new_gid().await.unwrap(), dtm.new_gid().await.unwrap());
    assert!(!g1.is_empty());
    assert_ne!(g1, g2);
    assert!(dtm.query(&g1).await.unwrap().is_none());
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_transport_error() {
    // A port that was free a moment ago: connection refused, nothing sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dtm = DtmClient::new(format!("http://{addr}/api/dtmsvr")).unwrap();
    let err = dtm.new_gid().await.unwrap_err();
    assert!(matches!(err, DtmError::Transport { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("not sent"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_an_unknown_outcome() {
    // Accepts, reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let _ = held_tx.send(sock);
        }
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let dtm = DtmClient::with_http(format!("http://{addr}/api/dtmsvr"), http).unwrap();
    let err = Saga::new(&dtm, "g-unknown")
        .add("http://127.0.0.1:9/a", "", &transfer(A, 1))
        .submit()
        .await
        .unwrap_err();
    assert!(err.is_outcome_unknown(), "{err}");
    assert!(err.to_string().contains("query the gid"), "{err}");
    assert!(held_rx.recv().await.is_some());
    server.abort();
}

#[tokio::test]
async fn abort_of_an_unknown_gid_is_a_plain_error_not_a_failure() {
    let tc = TcProcess::start_with(&["--store", "memory"]);
    let dtm = DtmClient::new(tc.dtm_url()).unwrap();
    let err = seata_dtm::Msg::new(&dtm, "never-prepared")
        .abort()
        .await
        .unwrap_err();
    assert!(
        matches!(err, DtmError::Status { status, .. } if status.as_u16() == 500),
        "{err}"
    );
}

#[tokio::test]
async fn a_branch_call_without_its_parameters_is_refused_with_400() {
    let env = Env::start("branch_400").await;
    let res = reqwest::Client::new()
        .post(format!("{}?gid=g&op=action", env.at("debit")))
        .header("content-type", "application/json")
        .body(r#"{"account":1,"amount":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body = res.text().await.unwrap();
    assert!(body.contains("trans_type, branch_id"), "{body}");
    env.finish().await;
}
