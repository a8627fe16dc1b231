//! Checked primitives of the SEATA serializer: big-endian integers and length-prefixed UTF-8
//! strings, read from untrusted bytes and written into a [`BytesMut`].
//!
//! Every read checks `remaining()` first and returns [`ProtocolError::Truncated`] rather than
//! panicking; a string is allocated only after its length has been checked against the bytes
//! actually present, so no length field can make us allocate more than the frame holds.
//!
//! Body strings (spec 2.2) cannot tell null from empty: both are length 0. We model them as
//! `String`, empty meaning "absent".

use bytes::{Buf, BufMut, BytesMut};

use crate::error::{ProtocolError, Result};

/// Largest value of a `Str16` field: Java casts the byte length to a `short`, so anything
/// longer would be written with a negative length and break the message (spec 2.2).
pub const STR16_MAX: usize = i16::MAX as usize;

/// Decode a value from the front of `buf`, advancing it.
pub trait Decode: Sized {
    /// Reads one value; `buf` is left just past it.
    fn decode(buf: &mut &[u8]) -> Result<Self>;
}

/// Append a value's wire form to `buf`.
pub trait Encode {
    /// Writes the value; fails only when a field does not fit its length prefix.
    fn encode(&self, buf: &mut BytesMut) -> Result<()>;
}

#[inline]
fn need(buf: &[u8], n: usize, what: &'static str) -> Result<()> {
    if buf.len() < n {
        return Err(ProtocolError::Truncated {
            what,
            needed: n,
            remaining: buf.len(),
        });
    }
    Ok(())
}

/// Reads one byte.
#[inline]
pub fn get_u8(buf: &mut &[u8], what: &'static str) -> Result<u8> {
    need(buf, 1, what)?;
    Ok(buf.get_u8())
}

/// Reads a big-endian `i16`.
#[inline]
pub fn get_i16(buf: &mut &[u8], what: &'static str) -> Result<i16> {
    need(buf, 2, what)?;
    Ok(buf.get_i16())
}

/// Reads a big-endian `i32`.
#[inline]
pub fn get_i32(buf: &mut &[u8], what: &'static str) -> Result<i32> {
    need(buf, 4, what)?;
    Ok(buf.get_i32())
}

/// Reads a big-endian `i64`.
#[inline]
pub fn get_i64(buf: &mut &[u8], what: &'static str) -> Result<i64> {
    need(buf, 8, what)?;
    Ok(buf.get_i64())
}

/// Splits `n` bytes off the front of `buf`.
#[inline]
pub fn get_slice<'a>(buf: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8]> {
    need(buf, n, what)?;
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

#[inline]
fn get_utf8(buf: &mut &[u8], len: i64, what: &'static str) -> Result<String> {
    if len < 0 {
        return Err(ProtocolError::NegativeLength { what, len });
    }
    // `len` is at most i32::MAX here, so the cast is lossless on every supported target.
    let bytes = get_slice(buf, len as usize, what)?;
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(ProtocolError::InvalidUtf8(what)),
    }
}

/// Reads a `Str16`: `i16` byte length, then UTF-8. Length 0 gives the empty string.
#[inline]
pub fn get_str16(buf: &mut &[u8], what: &'static str) -> Result<String> {
    let len = get_i16(buf, what)?;
    get_utf8(buf, i64::from(len), what)
}

/// Reads a `Str32`: `i32` byte length, then UTF-8. Length 0 gives the empty string.
#[inline]
pub fn get_str32(buf: &mut &[u8], what: &'static str) -> Result<String> {
    let len = get_i32(buf, what)?;
    get_utf8(buf, i64::from(len), what)
}

/// Writes a `Str16`, refusing strings Java could not length-prefix (over 32767 bytes).
#[inline]
pub fn put_str16(buf: &mut BytesMut, s: &str, what: &'static str) -> Result<()> {
    let len = i16::try_from(s.len()).map_err(|_| ProtocolError::TooLong {
        what,
        len: s.len(),
        max: STR16_MAX,
    })?;
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// Writes a `Str32`.
#[inline]
pub fn put_str32(buf: &mut BytesMut, s: &str, what: &'static str) -> Result<()> {
    let len = i32::try_from(s.len()).map_err(|_| ProtocolError::TooLong {
        what,
        len: s.len(),
        max: i32::MAX as usize,
    })?;
    buf.put_i32(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// Fails with [`ProtocolError::TrailingBytes`] unless `buf` is fully consumed.
#[inline]
pub fn expect_end(buf: &[u8]) -> Result<()> {
    if buf.is_empty() {
        Ok(())
    } else {
        Err(ProtocolError::TrailingBytes(buf.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str16_round_trips_utf8() {
        let mut out = BytesMut::new();
        put_str16(&mut out, "事务-ü", "s").unwrap();
        let mut rd = &out[..];
        assert_eq!(get_str16(&mut rd, "s").unwrap(), "事务-ü");
        assert!(rd.is_empty());
    }

    #[test]
    fn rejects_str16_over_java_short() {
        let long = "x".repeat(STR16_MAX + 1);
        let err = put_str16(&mut BytesMut::new(), &long, "xid").unwrap_err();
        assert!(matches!(err, ProtocolError::TooLong { what: "xid", .. }));
        put_str16(&mut BytesMut::new(), &long[1..], "xid").unwrap();
    }

    #[test]
    fn rejects_length_past_end_without_allocating() {
        // claims 2 GiB, holds 3 bytes
        let bytes = [0x7f, 0xff, 0xff, 0xff, b'a', b'b', b'c'];
        let err = get_str32(&mut &bytes[..], "lockKey").unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::Truncated {
                what: "lockKey",
                ..
            }
        ));
    }

    #[test]
    fn rejects_negative_length_and_bad_utf8() {
        let neg = [0xff, 0xfe];
        assert!(matches!(
            get_str16(&mut &neg[..], "x").unwrap_err(),
            ProtocolError::NegativeLength { .. }
        ));
        let bad = [0x00, 0x02, 0xc3, 0x28];
        assert_eq!(
            get_str16(&mut &bad[..], "x").unwrap_err(),
            ProtocolError::InvalidUtf8("x")
        );
    }
}
