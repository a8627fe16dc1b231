//! Message bodies of the SEATA serializer (spec 2.4): one struct per Seata message, one file
//! per family, and the one dispatch on the type code ([`Message`]).
//!
//! A body on the wire is `i16 typeCode` followed by the message's fields, with no per-message
//! length. Layouts are declared once with `wire_message!` (field name, Rust type, wire kind),
//! which generates the struct, its [`Decode`] and its [`Encode`].
//!
//! Decoding is strict: every declared field must be present and a body must be consumed
//! exactly. Java's decoders are laxer (they stop early after some empty strings and ignore
//! trailing bytes), but Java's encoders always write every field, so everything a Java 1.2
//! peer sends decodes here.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{ProtocolError, Result};
use crate::types::{ResultCode, TransactionExceptionCode};
use crate::wire::{self, Decode, Encode};

pub(crate) mod fields;

mod branch;
mod global;
mod lock;
mod merged;
mod refusal;
mod register;
mod undo_log;

pub use branch::*;
pub use global::*;
pub use lock::*;
pub use merged::*;
pub use register::*;
pub use undo_log::*;

/// Declares message structs with the same field layout, and their codecs.
///
/// `kind` names a module of [`fields`] holding the field's `get`/`put`.
macro_rules! wire_message {
    (
        $(#[$meta:meta])*
        for [$($name:ident),+ $(,)?] $fields:tt
    ) => {
        $crate::message::wire_message!(@each [$(#[$meta])*] [$($name),+] $fields);
    };
    (@each [$($attr:tt)*] [$first:ident $(, $rest:ident)*] $fields:tt) => {
        $crate::message::wire_message!(@one [$($attr)*] $first $fields);
        $crate::message::wire_message!(@each [$($attr)*] [$($rest),*] $fields);
    };
    (@each [$($attr:tt)*] [] $fields:tt) => {};
    (@one [$($attr:tt)*] $name:ident {
        $( $(#[$fmeta:meta])* $field:ident : $ty:ty as $kind:ident ),* $(,)?
    }) => {
        $($attr)*
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default, rename_all = "camelCase")]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::wire::Decode for $name {
            #[inline]
            fn decode(_buf: &mut &[u8]) -> $crate::error::Result<Self> {
                Ok($name {
                    $( $field: $crate::message::fields::$kind::get(_buf, stringify!($field))?, )*
                })
            }
        }

        impl $crate::wire::Encode for $name {
            #[inline]
            fn encode(&self, _buf: &mut bytes::BytesMut) -> $crate::error::Result<()> {
                $( $crate::message::fields::$kind::put(_buf, &self.$field, stringify!($field))?; )*
                Ok(())
            }
        }
    };
}
pub(crate) use wire_message;

/// The result header every transaction response starts with (spec 2.3): `resultCode`, the
/// `msg` (on the wire only when failed, cut to 128 UTF-16 units) and the exception code
/// (always on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TxResult {
    /// Success or failure of the request.
    pub result_code: ResultCode,
    /// Why it failed; not sent on success.
    pub msg: String,
    /// Seata's classification of the failure (`Unknown` on success).
    pub transaction_exception_code: TransactionExceptionCode,
}

impl TxResult {
    /// A successful result.
    pub fn success() -> Self {
        TxResult {
            result_code: ResultCode::Success,
            ..TxResult::default()
        }
    }

    /// A failed result with Seata's exception code and a message saying what to do next.
    pub fn failed(code: TransactionExceptionCode, msg: impl Into<String>) -> Self {
        TxResult {
            result_code: ResultCode::Failed,
            msg: msg.into(),
            transaction_exception_code: code,
        }
    }

    /// `resultCode == Success`.
    pub fn is_success(&self) -> bool {
        self.result_code == ResultCode::Success
    }
}

pub use fields::tx_result::truncate_msg;

/// Declares [`Message`], [`TypeCode`] and the dispatch between them.
macro_rules! messages {
    ($( $variant:ident = $code:literal => $java:literal ),+ $(,)?) => {
        /// The SEATA type code of a body (spec 2.4, `MessageType.java`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i16)]
        pub enum TypeCode {
            $( $variant = $code, )+
        }

        impl TryFrom<i16> for TypeCode {
            type Error = ProtocolError;
            fn try_from(code: i16) -> Result<Self> {
                match code {
                    $( $code => Ok(TypeCode::$variant), )+
                    other => Err(ProtocolError::UnknownCode { what: "message type", code: i64::from(other) }),
                }
            }
        }

        /// Any message body of protocol v1 with the SEATA serializer.
        ///
        /// Serde gives it the shape `{"message": "<Java class>", "fields": {...}}`, the one the
        /// conformance vectors use.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "message", content = "fields")]
        pub enum Message {
            $( #[serde(rename = $java)] $variant($variant), )+
        }

        impl Message {
            /// The body's type code.
            pub fn type_code(&self) -> TypeCode {
                match self { $( Message::$variant(_) => TypeCode::$variant, )+ }
            }

            /// Decodes the fields of a body whose type code has been read already.
            pub fn decode_fields(code: TypeCode, buf: &mut &[u8]) -> Result<Self> {
                Ok(match code { $( TypeCode::$variant => Message::$variant($variant::decode(buf)?), )+ })
            }

            fn encode_fields(&self, buf: &mut BytesMut) -> Result<()> {
                match self { $( Message::$variant(m) => m.encode(buf), )+ }
            }

            /// The Seata (Java) class name of the message.
            pub fn name(&self) -> &'static str {
                match self { $( Message::$variant(_) => $java, )+ }
            }
        }

        $(
            impl From<$variant> for Message {
                fn from(m: $variant) -> Self { Message::$variant(m) }
            }

            impl TryFrom<Message> for $variant {
                type Error = Message;
                /// Takes the body out if it is this message; otherwise hands it back.
                fn try_from(m: Message) -> std::result::Result<Self, Message> {
                    match m { Message::$variant(v) => Ok(v), other => Err(other) }
                }
            }
        )+
    };
}

messages! {
    GlobalBeginRequest = 1 => "GlobalBeginRequest",
    GlobalBeginResponse = 2 => "GlobalBeginResponse",
    BranchCommitRequest = 3 => "BranchCommitRequest",
    BranchCommitResponse = 4 => "BranchCommitResponse",
    BranchRollbackRequest = 5 => "BranchRollbackRequest",
    BranchRollbackResponse = 6 => "BranchRollbackResponse",
    GlobalCommitRequest = 7 => "GlobalCommitRequest",
    GlobalCommitResponse = 8 => "GlobalCommitResponse",
    GlobalRollbackRequest = 9 => "GlobalRollbackRequest",
    GlobalRollbackResponse = 10 => "GlobalRollbackResponse",
    BranchRegisterRequest = 11 => "BranchRegisterRequest",
    BranchRegisterResponse = 12 => "BranchRegisterResponse",
    BranchReportRequest = 13 => "BranchReportRequest",
    BranchReportResponse = 14 => "BranchReportResponse",
    GlobalStatusRequest = 15 => "GlobalStatusRequest",
    GlobalStatusResponse = 16 => "GlobalStatusResponse",
    GlobalReportRequest = 17 => "GlobalReportRequest",
    GlobalReportResponse = 18 => "GlobalReportResponse",
    GlobalLockQueryRequest = 21 => "GlobalLockQueryRequest",
    GlobalLockQueryResponse = 22 => "GlobalLockQueryResponse",
    MergedWarpMessage = 59 => "MergedWarpMessage",
    MergeResultMessage = 60 => "MergeResultMessage",
    RegisterTmRequest = 101 => "RegisterTMRequest",
    RegisterTmResponse = 102 => "RegisterTMResponse",
    RegisterRmRequest = 103 => "RegisterRMRequest",
    RegisterRmResponse = 104 => "RegisterRMResponse",
    UndoLogDeleteRequest = 111 => "UndoLogDeleteRequest",
}

impl Message {
    /// Reads `typeCode` and the fields; the caller checks that nothing is left.
    pub fn decode_prefix(buf: &mut &[u8]) -> Result<Self> {
        let code = TypeCode::try_from(wire::get_i16(buf, "typeCode")?)?;
        Message::decode_fields(code, buf)
    }

    /// Decodes a whole body (type code and fields); leftover bytes are an error.
    pub fn decode_body(mut body: &[u8]) -> Result<Self> {
        let msg = Message::decode_prefix(&mut body)?;
        wire::expect_end(body)?;
        Ok(msg)
    }

    /// Appends the body (type code and fields) to `buf`.
    pub fn encode_body(&self, buf: &mut BytesMut) -> Result<()> {
        buf.put_i16(self.type_code() as i16);
        self.encode_fields(buf)
    }

    /// True for the response half of a request/response pair (and MergeResultMessage).
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Message::GlobalBeginResponse(_)
                | Message::BranchCommitResponse(_)
                | Message::BranchRollbackResponse(_)
                | Message::GlobalCommitResponse(_)
                | Message::GlobalRollbackResponse(_)
                | Message::BranchRegisterResponse(_)
                | Message::BranchReportResponse(_)
                | Message::GlobalStatusResponse(_)
                | Message::GlobalReportResponse(_)
                | Message::GlobalLockQueryResponse(_)
                | Message::MergeResultMessage(_)
                | Message::RegisterTmResponse(_)
                | Message::RegisterRmResponse(_)
        )
    }

    /// The transaction result header, for responses that have one.
    pub fn tx_result(&self) -> Option<&TxResult> {
        Some(match self {
            Message::GlobalBeginResponse(m) => &m.result,
            Message::BranchCommitResponse(m) => &m.result,
            Message::BranchRollbackResponse(m) => &m.result,
            Message::GlobalCommitResponse(m) => &m.result,
            Message::GlobalRollbackResponse(m) => &m.result,
            Message::BranchRegisterResponse(m) => &m.result,
            Message::BranchReportResponse(m) => &m.result,
            Message::GlobalStatusResponse(m) => &m.result,
            Message::GlobalReportResponse(m) => &m.result,
            Message::GlobalLockQueryResponse(m) => &m.result,
            _ => return None,
        })
    }

    /// The XID the message is about, if it names one (for tracing spans).
    pub fn xid(&self) -> Option<&str> {
        let xid = match self {
            Message::BranchCommitRequest(m) => &m.xid,
            Message::BranchRollbackRequest(m) => &m.xid,
            Message::BranchCommitResponse(m) => &m.xid,
            Message::BranchRollbackResponse(m) => &m.xid,
            Message::GlobalCommitRequest(m) => &m.xid,
            Message::GlobalRollbackRequest(m) => &m.xid,
            Message::GlobalStatusRequest(m) => &m.xid,
            Message::GlobalReportRequest(m) => &m.xid,
            Message::BranchRegisterRequest(m) => &m.xid,
            Message::BranchReportRequest(m) => &m.xid,
            Message::GlobalLockQueryRequest(m) => &m.xid,
            Message::GlobalBeginResponse(m) => &m.xid,
            _ => return None,
        };
        Some(xid.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_code_is_an_error() {
        let err = Message::decode_body(&[0x00, 0x13]).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::UnknownCode {
                what: "message type",
                code: 19
            }
        );
    }

    #[test]
    fn rejects_trailing_bytes() {
        // GlobalCommitRequest with empty xid and extraData, plus one stray byte
        let err = Message::decode_body(&[0, 7, 0, 0, 0, 0, 9]).unwrap_err();
        assert_eq!(err, ProtocolError::TrailingBytes(1));
    }

    #[test]
    fn truncates_msg_by_utf16_units_like_java() {
        let ascii = "a".repeat(200);
        assert_eq!(truncate_msg(&ascii).len(), 128);
        // 127 ASCII then an emoji (2 units): the cut splits the pair → '?'
        let split = format!("{}🚀tail", "b".repeat(127));
        assert_eq!(truncate_msg(&split), format!("{}?", "b".repeat(127)));
        let cjk = "错".repeat(130);
        assert_eq!(truncate_msg(&cjk).chars().count(), 128);
    }
}
