//! `codec-fuzz`: feeds generated and mutated frames to the frame decoder
//! ([`RpcFrame::decode`]) and to the streaming codec ([`SeataCodec`], with the bytes cut at
//! random points) and counts panics, which must be zero: every input either decodes or is a
//! typed error.
//!
//! Inputs start from valid encodings of every Seata 1.2 message (defaults, filled-in fields,
//! merged batches, gzip bodies) and are mutated *behind a valid header*: bit flips, length
//! fields overwritten with edge values, type codes swapped (unknown ones included), bodies cut,
//! extended or spliced from another message, with `fullLength`/`headLength` patched so most
//! inputs pass the header checks and reach the body decoder. A few inputs also get a mutated
//! header.
//!
//! ```text
//! cargo run --release -p seata-protocol --bin codec-fuzz -- [--inputs N] [--seed S]
//! ```
//! Prints inputs/s and the outcome counts; exits with status 1 on any panic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use bytes::BytesMut;
use seata_protocol::*;
use tokio_util::codec::Decoder;

/// The largest frame the fuzzed decoders accept (small, so length mutations hit the limit).
const MAX_FRAME: usize = 64 * 1024;

/// xorshift64*: fast, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Counts of one run.
#[derive(Debug, Default)]
struct Report {
    inputs: u64,
    decoded: u64,
    rejected: u64,
    stream_frames: u64,
    panics: u64,
}

fn seeds() -> Vec<Message> {
    let failed = TxResult::failed(TransactionExceptionCode::LockKeyConflict, "conflict é");
    let mut v: Vec<Message> = vec![
        GlobalBeginRequest::default().into(),
        GlobalBeginResponse::default().into(),
        BranchCommitRequest::default().into(),
        BranchCommitResponse::default().into(),
        BranchRollbackRequest::default().into(),
        BranchRollbackResponse::default().into(),
        GlobalCommitRequest::default().into(),
        GlobalCommitResponse::default().into(),
        GlobalRollbackRequest::default().into(),
        GlobalRollbackResponse::default().into(),
        BranchRegisterRequest::default().into(),
        BranchRegisterResponse::default().into(),
        BranchReportRequest::default().into(),
        BranchReportResponse::default().into(),
        GlobalStatusRequest::default().into(),
        GlobalStatusResponse::default().into(),
        GlobalReportRequest::default().into(),
        GlobalReportResponse::default().into(),
        GlobalLockQueryRequest::default().into(),
        GlobalLockQueryResponse::default().into(),
        RegisterTmRequest::default().into(),
        RegisterTmResponse::default().into(),
        RegisterRmRequest::default().into(),
        RegisterRmResponse::default().into(),
        UndoLogDeleteRequest::default().into(),
        GlobalBeginRequest {
            timeout: 60_000,
            transaction_name: "order-create".into(),
        }
        .into(),
        BranchRegisterRequest {
            xid: "10.0.0.1:8091:123456789".into(),
            resource_id: "jdbc:mysql://db:3306/stock".into(),
            lock_key: "stock_tbl:1,2,3;order_tbl:17".into(),
            application_data: "{\"autoCommit\":false}".into(),
            ..BranchRegisterRequest::default()
        }
        .into(),
        RegisterRmRequest {
            application_id: "stock".into(),
            transaction_service_group: "my_tx_group".into(),
            resource_ids: "jdbc:mysql://a,jdbc:mysql://b".into(),
            version: "1.2.0".into(),
            ..RegisterRmRequest::default()
        }
        .into(),
        BranchRegisterResponse {
            result: failed.clone(),
            branch_id: 0,
        }
        .into(),
        GlobalBeginResponse {
            result: failed,
            ..GlobalBeginResponse::default()
        }
        .into(),
    ];
    let batch: Vec<Message> = v
        .iter()
        .filter(|m| !m.is_response())
        .take(5)
        .cloned()
        .collect();
    let results: Vec<Message> = v
        .iter()
        .filter(|m| m.is_response())
        .take(5)
        .cloned()
        .collect();
    v.push(
        MergedWarpMessage {
            msgs: batch,
            unread: None,
        }
        .into(),
    );
    v.push(MergeResultMessage { msgs: results }.into());
    v
}

fn encode(frame: &RpcFrame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out).expect("seed frames encode");
    out.to_vec()
}

/// Valid frames of every seed: plain, with a head map, gzip, as response and heartbeat.
fn seed_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for (i, m) in seeds().into_iter().enumerate() {
        let id = i32::try_from(i).unwrap_or(0);
        let plain = RpcFrame::request(id, m.clone());
        frames.push(encode(&plain));
        let mut gz = plain.clone();
        gz.compressor = Compressor::Gzip;
        frames.push(encode(&gz));
        let mut headed = RpcFrame::merged_request(id, m);
        headed.head_map = vec![("k".into(), Some("v".into())), ("n".into(), None)];
        frames.push(encode(&headed));
    }
    frames.push(encode(&RpcFrame::ping(7)));
    frames
}

/// Sets fullLength (and keeps headLength within it) after the body changed size.
fn patch_lengths(f: &mut [u8]) {
    let len = i32::try_from(f.len()).unwrap_or(i32::MAX);
    if let Some(slot) = f.get_mut(3..7) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

const EDGE_I32: [i32; 9] = [-1, 0, 1, 2, 0x7f, 0x7fff, 0xffff, i32::MAX, i32::MIN];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&seeds[rng.below(seeds.len())]);
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let body_start = 16usize.min(out.len());
        let body_len = out.len() - body_start;
        match rng.below(10) {
            // Bit flips in the body.
            0 | 1 => {
                for _ in 0..1 + rng.below(8) {
                    if body_len > 0 {
                        let at = body_start + rng.below(body_len);
                        out[at] ^= 1 << rng.below(8);
                    }
                }
            }
            // An edge value written over a 1-, 2- or 4-byte field.
            2 | 3 => {
                let v = EDGE_I32[rng.below(EDGE_I32.len())].to_be_bytes();
                let width = [1, 2, 4][rng.below(3)];
                if body_len >= width {
                    let at = body_start + rng.below(body_len - width + 1);
                    out[at..at + width].copy_from_slice(&v[4 - width..]);
                }
            }
            // Type code swapped, unknown codes included.
            4 => {
                let code = if rng.chance(3) {
                    rng.next() as i16
                } else {
                    [1i16, 2, 3, 11, 12, 59, 60, 101, 103, 111, 120, 0, -1][rng.below(13)]
                };
                let head_len = out
                    .get(7..9)
                    .map(|b| i16::from_be_bytes([b[0], b[1]]) as usize)
                    .unwrap_or(16);
                if let Some(slot) = out.get_mut(head_len..head_len + 2) {
                    slot.copy_from_slice(&code.to_be_bytes());
                }
            }
            // Body cut.
            5 => {
                let keep = body_start + rng.below(body_len + 1);
                out.truncate(keep);
            }
            // Random bytes appended.
            6 => {
                for _ in 0..1 + rng.below(32) {
                    out.push(rng.next() as u8);
                }
            }
            // A piece of another frame's body spliced in.
            7 => {
                let other = &seeds[rng.below(seeds.len())];
                if other.len() > 16 && body_len > 0 {
                    let from = 16 + rng.below(other.len() - 16);
                    let n = rng.below(other.len() - from + 1);
                    let at = body_start + rng.below(body_len);
                    out.splice(at..at, other[from..from + n].iter().copied());
                }
            }
            // Random body behind the header.
            8 => {
                out.truncate(body_start);
                for _ in 0..rng.below(64) {
                    out.push(rng.next() as u8);
                }
            }
            // Header field mutated (type, codec, compressor, headLength).
            _ => {
                let at = [7, 8, 9, 10, 11][rng.below(5)];
                if let Some(b) = out.get_mut(at) {
                    *b = rng.next() as u8;
                }
            }
        }
        // Mostly keep fullLength consistent so the body decoder is reached.
        if !rng.chance(16) {
            patch_lengths(out);
        }
    }
}

/// Decodes `input` with the whole-frame decoder and, between two valid frames, with the
/// streaming codec fed in random pieces. Returns (decoded, stream frames).
fn exercise(rng: &mut Rng, input: &[u8], valid: &[u8]) -> (bool, u64) {
    let decoded = match RpcFrame::decode(input, MAX_FRAME) {
        Ok(frame) => {
            // Whatever decodes must encode again.
            let mut out = BytesMut::new();
            let _ = frame.encode(&mut out);
            true
        }
        Err(_) => false,
    };
    let mut stream = Vec::with_capacity(valid.len() * 2 + input.len());
    stream.extend_from_slice(valid);
    stream.extend_from_slice(input);
    stream.extend_from_slice(valid);
    let mut codec = SeataCodec::new(MAX_FRAME);
    let mut buf = BytesMut::new();
    let mut frames = 0;
    let mut pos = 0;
    'feed: while pos < stream.len() {
        let n = 1 + rng.below((stream.len() - pos).min(64));
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => frames += 1,
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    if pos == stream.len() {
        let _ = codec.decode_eof(&mut buf);
    }
    (decoded, frames)
}

fn run(inputs: u64, seed: u64) -> Report {
    let seeds = seed_frames();
    let mut rng = Rng(seed | 1);
    let mut report = Report::default();
    let mut input = Vec::new();
    for _ in 0..inputs {
        mutate(&mut rng, &seeds, &mut input);
        let valid = &seeds[rng.below(seeds.len())];
        let outcome = catch_unwind(AssertUnwindSafe(|| exercise(&mut rng, &input, valid)));
        report.inputs += 1;
        match outcome {
            Ok((decoded, frames)) => {
                if decoded {
                    report.decoded += 1;
                } else {
                    report.rejected += 1;
                }
                report.stream_frames += frames;
            }
            Err(_) => {
                report.panics += 1;
                if report.panics <= 5 {
                    eprintln!("panic on input {:02x?}", input);
                }
            }
        }
    }
    report
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let inputs = arg(&args, "--inputs", 10_000_000);
    let seed = arg(&args, "--seed", 0x5EA7A);
    // A panic is counted and reported by `run`; the default hook would print each one.
    std::panic::set_hook(Box::new(|_| {}));
    let start = Instant::now();
    let r = run(inputs, seed);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "inputs {} in {:.1} s ({:.0} inputs/s): decoded {}, rejected {}, stream frames {}, panics {}",
        r.inputs,
        secs,
        r.inputs as f64 / secs.max(1e-9),
        r.decoded,
        r.rejected,
        r.stream_frames,
        r.panics
    );
    if r.panics > 0 {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_run_has_no_panics_and_reaches_the_body_decoder() {
        let r = run(30_000, 42);
        assert_eq!(r.panics, 0);
        // Mutations behind valid headers: some still decode, most are rejected by the body
        // decoder rather than all by the header check.
        assert!(r.decoded > 1_000, "{r:?}");
        assert!(r.rejected > 1_000, "{r:?}");
    }
}
