//! The web UI at `/ui` on the admin listener: server-rendered pages (minijinja templates compiled
//! into the binary, HTML auto-escaping on, a separate environment from the workflows' sandbox)
//! over the store and the loaded workflows. It only reads; its one action, Replay, goes through the
//! admin API's replay path, and the worker executes the run.
//!
//! Access follows the admin API: open on loopback without a token; with a token, a bearer header,
//! or a session cookie set by the login form (or by `?token=` once). The Replay form carries a
//! CSRF token: an HMAC, under a per-process random key, of a random value kept in a
//! `SameSite=Strict` cookie.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use minijinja::{AutoEscape, Environment};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use sha2::Sha256;

mod activity;
mod chart;
mod downloads;
mod pages;
mod session;
mod views;

use activity::*;
use downloads::*;
use pages::*;
use session::*;
use views::*;

use super::AppState;
use super::admin::{
    ReplayAsk, ReplayError, StartError, bearer_token, replay, runs_page, same_secret,
    start_by_hand, workflows_overview,
};
use super::pause::{CancelError, PauseError, Via, cancel, pause, resume};
use super::query::{self, ListQuery};
use crate::run::Event;
use crate::run::RunStatus;
use crate::store::{CancelRequest, PauseRequest};
use crate::store::{RunDetail, RunSummary};

/// The pages' templates, compiled into the binary.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("base.html")),
    ("runs.html", include_str!("runs.html")),
    ("run.html", include_str!("run.html")),
    ("event.html", include_str!("event.html")),
    ("workflows.html", include_str!("workflows.html")),
    ("workflow.html", include_str!("workflow.html")),
    ("chart.html", include_str!("chart.html")),
    ("rejected.html", include_str!("rejected.html")),
    ("login.html", include_str!("login.html")),
    ("error.html", include_str!("error.html")),
    ("bulk.html", include_str!("bulk.html")),
];

/// What the pages share: the templates, the admin token, the CSRF key.
pub struct Ui {
    env: Environment<'static>,
    token: Option<String>,
    /// The session cookie's value when a token is set: derived from the token, never the token.
    session: Option<String>,
    csrf_key: [u8; 32],
}

impl Ui {
    pub fn new(token: Option<String>) -> Self {
        let mut env = Environment::new();
        // Everything a page shows comes from webhooks: escaped, always.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        for (name, source) in TEMPLATES {
            if let Err(err) = env.add_template(name, source) {
                // A unit test parses every template; were one broken, its page answers 500.
                tracing::error!(template = name, error = %err, "a UI template does not parse");
            }
        }
        let session = token
            .as_deref()
            .map(|t| hex(&hmac(t.as_bytes(), b"hookflow ui session")));
        Self {
            env,
            token,
            session,
            csrf_key: random_bytes(),
        }
    }

    pub(super) fn render(&self, name: &str, context: Json) -> Response {
        self.render_status(StatusCode::OK, name, context)
    }

    pub(super) fn render_status(&self, status: StatusCode, name: &str, context: Json) -> Response {
        let rendered = self
            .env
            .get_template(name)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&context))));
        match rendered {
            Ok(html) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(err) => {
                tracing::error!(template = name, error = %err, "a UI page cannot be rendered");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }

    pub(super) fn error_page(&self, status: StatusCode, title: &str, message: &str) -> Response {
        self.render_status(
            status,
            "error.html",
            json!({ "title": title, "message": message }),
        )
    }
}

pub fn router(token: Option<String>) -> Router<AppState> {
    let ui = Arc::new(Ui::new(token));
    let guard = Arc::clone(&ui);
    let pages = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/runs", get(runs_list))
        .route("/ui/runs/{id}", get(run_page))
        .route("/ui/runs/{id}/replay", axum::routing::post(replay_form))
        .route("/ui/runs/{id}/cancel", axum::routing::post(cancel_form))
        .route(
            "/ui/workflows/{name}/pause",
            axum::routing::post(pause_form),
        )
        .route(
            "/ui/workflows/{name}/resume",
            axum::routing::post(resume_form),
        )
        .route("/ui/runs/{id}/event", get(event_page))
        .route("/ui/runs/{id}/event/payload", get(event_payload))
        .route("/ui/runs/{id}/event/headers", get(event_headers))
        .route("/ui/workflows", get(workflows_page))
        .route("/ui/workflows/{name}", get(workflow_page))
        .route(
            "/ui/workflows/{name}/start",
            axum::routing::post(start_form),
        )
        .route(
            "/ui/workflows/{name}/replay",
            axum::routing::post(bulk_replay_form),
        )
        .route("/ui/rejected", get(rejected_page))
        .layer(axum::middleware::from_fn(move |request, next| {
            authorize(Arc::clone(&guard), request, next)
        }));
    Router::new()
        .route("/ui/login", get(login_page).post(login))
        .merge(pages)
        .layer(Extension(ui))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse_and_escape_what_they_show() {
        let ui = Ui::new(None);
        for (name, _) in TEMPLATES {
            assert!(ui.env.get_template(name).is_ok(), "{name} does not parse");
        }
        let response = ui.error_page(StatusCode::NOT_FOUND, "<b>x</b>", "a & b");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let env = &ui.env;
        let html = env
            .get_template("error.html")
            .expect("template")
            .render(minijinja::context! { title => "<script>alert(1)</script>", message => "m" })
            .expect("render");
        assert!(
            html.contains("<h1>&lt;script&gt;alert(1)&lt;&#x2f;script&gt;</h1>"),
            "{html}"
        );
        assert!(!html.contains("<script>alert(1)"));
    }

    #[test]
    fn curl_reproduces_method_path_query_headers_and_body() {
        let mut headers = serde_json::Map::new();
        headers.insert("host".into(), json!("example:8080"));
        headers.insert("content-type".into(), json!("application/json"));
        headers.insert("x-note".into(), json!("it's"));
        let mut query = serde_json::Map::new();
        query.insert("a".into(), json!("1 2"));
        let event = Event {
            id: "e".into(),
            method: "POST".into(),
            path: "/hooks/x".into(),
            params: Default::default(),
            query,
            headers,
            body: json!({"k": "v"}),
            raw: br#"{"k": "v's"}"#.to_vec(),
            received_at: Utc::now(),
            trigger: Default::default(),
            trace: None,
        };
        let command = curl_command("http://127.0.0.1:8080", &event);
        assert_eq!(
            command,
            "curl -X POST 'http://127.0.0.1:8080/hooks/x?a=1+2' \\\n  -H 'content-type: application/json' \\\n  -H 'x-note: it'\\''s' \\\n  --data-binary '{\"k\": \"v'\\''s\"}'\n"
        );
    }

    #[test]
    fn logins_only_return_to_ui_pages() {
        assert_eq!(safe_next(Some("/ui/runs/abc")), "/ui/runs/abc");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/runs");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui/runs");
        assert_eq!(safe_next(None), "/ui/runs");
    }
}
