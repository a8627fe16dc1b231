//! Carrying the XID between services in the `TX_XID` HTTP header, as Java Seata's HTTP
//! integration does: read and write it on an `http::HeaderMap` ([`xid_from_headers`],
//! [`insert_xid`]), bind it for a server's handlers ([`XidLayer`], feature `tower` or `axum`),
//! and add it to outgoing client requests ([`RequestBuilderXidExt`], feature `reqwest`).

use http::{HeaderMap, HeaderValue};

use crate::context::XID_HEADER;

#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "reqwest")]
mod reqwest;

#[cfg(feature = "reqwest")]
pub use self::reqwest::RequestBuilderXidExt;
#[cfg(feature = "tower")]
pub use layer::{XidLayer, XidService};

/// The XID in the `TX_XID` header, if present, valid text and not blank (surrounding spaces
/// are trimmed).
pub fn xid_from_headers(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(XID_HEADER)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Sets the `TX_XID` header to `xid`. Returns false (and leaves the headers alone) when `xid`
/// is blank or not a valid header value.
pub fn insert_xid(headers: &mut HeaderMap, xid: &str) -> bool {
    let xid = xid.trim();
    match HeaderValue::from_str(xid) {
        Ok(value) if !xid.is_empty() => {
            headers.insert(XID_HEADER, value);
            true
        }
        _ => false,
    }
}

/// Sets the `TX_XID` header to the task's current XID, if one is bound. Returns whether it did.
pub fn insert_current_xid(headers: &mut HeaderMap) -> bool {
    crate::context::current_xid().is_some_and(|xid| insert_xid(headers, &xid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut h = HeaderMap::new();
        assert!(insert_xid(&mut h, "10.0.0.1:8091:42"));
        assert_eq!(xid_from_headers(&h).as_deref(), Some("10.0.0.1:8091:42"));
        assert!(
            h.contains_key("tx_xid"),
            "header names are case-insensitive"
        );
    }

    #[test]
    fn blank_or_invalid_values_are_ignored() {
        let mut h = HeaderMap::new();
        assert!(!insert_xid(&mut h, "  "));
        assert!(!insert_xid(&mut h, "bad\nxid"));
        assert!(h.is_empty());
        h.insert(XID_HEADER, HeaderValue::from_static("   "));
        assert_eq!(xid_from_headers(&h), None);
    }

    #[tokio::test]
    async fn current_xid_is_inserted_only_when_bound() {
        let mut h = HeaderMap::new();
        assert!(!insert_current_xid(&mut h));
        crate::with_xid("x:1:2", async { assert!(insert_current_xid(&mut h)) }).await;
        assert_eq!(xid_from_headers(&h).as_deref(), Some("x:1:2"));
    }
}
