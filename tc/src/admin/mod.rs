//! The operator's side of the TC on the HTTP listener: a JSON admin API under `/admin/v1`,
//! the console page at `/console` (and `/`), and the `seata-tc admin ...` command-line client
//! over that API ([`cli`]).
//!
//! Front-end only: every handler is one call on the [`Coordinator`] (Seata sessions, locks),
//! the [`Registry`] (connected clients) or the [`DtmEngine`]; what an action may do is decided
//! there (`coordinator/admin.rs`). Reads are served to loopback peers unless
//! `[admin] public-read`; actions need the bearer token ([`auth`]).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/admin/v1/overview` | counts by status, locks, clients |
//! | GET | `/admin/v1/transactions?kind&status&mode&application&min_age_s&stuck_s&offset&limit` | list |
//! | GET | `/admin/v1/transactions/{xid or gid}` | one, with branches, history, audit |
//! | GET | `/admin/v1/locks?resource&xid&table` | row locks |
//! | GET | `/admin/v1/clients` | application → ip → port, role, resources |
//! | GET | `/admin/v1/audit?xid&limit` | audit records |
//! | POST | `/admin/v1/transactions/{id}/{retry,rollback,commit,delete}` | act |
//! | POST | `/admin/v1/transactions/{xid}/branches/{branch_id}/give-up` | give a branch up |

mod act;
pub mod auth;
pub mod cli;
mod cli_table;
mod console;
mod error;
mod read;
mod views;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::coordinator::Coordinator;
use crate::dtm::engine::DtmEngine;
use crate::registry::Registry;
pub use auth::Auth;
pub use error::ApiError;

/// What the admin handlers work on.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Seata sessions and row locks.
    pub coord: Arc<Coordinator>,
    /// Connected TMs and RMs.
    pub registry: Arc<Registry>,
    /// DTM transactions, when the DTM engine runs.
    pub dtm: Option<Arc<DtmEngine>>,
    /// Access rules.
    pub auth: Auth,
}

/// The admin API and console routes, to merge into the HTTP listener's router.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/admin/v1/overview", get(read::overview))
        .route("/admin/v1/transactions", get(read::list))
        .route("/admin/v1/transactions/{tx}", get(read::show))
        .route("/admin/v1/transactions/{tx}/{action}", post(act::act))
        .route(
            "/admin/v1/transactions/{tx}/branches/{branch_id}/give-up",
            post(act::give_up),
        )
        .route("/admin/v1/locks", get(read::locks))
        .route("/admin/v1/clients", get(read::clients))
        .route("/admin/v1/audit", get(read::audit))
        .merge(console::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ));
    api.with_state(state)
}
