//! The TC's HTTP listener (`http-listen`): one axum [`Router`] that modules add their routes
//! to (DTM's API today; metrics and an admin API can be merged the same way), served until
//! shutdown.

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Every module's routes in one router.
pub fn router(parts: impl IntoIterator<Item = Router>) -> Router {
    parts.into_iter().fold(Router::new(), Router::merge)
}

/// Serves `router` on `listener` until `token` is cancelled; requests in flight then finish.
pub async fn serve(listener: TcpListener, router: Router, token: CancellationToken) {
    let addr = listener.local_addr().ok();
    // With the peer address (`ConnectInfo`): the admin API serves reads to loopback only.
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(token.cancelled_owned())
    .await;
    match served {
        Ok(()) => info!(?addr, "http listener stopped"),
        Err(e) => error!(?addr, error = %e, "http listener failed"),
    }
}
