//! Merged messages (spec 2.4.9): a client's batch of requests and the server's batch of
//! results, matched by position. Sub-messages carry no ids and no lengths of their own; the
//! outer `i32` length is the only one.
//!
//! A request batch may hold a message newer than Seata 1.2 (a type code we do not know).
//! Without a length it cannot be stepped over, and neither can anything after it, so the
//! batch decodes into the requests before it plus an [`UnreadTail`]: the receiver answers
//! those requests and gives each unread one a failed answer
//! ([`UnreadTail::failed_answers`]), and the connection stays up.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::{GlobalStatusResponse, Message, TxResult, TypeCode};
use crate::error::{ProtocolError, Result};
use crate::types::{GlobalStatus, TransactionExceptionCode};
use crate::wire::{self, Decode, Encode};

/// Client → TC: several requests in one frame (Java: `MergedWarpMessage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedWarpMessage {
    /// The requests, in the order the results must come back.
    pub msgs: Vec<Message>,
    /// The sub-messages from the first one of an unknown type on, not decoded (`None` when
    /// every sub-message is a Seata 1.2 message). Their results come after those of `msgs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<UnreadTail>,
}

impl MergedWarpMessage {
    /// A batch of known messages.
    pub fn new(msgs: Vec<Message>) -> Self {
        MergedWarpMessage { msgs, unread: None }
    }

    /// How many sub-messages the batch holds, read or not: the number of results it needs.
    pub fn len(&self) -> usize {
        self.msgs.len() + self.unread.as_ref().map_or(0, |t| t.count)
    }

    /// No sub-message at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The end of a request batch, from the first sub-message whose type code Seata 1.2 does not
/// have: since sub-messages carry no length, that one and every one after it stay bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadTail {
    /// The unknown type code.
    pub code: i16,
    /// Sub-messages in the tail: the unknown one and those after it.
    pub count: usize,
    /// The tail as received, from the unknown type code to the end of the batch (kept so the
    /// batch re-encodes to the same bytes).
    pub bytes: Vec<u8>,
}

impl UnreadTail {
    /// One failed result per sub-message of the tail, in order. Their request types are
    /// unknown, so each is a `GlobalStatusResponse` (status `UnKnown`) whose message says what
    /// happened: no Seata 1.2 result type would be right for all of them, and a client that
    /// expected another type still sees a failure for that request, never a success.
    pub fn failed_answers(&self) -> impl Iterator<Item = Message> + '_ {
        (0..self.count).map(move |i| {
            let msg = if i == 0 {
                format!(
                    "message type code {} is not a Seata 1.2 message; nothing was done: send it to a TC that serves it",
                    self.code
                )
            } else {
                format!(
                    "not read (it follows unknown message type code {} in a merged batch); nothing was done: send it again",
                    self.code
                )
            };
            failed_member(msg)
        })
    }
}

/// The failed result holding the place of a merged member that gets no answer of its own
/// type: a `GlobalStatusResponse` (status `UnKnown`) saying `msg`, so its sender sees a
/// failure for that request, never a success.
pub(crate) fn failed_member(msg: impl Into<String>) -> Message {
    GlobalStatusResponse {
        result: TxResult::failed(TransactionExceptionCode::Unknown, msg),
        global_status: GlobalStatus::UnKnown,
    }
    .into()
}

/// TC → client: one result per request of a [`MergedWarpMessage`], same order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeResultMessage {
    /// The results.
    pub msgs: Vec<Message>,
}

/// Decodes a batch; with `keep_unknown`, a sub-message of an unknown type ends the decoding
/// and the rest is returned as an [`UnreadTail`] instead of failing.
fn decode_batch(buf: &mut &[u8], keep_unknown: bool) -> Result<(Vec<Message>, Option<UnreadTail>)> {
    let len = wire::get_i32(buf, "merged length")?;
    let len = usize::try_from(len).map_err(|_| ProtocolError::NegativeLength {
        what: "merged length",
        len: i64::from(len),
    })?;
    let mut inner = wire::get_slice(buf, len, "merged messages")?;
    let count = wire::get_i16(&mut inner, "merged count")?;
    let count = usize::try_from(count).map_err(|_| ProtocolError::NegativeLength {
        what: "merged count",
        len: i64::from(count),
    })?;
    // Each sub-message takes at least its 2-byte type code: bound the allocation by the bytes.
    let mut msgs = Vec::with_capacity(count.min(inner.len() / 2));
    for i in 0..count {
        if let (true, [a, b, ..]) = (keep_unknown, inner) {
            let code = i16::from_be_bytes([*a, *b]);
            if TypeCode::try_from(code).is_err() {
                let tail = UnreadTail {
                    code,
                    count: count - i,
                    bytes: inner.to_vec(),
                };
                return Ok((msgs, Some(tail)));
            }
        }
        let msg = Message::decode_prefix(&mut inner)?;
        if matches!(
            msg,
            Message::MergedWarpMessage(_) | Message::MergeResultMessage(_)
        ) {
            return Err(ProtocolError::Invalid(
                "merged message nested in a merged message",
            ));
        }
        msgs.push(msg);
    }
    wire::expect_end(inner)?;
    Ok((msgs, None))
}

fn encode_batch(msgs: &[Message], tail: Option<&UnreadTail>, buf: &mut BytesMut) -> Result<()> {
    let total = msgs.len() + tail.map_or(0, |t| t.count);
    let count = i16::try_from(total).map_err(|_| ProtocolError::TooLong {
        what: "merged message count",
        len: total,
        max: i16::MAX as usize,
    })?;
    let len_at = buf.len();
    buf.put_i32(0); // back-patched below
    buf.put_i16(count);
    for m in msgs {
        if matches!(
            m,
            Message::MergedWarpMessage(_) | Message::MergeResultMessage(_)
        ) {
            return Err(ProtocolError::Invalid(
                "merged message nested in a merged message",
            ));
        }
        m.encode_body(buf)?;
    }
    if let Some(tail) = tail {
        buf.put_slice(&tail.bytes);
    }
    let len = buf.len() - len_at - 4;
    let len = i32::try_from(len).map_err(|_| ProtocolError::TooLong {
        what: "merged message",
        len,
        max: i32::MAX as usize,
    })?;
    if let Some(slot) = buf.get_mut(len_at..len_at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

impl Decode for MergedWarpMessage {
    fn decode(buf: &mut &[u8]) -> Result<Self> {
        let (msgs, unread) = decode_batch(buf, true)?;
        Ok(MergedWarpMessage { msgs, unread })
    }
}

impl Encode for MergedWarpMessage {
    fn encode(&self, buf: &mut BytesMut) -> Result<()> {
        encode_batch(&self.msgs, self.unread.as_ref(), buf)
    }
}

impl Decode for MergeResultMessage {
    fn decode(buf: &mut &[u8]) -> Result<Self> {
        // A result of a type we do not know cannot be handed to the request that waits for
        // it: the whole frame is an error.
        let (msgs, _) = decode_batch(buf, false)?;
        Ok(MergeResultMessage { msgs })
    }
}

impl Encode for MergeResultMessage {
    fn encode(&self, buf: &mut BytesMut) -> Result<()> {
        encode_batch(&self.msgs, None, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::GlobalBeginRequest;

    #[test]
    fn empty_batch_matches_java() {
        let mut out = BytesMut::new();
        Message::MergedWarpMessage(MergedWarpMessage::default())
            .encode_body(&mut out)
            .unwrap();
        assert_eq!(&out[..], &[0x00, 0x3b, 0, 0, 0, 2, 0, 0]);
    }

    #[test]
    fn rejects_nested_merge_and_bad_lengths() {
        let nested =
            Message::MergedWarpMessage(MergedWarpMessage::new(vec![Message::MergedWarpMessage(
                MergedWarpMessage::default(),
            )]));
        assert!(nested.encode_body(&mut BytesMut::new()).is_err());
        // nested on the wire
        let body = [0, 59, 0, 0, 0, 10, 0, 1, 0, 59, 0, 0, 0, 2, 0, 0];
        assert!(matches!(
            Message::decode_body(&body),
            Err(ProtocolError::Invalid(_))
        ));
        // length says 100, body holds 2
        let body = [0, 59, 0, 0, 0, 100, 0, 0];
        assert!(matches!(
            Message::decode_body(&body),
            Err(ProtocolError::Truncated { .. })
        ));
        // a sub-message that ends before the declared length
        let mut out = BytesMut::new();
        Message::MergedWarpMessage(MergedWarpMessage::new(vec![
            GlobalBeginRequest::default().into()
        ]))
        .encode_body(&mut out)
        .unwrap();
        out[5] += 1;
        out.put_u8(0);
        assert!(matches!(
            Message::decode_body(&out),
            Err(ProtocolError::TrailingBytes(1))
        ));
    }

    /// A batch of a GlobalBegin, a sub-message of type 120 and a GlobalCommit, as a client
    /// of a newer Seata could send it.
    fn batch_with_unknown() -> Vec<u8> {
        let mut subs = BytesMut::new();
        Message::from(GlobalBeginRequest::default())
            .encode_body(&mut subs)
            .unwrap();
        let known = subs.len();
        subs.put_i16(120);
        subs.put_slice(&[0, 2, b'r', b'1']);
        Message::from(crate::message::GlobalCommitRequest::default())
            .encode_body(&mut subs)
            .unwrap();
        let mut body = BytesMut::new();
        body.put_i16(59);
        body.put_i32(2 + subs.len() as i32);
        body.put_i16(3);
        body.put_slice(&subs);
        assert!(known > 0);
        body.to_vec()
    }

    #[test]
    fn unknown_sub_message_keeps_the_known_ones_and_the_rest_as_bytes() {
        let body = batch_with_unknown();
        let Message::MergedWarpMessage(batch) = Message::decode_body(&body).unwrap() else {
            panic!("not a batch");
        };
        assert_eq!(batch.msgs, [GlobalBeginRequest::default().into()]);
        assert_eq!(batch.len(), 3);
        let tail = batch.unread.clone().expect("tail kept");
        assert_eq!((tail.code, tail.count), (120, 2));
        // Re-encodes to the same bytes.
        let mut out = BytesMut::new();
        Message::MergedWarpMessage(batch)
            .encode_body(&mut out)
            .unwrap();
        assert_eq!(&out[..], &body[..]);
        // One failed answer per unread sub-message, the first naming the code.
        let answers: Vec<Message> = tail.failed_answers().collect();
        assert_eq!(answers.len(), 2);
        for (i, a) in answers.iter().enumerate() {
            let r = a.tx_result().expect("a result");
            assert!(!r.is_success());
            assert!(r.msg.contains("120"), "{}", r.msg);
            assert!(
                super::super::truncate_msg(&r.msg).len() == r.msg.len(),
                "{i}: fits the wire"
            );
        }
    }

    #[test]
    fn unknown_result_in_a_result_batch_is_an_error() {
        let mut body = batch_with_unknown();
        body[1] = 60;
        assert!(matches!(
            Message::decode_body(&body),
            Err(ProtocolError::UnknownCode { code: 120, .. })
        ));
    }
}
