//! Who may do what: actions need `Authorization: Bearer <token>` (`[admin] token` or the first
//! line of `token-file`); with no token configured they are disabled. Reads (and the console)
//! are served to loopback peers only unless `public-read` is set.
//!
//! The token is compared in constant time so its bytes cannot be guessed from response times.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{error, warn};

use super::error::ApiError;
use super::AdminState;
use crate::config::AdminConfig;

/// The resolved access rules.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    token: Option<String>,
    public_read: bool,
}

impl Auth {
    /// From the config: the token file is read once, at start. An unreadable or empty token
    /// file disables actions (and says so in the log) rather than stopping the TC.
    pub fn from_config(c: &AdminConfig) -> Self {
        let mut token = c.token.clone().filter(|t| !t.trim().is_empty());
        if let Some(path) = &c.token_file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let first = text.lines().next().unwrap_or("").trim().to_owned();
                    if first.is_empty() {
                        error!(path = %path.display(), "admin.token-file is empty; admin actions are disabled");
                    } else {
                        token = Some(first);
                    }
                }
                Err(e) => {
                    error!(path = %path.display(), error = %e, "cannot read admin.token-file; admin actions are disabled")
                }
            }
        }
        Auth {
            token,
            public_read: c.public_read,
        }
    }

    /// Whether actions are enabled.
    pub fn actions_enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Reads: from loopback, or from anywhere with `public-read` (an unknown peer is not
    /// loopback).
    fn read_allowed(&self, peer: Option<SocketAddr>) -> bool {
        self.public_read || peer.is_some_and(|p| p.ip().is_loopback())
    }

    fn check_token(&self, header: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Err(ApiError::Forbidden(
                "admin actions are disabled: set [admin] token or token-file in the TC's config and restart".into(),
            ));
        };
        let given = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: reads need a loopback peer (or `public-read`), actions the bearer token.
pub async fn guard(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let mutating = req.method() != Method::GET && req.method() != Method::HEAD;
    if mutating {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = state.auth.check_token(header) {
            warn!(?peer, path = %req.uri().path(), "admin action refused: {e}");
            return e.into_response();
        }
    } else if !state.auth.read_allowed(peer) {
        return ApiError::Forbidden(
            "the admin API and console answer loopback only: use an SSH tunnel, or set [admin] public-read = true".into(),
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_from_loopback_only_unless_public() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let local6: SocketAddr = "[::1]:5000".parse().unwrap();
        let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let private = Auth::default();
        assert!(private.read_allowed(Some(local)) && private.read_allowed(Some(local6)));
        assert!(!private.read_allowed(Some(remote)) && !private.read_allowed(None));
        let public = Auth {
            token: None,
            public_read: true,
        };
        assert!(public.read_allowed(Some(remote)));
    }

    #[test]
    fn token_file_first_line_wins_and_empty_disables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  from-file  \nsecond line\n").unwrap();
        let c = AdminConfig {
            token: Some("inline".into()),
            token_file: Some(path.clone()),
            public_read: false,
        };
        assert_eq!(Auth::from_config(&c).token.as_deref(), Some("from-file"));
        std::fs::write(&path, "\n").unwrap();
        let c = AdminConfig {
            token: None,
            token_file: Some(path),
            public_read: false,
        };
        assert!(!Auth::from_config(&c).actions_enabled());
    }

    #[test]
    fn token_rules() {
        let off = Auth::default();
        assert!(matches!(
            off.check_token(Some("Bearer x")),
            Err(ApiError::Forbidden(_))
        ));
        let on = Auth {
            token: Some("s3cret".into()),
            public_read: false,
        };
        assert!(on.check_token(Some("Bearer s3cret")).is_ok());
        assert!(matches!(
            on.check_token(Some("Bearer s3cre")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(on.check_token(None), Err(ApiError::Unauthorized)));
    }
}
