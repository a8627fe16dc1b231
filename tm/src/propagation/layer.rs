//! [`XidLayer`]: a tower layer that binds the XID of an incoming HTTP request (its `TX_XID`
//! header) for the inner service, so handlers, the rm crate and outgoing calls see it. Works
//! with axum (`Router::layer`) and any tower-based HTTP server.

use std::task::{Context, Poll};

use http::Request;
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;

use super::xid_from_headers;
use crate::context::{current_bound_xid, scope_xid, sync_scope_xid, BoundXid};

/// Binds the request's `TX_XID` header as the current XID for the inner service. A request
/// without the header keeps whatever XID is already bound (normally none).
#[derive(Debug, Clone, Copy, Default)]
pub struct XidLayer;

impl XidLayer {
    /// The layer.
    pub fn new() -> Self {
        XidLayer
    }
}

impl<S> Layer<S> for XidLayer {
    type Service = XidService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        XidService { inner }
    }
}

/// The service [`XidLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct XidService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for XidService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<BoundXid, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Empty = "none bound" for `current_xid`, so a request without the header runs
        // outside any transaction unless the caller itself is inside one.
        let xid = xid_from_headers(req.headers())
            .map(BoundXid::Known)
            .or_else(current_bound_xid)
            .unwrap_or(BoundXid::Known(String::new()));
        // Bound around `call` too: some services do work before their future is polled.
        let fut = sync_scope_xid(xid.clone(), || self.inner.call(req));
        scope_xid(xid, fut)
    }
}

#[cfg(test)]
mod tests {
    use std::future::{ready, Ready};

    use super::*;
    use crate::{current_xid, XID_HEADER};

    /// Answers with the XID it saw while called and while its future ran.
    #[derive(Clone)]
    struct Echo;

    impl Service<Request<()>> for Echo {
        type Response = (Option<String>, Option<String>);
        type Error = std::convert::Infallible;
        type Future = futures::future::Map<
            Ready<Option<String>>,
            fn(Option<String>) -> Result<Self::Response, Self::Error>,
        >;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            use futures::FutureExt;
            ready(current_xid()).map(|at_call| Ok((at_call, current_xid())))
        }
    }

    #[tokio::test]
    async fn binds_the_header_xid_for_the_inner_service() {
        let mut svc = XidLayer::new().layer(Echo);
        let req = Request::builder()
            .header(XID_HEADER, "10.0.0.1:8091:7")
            .body(())
            .unwrap();
        let (at_call, in_future) = svc.call(req).await.unwrap();
        assert_eq!(at_call.as_deref(), Some("10.0.0.1:8091:7"));
        assert_eq!(in_future.as_deref(), Some("10.0.0.1:8091:7"));
        assert_eq!(current_xid(), None);
    }

    #[tokio::test]
    async fn request_without_header_runs_outside_a_transaction() {
        let mut svc = XidLayer::new().layer(Echo);
        let (at_call, in_future) = svc.call(Request::new(())).await.unwrap();
        assert_eq!((at_call, in_future), (None, None));
    }
}
