//! Random and mutated bytes into the decoder: every outcome is a frame or a typed error,
//! never a panic, and never an allocation beyond the frame limit.

use bytes::BytesMut;
use proptest::prelude::*;
use seata_protocol::{
    BranchRegisterRequest, BranchType, GlobalBeginRequest, MergedWarpMessage, Message, RpcFrame,
    SeataCodec,
};
use tokio_util::codec::Decoder;

fn valid_frames() -> Vec<Vec<u8>> {
    let msgs: Vec<Message> = vec![
        GlobalBeginRequest {
            timeout: 60_000,
            transaction_name: "fuzz-tx".into(),
        }
        .into(),
        BranchRegisterRequest {
            xid: "127.0.0.1:8091:42".into(),
            branch_type: BranchType::At,
            resource_id: "jdbc:mysql://127.0.0.1:3306/db".into(),
            lock_key: "t:1,2,3".into(),
            application_data: "{}".into(),
        }
        .into(),
        MergedWarpMessage {
            msgs: vec![GlobalBeginRequest::default().into()],
            unread: None,
        }
        .into(),
    ];
    msgs.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut out = BytesMut::new();
            RpcFrame::request(i as i32, m).encode(&mut out).unwrap();
            out.to_vec()
        })
        .collect()
}

/// Decodes everything in `bytes` until an error or a need for more input.
fn drain(bytes: &[u8]) {
    let mut codec = SeataCodec::new(64 * 1024);
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    let _ = codec.decode_eof(&mut buf);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        drain(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..512),
        kind in 0u8..6,
    ) {
        let mut bytes = vec![0xda, 0xda, 1];
        bytes.extend_from_slice(&((16 + tail.len()) as i32).to_be_bytes());
        bytes.extend_from_slice(&16i16.to_be_bytes());
        bytes.extend_from_slice(&[kind, 1, 0, 0, 0, 0, 1]);
        bytes.extend_from_slice(&tail);
        drain(&bytes);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = valid_frames().swap_remove(which);
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        drain(&frame);
        let keep = cut.index(frame.len() + 1);
        drain(&frame[..keep]);
    }

    #[test]
    fn bodies_round_trip(name in ".{0,40}", timeout in any::<i32>(), key in "[a-z_]{1,8}:[0-9,]{1,30}") {
        let msgs: Vec<Message> = vec![
            GlobalBeginRequest { timeout, transaction_name: name.clone() }.into(),
            BranchRegisterRequest {
                xid: name.clone(),
                branch_type: BranchType::Xa,
                resource_id: name,
                lock_key: key,
                application_data: String::new(),
            }.into(),
        ];
        for m in msgs {
            let mut out = BytesMut::new();
            m.encode_body(&mut out).unwrap();
            prop_assert_eq!(Message::decode_body(&out).unwrap(), m);
        }
    }
}
