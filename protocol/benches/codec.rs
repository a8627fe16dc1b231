//! Frame encode and decode costs: `cargo bench -p seata-protocol --bench codec`.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use seata_protocol::{
    BranchRegisterRequest, BranchType, GlobalBeginRequest, MergedWarpMessage, Message, RpcFrame,
    SeataCodec,
};
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder};

fn branch_register() -> Message {
    // ~1 KiB lock key: 100 rows of one table.
    let pks: Vec<String> = (1_000_000..1_000_100).map(|i| i.to_string()).collect();
    BranchRegisterRequest {
        xid: "192.168.1.10:8091:2000042948".into(),
        branch_type: BranchType::At,
        resource_id: "jdbc:mysql://127.0.0.1:3306/seata".into(),
        lock_key: format!("account_tbl:{}", pks.join(",")),
        application_data: String::new(),
    }
    .into()
}

fn global_begin() -> Message {
    GlobalBeginRequest {
        timeout: 60_000,
        transaction_name: "purchase(java.lang.String, java.lang.String, int)".into(),
    }
    .into()
}

fn merged() -> Message {
    MergedWarpMessage {
        msgs: (0..10)
            .map(|i| {
                BranchRegisterRequest {
                    xid: format!("192.168.1.10:8091:20000429{i:02}"),
                    branch_type: BranchType::At,
                    resource_id: "jdbc:mysql://127.0.0.1:3306/seata".into(),
                    lock_key: format!("account_tbl:{i}"),
                    application_data: String::new(),
                }
                .into()
            })
            .collect(),
        unread: None,
    }
    .into()
}

fn bench_message(c: &mut Criterion, name: &str, msg: Message) {
    let frame = RpcFrame::request(42, msg);
    let mut codec = SeataCodec::default();
    let mut encoded = BytesMut::new();
    codec.encode(&frame, &mut encoded).unwrap();
    let len = encoded.len();

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(len as u64));
    let mut out = BytesMut::with_capacity(len * 2);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            codec.encode(black_box(&frame), &mut out).unwrap();
        })
    });
    let mut input = BytesMut::with_capacity(len * 2);
    group.bench_function("decode", |b| {
        b.iter(|| {
            input.clear();
            input.extend_from_slice(&encoded);
            black_box(codec.decode(&mut input).unwrap().unwrap());
        })
    });
    group.bench_function("decode+encode", |b| {
        b.iter(|| {
            input.clear();
            input.extend_from_slice(&encoded);
            let f = codec.decode(&mut input).unwrap().unwrap();
            out.clear();
            codec.encode(&f, &mut out).unwrap();
            black_box(&out);
        })
    });
    group.finish();
}

fn codec_benches(c: &mut Criterion) {
    bench_message(c, "global_begin", global_begin());
    bench_message(c, "branch_register_1k_lock_key", branch_register());
    bench_message(c, "merged_10_branch_registers", merged());
}

criterion_group!(benches, codec_benches);
criterion_main!(benches);
