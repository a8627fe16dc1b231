//! The baseline: a bare tokio echo server on loopback and `concurrency` clients each sending a
//! BranchRegister-sized frame and waiting for it to come back. Same process, same 2 cores, no
//! protocol work: the upper bound of request/response round trips per second.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use seata_protocol::{BranchRegisterRequest, BranchType, RpcFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn sample_frame() -> Vec<u8> {
    let mut out = BytesMut::new();
    let msg = BranchRegisterRequest {
        xid: "127.0.0.1:8091:2000042948".into(),
        branch_type: BranchType::At,
        resource_id: "jdbc:mysql://127.0.0.1:3306/bench".into(),
        lock_key: "bench_t:1_1_1".into(),
        application_data: String::new(),
    };
    let _ = RpcFrame::request(1, msg.into()).encode(&mut out);
    out.to_vec()
}

pub async fn run(concurrency: usize, duration: u64) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(buf.get(..n).unwrap_or_default()).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let frame = sample_frame();
    let end = Instant::now() + Duration::from_secs(duration);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let frame = frame.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let mut back = vec![0u8; frame.len()];
            let mut n = 0u64;
            while Instant::now() < end {
                s.write_all(&frame).await?;
                s.read_exact(&mut back).await?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let rt = total as f64 / duration as f64;
    println!(
        "echo_round_trips_per_s={rt:.0} (/6 round trips per 2-branch transaction = {:.0} tx/s)",
        rt / 6.0
    );
    Ok(())
}
