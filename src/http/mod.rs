//! The HTTP surface: webhook ingress (match, limit, parse, persist, answer; it never runs a step)
//! and the admin API, the web UI and `/metrics` on their own listener.

pub mod access;
pub mod admin;
pub mod body;
pub mod bulk_replay;
pub mod ingress;
pub mod limit;
pub mod listen;
pub mod pause;
pub mod query;
pub mod rejected;
pub mod tls;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::Store;
use crate::worker::Worker;
use crate::workflow::{SharedRegistry, SharedReloadStatus};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub registry: SharedRegistry,
    pub store: Store,
    pub worker: Worker,
    pub sync_timeout: Duration,
    pub body_limits: Arc<body::BodyLimits>,
    pub limiter: Arc<limit::Limiter>,
    pub secrets: crate::secrets::SecretSource,
    /// Refused requests, newest first, for the admin API, the UI and metrics.
    pub rejected: Arc<rejected::RejectedLog>,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<Vec<crate::net::Cidr>>,
    /// How long a client may take to send a body.
    pub body_timeout: Duration,
    /// The outcome of the last workflows reload, shown by the admin API and the UI.
    pub reload: SharedReloadStatus,
    /// The webhook listener's base URL, for the UI's "copy as curl".
    pub webhook_url: String,
    /// Where request spans go; `None` when traces are off.
    pub tracer: Option<crate::observe::trace::Tracer>,
}

pub fn webhook_router(state: AppState) -> Router {
    Router::new().fallback(ingress::ingest).with_state(state)
}

pub fn admin_router(state: AppState, access: access::AdminAccess) -> Router {
    admin::router(state, access)
}

/// A JSON error answer: `{"error": reason}`.
pub fn error_response(status: StatusCode, reason: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": reason.into() });
    (status, axum::Json(body)).into_response()
}
