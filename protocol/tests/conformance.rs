//! Walks every golden vector in `shared/conformance/seata-1.2/` (bytes produced by Java Seata
//! 1.2's own codec): the frame must decode to the described header and fields, and encoding
//! those fields must give the exact bytes; the same for the bare body.
//!
//! Fields are compared after the one normalisation the wire imposes: a body string cannot be
//! null, so JSON `null` means "empty". Where Java's own decoder loses information that is on
//! the wire (the two vectors whose Java re-encoding differs), we must keep it: the expected
//! value is then the encoded input, not Java's lossy reading.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use seata_protocol::frame::DEFAULT_MAX_FRAME_LEN;
use seata_protocol::{Compressor, Message, MessageType, RpcFrame, SeataCodec};
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

fn vectors_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SEATA_CONFORMANCE_DIR") {
        return dir.into();
    }
    // The shared reference folder sits beside the repository checkout.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/seata-1.2")
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Drops `null` members: an absent field takes the wire's default (empty string, `None`).
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

fn message_from(class: &str, fields: &Value) -> Message {
    let fields = strip_nulls(fields);
    serde_json::from_value(serde_json::json!({ "message": class, "fields": fields }))
        .unwrap_or_else(|e| panic!("{class} from {fields}: {e}"))
}

struct Checked {
    vectors: usize,
}

fn check_vector(v: &Value, checked: &mut Checked) {
    let name = v["name"].as_str().expect("name");
    let class = v["message"].as_str().expect("message");
    let frame_bytes = hex(v["frame_hex"].as_str().expect("frame_hex"));
    assert_eq!(
        frame_bytes.len() as u64,
        v["frame_len"].as_u64().unwrap(),
        "{name}: frame_len"
    );

    // Decode, fed in two chunks like the Java round trip did.
    let mut codec = SeataCodec::default();
    let mut buf = BytesMut::new();
    let split = frame_bytes.len() / 2;
    buf.extend_from_slice(&frame_bytes[..split]);
    assert!(
        codec.decode(&mut buf).unwrap().is_none(),
        "{name}: half a frame decoded"
    );
    buf.extend_from_slice(&frame_bytes[split..]);
    let frame = codec
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{name}: decode failed: {e}"))
        .unwrap_or_else(|| panic!("{name}: whole frame not decoded"));
    assert!(buf.is_empty(), "{name}: bytes left after the frame");

    // Header.
    assert_eq!(
        frame.message_type.code() as u64,
        v["message_type"].as_u64().unwrap(),
        "{name}: messageType"
    );
    assert_eq!(
        frame.codec.code() as u64,
        v["codec"].as_u64().unwrap(),
        "{name}: codec"
    );
    assert_eq!(
        frame.compressor.code() as u64,
        v["compressor"].as_u64().unwrap(),
        "{name}: compressor"
    );
    assert_eq!(
        frame.request_id as i64,
        v["request_id"].as_i64().unwrap(),
        "{name}: requestId"
    );
    let head_map: Vec<(String, Option<String>)> =
        serde_json::from_value(v["head_map"].clone()).expect("head_map");
    assert_eq!(frame.head_map, head_map, "{name}: head map");
    let head_len = u16::from_be_bytes([frame_bytes[7], frame_bytes[8]]);
    assert_eq!(
        head_len as u64,
        v["head_length"].as_u64().unwrap(),
        "{name}: headLength"
    );

    // Body.
    if class == "HeartbeatMessage" {
        let ping = v["fields"]["ping"].as_bool().expect("ping");
        let want = if ping {
            MessageType::HeartbeatRequest
        } else {
            MessageType::HeartbeatResponse
        };
        assert_eq!(frame.message_type, want, "{name}: heartbeat kind");
        assert!(frame.body.is_none(), "{name}: heartbeat has no body");
    } else {
        let java_lossy = v["reencoded_frame_identical"] == Value::Bool(false);
        let input = message_from(class, &v["fields"]);
        let expected = if java_lossy {
            input.clone()
        } else {
            message_from(class, &v["decoded_fields"])
        };
        let body = frame
            .body
            .clone()
            .unwrap_or_else(|| panic!("{name}: no body"));
        assert_eq!(body, expected, "{name}: decoded fields");
        assert_eq!(
            body.type_code() as i64,
            v["type_code"].as_i64().unwrap(),
            "{name}"
        );

        // body_hex: decode and exact re-encode.
        let body_bytes = hex(v["body_hex"].as_str().expect("body_hex"));
        assert_eq!(body_bytes.len() as u64, v["body_len"].as_u64().unwrap());
        assert_eq!(
            Message::decode_body(&body_bytes).unwrap(),
            expected,
            "{name}: body_hex"
        );
        let mut enc = BytesMut::new();
        input.encode_body(&mut enc).unwrap();
        assert_eq!(hex_of(&enc), hex_of(&body_bytes), "{name}: body re-encode");

        // The frame, from the described header and fields.
        let rebuilt = RpcFrame {
            body: Some(input),
            ..frame.clone()
        };
        let mut out = BytesMut::new();
        codec.encode(&rebuilt, &mut out).unwrap();
        if frame.compressor == Compressor::None {
            assert_eq!(
                hex_of(&out),
                hex_of(&frame_bytes),
                "{name}: frame re-encode"
            );
        } else {
            // Compressed bytes depend on the compressor build (spec 5.15): compare what the
            // frame decodes to.
            let back = RpcFrame::decode(&out, DEFAULT_MAX_FRAME_LEN).unwrap();
            assert_eq!(
                back.body, rebuilt.body,
                "{name}: compressed frame round trip"
            );
        }
        checked.vectors += 1;
        return;
    }
    let mut out = BytesMut::new();
    codec.encode(&frame, &mut out).unwrap();
    assert_eq!(
        hex_of(&out),
        hex_of(&frame_bytes),
        "{name}: frame re-encode"
    );
    checked.vectors += 1;
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn every_golden_vector_decodes_and_reencodes_exactly() {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("conformance vectors missing at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vector files in {}", dir.display());

    let mut checked = Checked { vectors: 0 };
    for file in &files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let vectors = doc["vectors"].as_array().expect("vectors array");
        assert!(!vectors.is_empty(), "{} holds no vectors", file.display());
        for v in vectors {
            check_vector(v, &mut checked);
        }
    }
    println!(
        "checked {} conformance vectors from {} files",
        checked.vectors,
        files.len()
    );
    assert!(
        checked.vectors >= 115,
        "expected all 115 vectors, checked {}",
        checked.vectors
    );
}
