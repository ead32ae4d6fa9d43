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

use super::AppState;
use super::admin::{
    ReplayError, StartError, bearer_token, replay, runs_page, same_secret, start_by_hand,
    workflows_overview,
};
use super::query::{self, ListQuery};
use crate::run::Event;
#[cfg(test)]
use crate::run::RunStatus;
use crate::store::{RunDetail, RunSummary};

const SESSION_COOKIE: &str = "hookflow_session";
const CSRF_COOKIE: &str = "hookflow_csrf";

/// The pages' templates, compiled into the binary.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("ui/base.html")),
    ("runs.html", include_str!("ui/runs.html")),
    ("run.html", include_str!("ui/run.html")),
    ("event.html", include_str!("ui/event.html")),
    ("workflows.html", include_str!("ui/workflows.html")),
    ("rejected.html", include_str!("ui/rejected.html")),
    ("login.html", include_str!("ui/login.html")),
    ("error.html", include_str!("ui/error.html")),
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

    fn render(&self, name: &str, context: Json) -> Response {
        self.render_status(StatusCode::OK, name, context)
    }

    fn render_status(&self, status: StatusCode, name: &str, context: Json) -> Response {
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

    fn error_page(&self, status: StatusCode, title: &str, message: &str) -> Response {
        self.render_status(
            status,
            "error.html",
            json!({ "title": title, "message": message }),
        )
    }

    fn csrf_token(&self, nonce: &str) -> String {
        hex(&hmac(&self.csrf_key, nonce.as_bytes()))
    }

    /// The CSRF token for a page's forms, and the cookie value to set when the browser has none.
    fn csrf_for(&self, headers: &HeaderMap) -> (String, Option<String>) {
        match cookie(headers, CSRF_COOKIE).filter(|n| n.len() == 64) {
            Some(nonce) => (self.csrf_token(&nonce), None),
            None => {
                let nonce = hex(&random_bytes());
                (self.csrf_token(&nonce), Some(nonce))
            }
        }
    }

    /// A form came from a page of this UI in this browser.
    fn genuine(&self, headers: &HeaderMap, token: &str) -> bool {
        cookie(headers, CSRF_COOKIE)
            .is_some_and(|nonce| same_secret(token, &self.csrf_token(&nonce)))
    }

    fn stale_form(&self) -> Response {
        self.error_page(
            StatusCode::FORBIDDEN,
            "Form refused",
            "The form is stale or did not come from this UI. Open the page again and retry.",
        )
    }
}

/// A page with forms: the CSRF cookie goes with it when the browser had none.
fn with_csrf_cookie(response: Response, fresh: Option<String>) -> Response {
    match fresh {
        Some(nonce) => with_cookie(response, CSRF_COOKIE, &nonce),
        None => response,
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
        .route("/ui/runs/{id}/event", get(event_page))
        .route("/ui/workflows", get(workflows_page))
        .route(
            "/ui/workflows/{name}/start",
            axum::routing::post(start_form),
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

/// Let the request through when it carries the token (header, session cookie, or `?token=`
/// once, which sets the cookie); send a browser to the login form otherwise.
async fn authorize(ui: Arc<Ui>, request: Request, next: Next) -> Response {
    let (Some(token), Some(session)) = (&ui.token, &ui.session) else {
        return next.run(request).await;
    };
    let headers = request.headers();
    if bearer_token(headers).is_some_and(|given| same_secret(given, token))
        || cookie(headers, SESSION_COOKIE).is_some_and(|given| same_secret(&given, session))
    {
        return next.run(request).await;
    }
    let uri = request.uri().clone();
    let pairs: Vec<(String, String)> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let given = pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v);
    if given.is_some_and(|given| same_secret(given, token)) {
        // The token leaves the address bar: the cookie carries the session from here on.
        let rest: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "token").collect();
        let query = serde_urlencoded::to_string(&rest).unwrap_or_default();
        let target = if query.is_empty() {
            uri.path().to_owned()
        } else {
            format!("{}?{query}", uri.path())
        };
        return with_cookie(
            Redirect::to(&target).into_response(),
            SESSION_COOKIE,
            session,
        );
    }
    if request.method() == axum::http::Method::GET {
        let next_page = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/ui/runs");
        let query = serde_urlencoded::to_string([("next", next_page)]).unwrap_or_default();
        return Redirect::to(&format!("/ui/login?{query}")).into_response();
    }
    (StatusCode::UNAUTHORIZED, "unauthorized").into_response()
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Only pages of the UI are followed after a login: no open redirect.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/ui/runs",
    }
}

async fn login_page(Extension(ui): Extension<Arc<Ui>>, RawQuery(q): RawQuery) -> Response {
    // A query that cannot be read only loses where to go after signing in.
    let q: LoginQuery = query::read(q.as_deref()).unwrap_or_default();
    if ui.token.is_none() {
        return Redirect::to("/ui/runs").into_response();
    }
    ui.render(
        "login.html",
        json!({ "page": "login", "next": safe_next(q.next.as_deref()) }),
    )
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn login(Extension(ui): Extension<Arc<Ui>>, body: Bytes) -> Response {
    let form: LoginForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let next = safe_next(form.next.as_deref()).to_owned();
    match (&ui.token, &ui.session) {
        (Some(token), Some(session)) if same_secret(&form.token, token) => {
            with_cookie(Redirect::to(&next).into_response(), SESSION_COOKIE, session)
        }
        (Some(_), _) => ui.render_status(
            StatusCode::UNAUTHORIZED,
            "login.html",
            json!({ "page": "login", "next": next, "failed": true }),
        ),
        _ => Redirect::to(&next).into_response(),
    }
}

const STATUSES: &[&str] = &[
    "queued",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "filtered",
    "cancelled",
];

async fn runs_list(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    RawQuery(query): RawQuery,
) -> Response {
    let filter = match query::read::<ListQuery>(query.as_deref())
        .and_then(|q| q.filter(query::Empty::Any))
    {
        Ok(filter) => filter,
        Err(message) => return ui.error_page(StatusCode::BAD_REQUEST, "Bad filter", &message),
    };
    let page = match runs_page(&state, filter.clone()).await {
        Ok(page) => page,
        Err(err) => {
            tracing::error!(error = %err, "listing runs failed");
            return ui.error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store cannot be read",
                "See the server's log.",
            );
        }
    };
    let workflows: Vec<String> = state
        .registry
        .read()
        .map(|r| r.workflows.keys().cloned().collect())
        .unwrap_or_default();
    let workflow = filter.workflow.clone().unwrap_or_default();
    let status = filter.status.map(|s| s.as_str()).unwrap_or_default();
    let url = |cursor: Option<&str>| {
        let mut pairs = Vec::new();
        if !workflow.is_empty() {
            pairs.push(("workflow", workflow.as_str()));
        }
        if !status.is_empty() {
            pairs.push(("status", status));
        }
        if let Some(cursor) = cursor {
            pairs.push(("cursor", cursor));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() {
            "/ui/runs".to_owned()
        } else {
            format!("/ui/runs?{query}")
        }
    };
    let runs: Vec<Json> = page.runs.iter().map(run_view).collect();
    ui.render(
        "runs.html",
        json!({
            "page": "runs",
            "runs": runs,
            "workflows": workflows,
            "statuses": STATUSES,
            "filter": { "workflow": workflow, "status": status },
            "cursor": filter.before.is_some(),
            "auto_refresh": filter.before.is_none(),
            "first_url": url(None),
            "next_url": page.next.as_deref().map(|c| url(Some(c))),
        }),
    )
}

async fn load_run(state: &AppState, ui: &Ui, id: &str) -> Result<RunDetail, Response> {
    match state.store.run(id).await {
        Ok(Some(detail)) => Ok(detail),
        Ok(None) => Err(ui.error_page(
            StatusCode::NOT_FOUND,
            "No such run",
            &format!("No run has the id {id}."),
        )),
        Err(err) => {
            tracing::error!(error = %err, "reading a run failed");
            Err(ui.error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store cannot be read",
                "See the server's log.",
            ))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RunPageQuery {
    replayed: Option<u32>,
}

async fn run_page(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // `replayed` only adds a notice: a value that cannot be read leaves it out.
    let query: RunPageQuery = query::read(query.as_deref()).unwrap_or_default();
    let detail = match load_run(&state, &ui, &id).await {
        Ok(detail) => detail,
        Err(page) => return page,
    };
    render_run(&ui, &detail, &headers, query.replayed, None, StatusCode::OK)
}

fn render_run(
    ui: &Ui,
    detail: &RunDetail,
    headers: &HeaderMap,
    replayed: Option<u32>,
    problem: Option<String>,
    status: StatusCode,
) -> Response {
    let (csrf, fresh) = ui.csrf_for(headers);
    let mut run = run_view(&detail.run);
    run["finished"] = json!(detail.run.status.is_final());
    run["full_error"] = json!(detail.run.error);
    run["started"] = json!(detail.run.started_at.map(time_text));
    run["finished_at"] = json!(detail.run.finished_at.map(time_text));
    let response = ui.render_status(
        status,
        "run.html",
        json!({
            "page": "runs",
            "run": run,
            "event": {
                "method": detail.event.method,
                "path": detail.event.path,
                "trigger": detail.event.trigger.kind(),
            },
            "steps": step_views(detail),
            "csrf": csrf,
            "replayed": replayed,
            "problem": problem,
        }),
    );
    with_csrf_cookie(response, fresh)
}

#[derive(Debug, Default, Deserialize)]
struct ReplayForm {
    #[serde(default)]
    csrf: String,
    from_start: Option<String>,
}

async fn replay_form(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: ReplayForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if !ui.genuine(&headers, &form.csrf) {
        return ui.stale_form();
    }
    let from_start = form.from_start.as_deref() == Some("true");
    match replay(&state, &id, from_start).await {
        Ok((run_id, attempt)) => {
            Redirect::to(&format!("/ui/runs/{run_id}?replayed={attempt}")).into_response()
        }
        Err(ReplayError::NotFound(_)) => ui.error_page(
            StatusCode::NOT_FOUND,
            "No such run",
            &format!("No run has the id {id}."),
        ),
        Err(err) => {
            let status = match err {
                ReplayError::NotFinished(..) => StatusCode::CONFLICT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            match load_run(&state, &ui, &id).await {
                Ok(detail) => {
                    render_run(&ui, &detail, &headers, None, Some(err.to_string()), status)
                }
                Err(page) => page,
            }
        }
    }
}

async fn event_page(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(id): Path<String>,
) -> Response {
    let detail = match load_run(&state, &ui, &id).await {
        Ok(detail) => detail,
        Err(page) => return page,
    };
    let event = &detail.event;
    let headers: Vec<(String, String)> = event
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), json_text(value)))
        .collect();
    let body = if event.body.is_null() {
        String::from_utf8_lossy(&event.raw).into_owned()
    } else {
        serde_json::to_string_pretty(&event.body).unwrap_or_default()
    };
    ui.render(
        "event.html",
        json!({
            "page": "runs",
            "run_id": detail.run.id,
            "run_short_id": detail.run.id,
            "event": {
                "id": event.id,
                "method": event.method,
                "path": event.path,
                "query": query_text(event),
                "received": time_text(event.received_at),
                "headers": headers,
                "body": body,
                "size": event.raw.len(),
            },
            "trigger": trigger_view(&event.trigger),
            "curl": matches!(event.trigger, crate::run::Trigger::Webhook)
                .then(|| curl_command(&state.webhook_url, event)),
        }),
    )
}

#[derive(Debug, Default, Deserialize)]
struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    payload: String,
}

/// The workflows page's Start form: a run by hand on the JSON payload typed in, through the same
/// path as `POST /api/workflows/{name}/start`.
async fn start_form(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: StartForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if !ui.genuine(&headers, &form.csrf) {
        return ui.stale_form();
    }
    match start_by_hand(&state, &name, form.payload.as_bytes(), "ui".to_owned()).await {
        Ok(started) => Redirect::to(&format!("/ui/runs/{}", started.run_id)).into_response(),
        Err(StartError::NoWorkflow(_)) => ui.error_page(
            StatusCode::NOT_FOUND,
            "No such workflow",
            &format!("No workflow is named {name}."),
        ),
        Err(err @ StartError::BadPayload(_)) => {
            ui.error_page(StatusCode::BAD_REQUEST, "Not started", &err.to_string())
        }
        Err(err) => ui.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not started",
            &err.to_string(),
        ),
    }
}

async fn workflows_page(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    headers: HeaderMap,
) -> Response {
    let (workflows, reload) = match workflows_overview(&state, 8).await {
        Ok(overview) => overview,
        Err(err) => {
            tracing::error!(error = %err, "listing workflows failed");
            return ui.error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store cannot be read",
                "See the server's log.",
            );
        }
    };
    let views: Vec<Json> = workflows
        .iter()
        .map(|w| {
            let recent: Vec<Json> = w
                .recent_runs
                .iter()
                .map(|r| json!({ "id": r.id, "status": r.status, "created": time_text(r.created_at) }))
                .collect();
            json!({
                "name": w.name,
                "description": w.description,
                "file": w.file,
                "routes": w.routes,
                "schedules": w.schedules.iter().map(|s| json!({
                    "description": s.description,
                    "next": s.next.map(time_text),
                })).collect::<Vec<_>>(),
                "recent": recent,
                "problems": w.problems,
            })
        })
        .collect();
    let (csrf, fresh) = ui.csrf_for(&headers);
    let response = ui.render(
        "workflows.html",
        json!({
            "page": "workflows",
            "workflows": views,
            "reload": reload,
            "reload_at": reload.at.map(time_text),
            "csrf": csrf,
        }),
    );
    with_csrf_cookie(response, fresh)
}

/// How many refused requests the page shows (the record keeps more; `/api/rejected` has them).
const REJECTED_SHOWN: usize = 200;

async fn rejected_page(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
) -> Response {
    let rejected: Vec<Json> = state
        .rejected
        .recent(REJECTED_SHOWN)
        .iter()
        .map(|r| {
            json!({
                "at": time_text(r.at),
                "method": r.method,
                "path": r.path,
                "workflows": r.workflows,
                "status": r.status,
                "reason": r.reason.as_str(),
                "detail": r.detail,
                "source": r.source.map(|s| s.to_string()),
            })
        })
        .collect();
    let counts: Vec<(&str, u64)> = state.rejected.counts_by_reason().into_iter().collect();
    ui.render(
        "rejected.html",
        json!({
            "page": "rejected",
            "rejected": rejected,
            "counts": counts,
            "shown": REJECTED_SHOWN,
        }),
    )
}

/// A run as a list row shows it.
fn run_view(run: &RunSummary) -> Json {
    json!({
        "id": run.id,
        "short_id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "status": run.status.as_str(),
        "attempt": run.attempt,
        "created": time_text(run.created_at),
        "duration": run.duration_ms().map(|ms| duration_text(ms as f64)),
        "error": run.error.as_deref().map(|e| shorten(e, 140)),
    })
}

/// The steps as a timeline: each bar placed by its start and sized by its duration, relative to
/// the whole run.
fn step_views(detail: &RunDetail) -> Vec<Json> {
    let steps = &detail.steps;
    let start = steps.iter().map(|s| s.started_at).min();
    let end_ms = |s: &crate::run::StepRecord| -> f64 {
        start.map_or(0.0, |t0| {
            (s.started_at - t0).num_microseconds().unwrap_or(0) as f64 / 1000.0 + s.duration_ms
        })
    };
    let total = steps.iter().map(end_ms).fold(0.0_f64, f64::max).max(0.001);
    steps
        .iter()
        .map(|s| {
            let offset = start.map_or(0.0, |t0| {
                (s.started_at - t0).num_microseconds().unwrap_or(0) as f64 / 1000.0
            });
            let offset_pct = (offset / total * 100.0).clamp(0.0, 99.5);
            let width_pct = (s.duration_ms / total * 100.0).clamp(0.5, 100.0 - offset_pct);
            json!({
                "name": s.name,
                "kind": s.kind,
                "status": s.status.as_str(),
                "attempts": s.attempts,
                "filtered": s.filtered,
                "duration": duration_text(s.duration_ms),
                "started": time_text(s.started_at),
                "offset_pct": format!("{offset_pct:.2}"),
                "width_pct": format!("{width_pct:.2}"),
                "error": s.error,
                "input": serde_json::to_string_pretty(&s.input).unwrap_or_default(),
                "output": serde_json::to_string_pretty(&s.output).unwrap_or_default(),
            })
        })
        .collect()
}

/// What started the run, in words for the event page.
fn trigger_view(trigger: &crate::run::Trigger) -> Json {
    use crate::run::Trigger;
    match trigger {
        Trigger::Webhook => json!({ "kind": "webhook", "text": "a webhook request" }),
        Trigger::Schedule { scheduled_at } => json!({
            "kind": "schedule",
            "text": format!("the schedule's tick of {}", time_text(*scheduled_at)),
        }),
        Trigger::Manual { started_by } => json!({
            "kind": "manual",
            "text": format!("started by hand ({started_by})"),
        }),
    }
}

/// Headers the webhook listener sets or recomputes itself: not repeated by "copy as curl".
const NOT_REPEATED: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "accept-encoding",
];

/// A curl command that sends the same request to the webhook listener: method, path and query,
/// headers, and the exact body bytes.
fn curl_command(base: &str, event: &Event) -> String {
    let query = query_text(event);
    let url = if query.is_empty() {
        format!("{base}{}", event.path)
    } else {
        format!("{base}{}?{query}", event.path)
    };
    let mut lines = vec![format!("curl -X {} {}", event.method, shell_quote(&url))];
    for (name, value) in &event.headers {
        if NOT_REPEATED.contains(&name.as_str()) {
            continue;
        }
        lines.push(format!(
            "  -H {}",
            shell_quote(&format!("{name}: {}", json_text(value)))
        ));
    }
    let mut command = match std::str::from_utf8(&event.raw) {
        Ok("") => lines.join(" \\\n"),
        Ok(text) => {
            lines.push(format!("  --data-binary {}", shell_quote(text)));
            lines.join(" \\\n")
        }
        Err(_) => {
            // Bytes a shell string cannot hold go through base64.
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(&event.raw);
            lines.push("  --data-binary @-".to_owned());
            format!(
                "printf %s '{encoded}' | base64 -d | {}",
                lines.join(" \\\n")
            )
        }
    };
    command.push('\n');
    command
}

/// The query string as received (values in order, repeated names repeated).
fn query_text(event: &Event) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in &event.query {
        match value {
            Json::Array(values) => {
                for v in values {
                    pairs.push((name.clone(), json_text(v)));
                }
            }
            other => pairs.push((name.clone(), json_text(other))),
        }
    }
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

fn json_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Single quotes for a POSIX shell; a quote inside becomes `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn time_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn duration_text(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        let seconds = (ms / 1000.0).round() as u64;
        format!("{}m {}s", seconds / 60, seconds % 60)
    }
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Cookies of the UI: for its pages only, out of scripts' reach, never sent by another site.
fn with_cookie(mut response: Response, name: &str, value: &str) -> Response {
    let cookie = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC takes a key of any length; this branch does not happen.
        return Vec::new();
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from the operating system's generator; uuid v7's random bits if it cannot be read.
fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        bytes[..16].copy_from_slice(a.as_bytes());
        bytes[16..].copy_from_slice(b.as_bytes());
    }
    bytes
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
    fn the_status_filter_offers_every_status() {
        for status in [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Retrying,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Filtered,
            RunStatus::Cancelled,
        ] {
            // A new status fails to compile above (no wildcard) until it is added here too.
            match status {
                RunStatus::Queued
                | RunStatus::Running
                | RunStatus::Retrying
                | RunStatus::Succeeded
                | RunStatus::Failed
                | RunStatus::Filtered
                | RunStatus::Cancelled => assert!(STATUSES.contains(&status.as_str())),
            }
        }
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
