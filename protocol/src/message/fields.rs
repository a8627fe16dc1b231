//! Field kinds used by the [`wire_message!`](crate::message) declarations: each kind is a
//! module with a `get` and a `put`, so a message's layout is written once, as a list of
//! `field: Type as kind`, and its decoder and encoder cannot disagree.

use bytes::{BufMut, BytesMut};

use crate::error::Result;
use crate::types::{GlobalStatus, WireCode};
use crate::wire;

pub(crate) mod i16 {
    use super::*;
    #[inline]
    pub fn get(buf: &mut &[u8], what: &'static str) -> Result<i16> {
        wire::get_i16(buf, what)
    }
    #[inline]
    pub fn put(buf: &mut BytesMut, v: &i16, _: &'static str) -> Result<()> {
        buf.put_i16(*v);
        Ok(())
    }
}

pub(crate) mod i32 {
    use super::*;
    #[inline]
    pub fn get(buf: &mut &[u8], what: &'static str) -> Result<i32> {
        wire::get_i32(buf, what)
    }
    #[inline]
    pub fn put(buf: &mut BytesMut, v: &i32, _: &'static str) -> Result<()> {
        buf.put_i32(*v);
        Ok(())
    }
}

pub(crate) mod i64 {
    use super::*;
    #[inline]
    pub fn get(buf: &mut &[u8], what: &'static str) -> Result<i64> {
        wire::get_i64(buf, what)
    }
    #[inline]
    pub fn put(buf: &mut BytesMut, v: &i64, _: &'static str) -> Result<()> {
        buf.put_i64(*v);
        Ok(())
    }
}

/// `i16` length + UTF-8.
pub(crate) mod str16 {
    use super::*;
    #[inline]
    pub fn get(buf: &mut &[u8], what: &'static str) -> Result<String> {
        wire::get_str16(buf, what)
    }
    #[inline]
    pub fn put(buf: &mut BytesMut, v: &str, what: &'static str) -> Result<()> {
        wire::put_str16(buf, v, what)
    }
}

/// `i32` length + UTF-8 (lock keys, application data, resource id lists).
pub(crate) mod str32 {
    use super::*;
    #[inline]
    pub fn get(buf: &mut &[u8], what: &'static str) -> Result<String> {
        wire::get_str32(buf, what)
    }
    #[inline]
    pub fn put(buf: &mut BytesMut, v: &str, what: &'static str) -> Result<()> {
        wire::put_str32(buf, v, what)
    }
}

/// A one-byte enum code.
pub(crate) mod code {
    use super::*;
    #[inline]
    pub fn get<T: WireCode>(buf: &mut &[u8], what: &'static str) -> Result<T> {
        T::try_from(wire::get_u8(buf, what)?)
    }
    #[inline]
    pub fn put<T: WireCode>(buf: &mut BytesMut, v: &T, _: &'static str) -> Result<()> {
        buf.put_u8(v.code());
        Ok(())
    }
}

/// One byte; Java decoders test `== 1`, so do we.
pub(crate) mod bool8 {
    use super::*;
    #[inline]
    pub fn get(buf: &mut &[u8], what: &'static str) -> Result<bool> {
        Ok(wire::get_u8(buf, what)? == 1)
    }
    #[inline]
    pub fn put(buf: &mut BytesMut, v: &bool, _: &'static str) -> Result<()> {
        buf.put_u8(u8::from(*v));
        Ok(())
    }
}

/// Two bytes; only `GlobalLockQueryResponse.lockable` (spec 5.7).
pub(crate) mod bool16 {
    use super::*;
    #[inline]
    pub fn get(buf: &mut &[u8], what: &'static str) -> Result<bool> {
        Ok(wire::get_i16(buf, what)? == 1)
    }
    #[inline]
    pub fn put(buf: &mut BytesMut, v: &bool, _: &'static str) -> Result<()> {
        buf.put_i16(i16::from(*v));
        Ok(())
    }
}

/// `GlobalReportRequest.globalStatus`: a signed byte, `-1` (any negative value on decode)
/// meaning null (spec 2.4.2).
pub(crate) mod opt_global_status {
    use super::*;
    #[inline]
    pub fn get(buf: &mut &[u8], what: &'static str) -> Result<Option<GlobalStatus>> {
        let raw = wire::get_u8(buf, what)? as i8;
        if raw < 0 {
            return Ok(None);
        }
        GlobalStatus::try_from(raw as u8).map(Some)
    }
    #[inline]
    pub fn put(buf: &mut BytesMut, v: &Option<GlobalStatus>, _: &'static str) -> Result<()> {
        buf.put_u8(v.map_or(0xff, |s| s.code()));
        Ok(())
    }
}

/// The result header of every transaction response (spec 2.3).
pub(crate) mod tx_result {
    use super::*;
    use crate::message::TxResult;
    use crate::types::ResultCode;

    /// Java cuts `msg` to 128 UTF-16 code units before encoding.
    const MSG_MAX_UTF16: usize = 128;

    #[inline]
    pub fn get(buf: &mut &[u8], _: &'static str) -> Result<TxResult> {
        let result_code: ResultCode = code::get(buf, "resultCode")?;
        let msg = if result_code == ResultCode::Failed {
            wire::get_str16(buf, "msg")?
        } else {
            String::new()
        };
        let transaction_exception_code = code::get(buf, "transactionExceptionCode")?;
        Ok(TxResult {
            result_code,
            msg,
            transaction_exception_code,
        })
    }

    #[inline]
    pub fn put(buf: &mut BytesMut, v: &TxResult, _: &'static str) -> Result<()> {
        buf.put_u8(v.result_code.code());
        if v.result_code == ResultCode::Failed {
            wire::put_str16(buf, &truncate_msg(&v.msg), "msg")?;
        }
        buf.put_u8(v.transaction_exception_code.code());
        Ok(())
    }

    /// Java's `msg.substring(0, 128)` then UTF-8 encoding: counts UTF-16 code units, and a
    /// surrogate pair split by the cut leaves a lone high surrogate that Java encodes as `?`.
    pub fn truncate_msg(msg: &str) -> std::borrow::Cow<'_, str> {
        // Fast path: 128 bytes are at most 128 UTF-16 units.
        if msg.len() <= MSG_MAX_UTF16 {
            return msg.into();
        }
        let mut units = 0;
        for (at, c) in msg.char_indices() {
            let w = c.len_utf16();
            if units + w > MSG_MAX_UTF16 {
                let mut cut = msg.get(..at).unwrap_or_default().to_owned();
                if units < MSG_MAX_UTF16 {
                    cut.push('?');
                }
                return cut.into();
            }
            units += w;
        }
        msg.into()
    }
}
