//! Merged messages (spec 2.4.9): a client's batch of requests and the server's batch of
//! results, matched by position. Sub-messages carry no ids and no lengths of their own; the
//! outer `i32` length is the only one.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::Message;
use crate::error::{ProtocolError, Result};
use crate::wire::{self, Decode, Encode};

/// Client → TC: several requests in one frame (Java: `MergedWarpMessage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedWarpMessage {
    /// The requests, in the order the results must come back.
    pub msgs: Vec<Message>,
}

/// TC → client: one result per request of a [`MergedWarpMessage`], same order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeResultMessage {
    /// The results.
    pub msgs: Vec<Message>,
}

fn decode_batch(buf: &mut &[u8]) -> Result<Vec<Message>> {
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
    for _ in 0..count {
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
    Ok(msgs)
}

fn encode_batch(msgs: &[Message], buf: &mut BytesMut) -> Result<()> {
    let count = i16::try_from(msgs.len()).map_err(|_| ProtocolError::TooLong {
        what: "merged message count",
        len: msgs.len(),
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
        Ok(MergedWarpMessage {
            msgs: decode_batch(buf)?,
        })
    }
}

impl Encode for MergedWarpMessage {
    fn encode(&self, buf: &mut BytesMut) -> Result<()> {
        encode_batch(&self.msgs, buf)
    }
}

impl Decode for MergeResultMessage {
    fn decode(buf: &mut &[u8]) -> Result<Self> {
        Ok(MergeResultMessage {
            msgs: decode_batch(buf)?,
        })
    }
}

impl Encode for MergeResultMessage {
    fn encode(&self, buf: &mut BytesMut) -> Result<()> {
        encode_batch(&self.msgs, buf)
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
        let nested = Message::MergedWarpMessage(MergedWarpMessage {
            msgs: vec![Message::MergedWarpMessage(MergedWarpMessage::default())],
        });
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
        Message::MergedWarpMessage(MergedWarpMessage {
            msgs: vec![GlobalBeginRequest::default().into()],
        })
        .encode_body(&mut out)
        .unwrap();
        out[5] += 1;
        out.put_u8(0);
        assert!(matches!(
            Message::decode_body(&out),
            Err(ProtocolError::TrailingBytes(1))
        ));
    }
}
