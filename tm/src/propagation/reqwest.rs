//! [`RequestBuilderXidExt`]: adds the current XID to an outgoing `reqwest` request, so the
//! service called joins the caller's global transaction.

use super::XID_HEADER;
use crate::context::current_xid;

/// Extension for [`reqwest::RequestBuilder`].
pub trait RequestBuilderXidExt {
    /// Adds the `TX_XID` header with the task's current XID; unchanged when none is bound.
    fn with_current_xid(self) -> Self;

    /// Adds the `TX_XID` header with `xid` (e.g. a task that carries an XID it was handed).
    fn with_xid(self, xid: &str) -> Self;
}

impl RequestBuilderXidExt for reqwest::RequestBuilder {
    fn with_current_xid(self) -> Self {
        match current_xid() {
            Some(xid) => self.with_xid(&xid),
            None => self,
        }
    }

    fn with_xid(self, xid: &str) -> Self {
        let xid = xid.trim();
        if xid.is_empty() {
            return self;
        }
        self.header(XID_HEADER, xid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(builder: reqwest::RequestBuilder) -> Option<String> {
        let req = builder.build().unwrap();
        super::super::xid_from_headers(req.headers())
    }

    #[tokio::test]
    async fn adds_the_bound_xid_only() {
        let client = reqwest::Client::new();
        let url = "http://127.0.0.1:9/orders";
        assert_eq!(header_of(client.get(url).with_current_xid()), None);
        let with = crate::with_xid("10.0.0.1:8091:9", async {
            header_of(client.post(url).with_current_xid())
        })
        .await;
        assert_eq!(with.as_deref(), Some("10.0.0.1:8091:9"));
        assert_eq!(
            header_of(client.get(url).with_xid("a:1:2")).as_deref(),
            Some("a:1:2")
        );
    }
}
