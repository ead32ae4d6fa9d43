//! Webhook ingress: find the workflows bound to the path, enforce the body limit, parse the body,
//! commit the event and its runs, then answer. Steps run later, in the worker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value as Json};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::body::{XmlMode, parse_body};
use super::rejected::{RejectReason, RejectedRequest};
use super::{AppState, error_response};
use crate::observe::trace::{Span, SpanKind};
use crate::run::NewRun;
use crate::run::SyncResponse;
use crate::run::{Event, RunStatus, TraceParent};
use crate::store::Accepted;
use crate::template::Scope;
use crate::worker::{FreshPlaces, SyncAnswer};
use crate::workflow::routes::Route;
use crate::workflow::{BodySchema, Registry, RespondMode, VerifyPreset, Workflow};

pub async fn ingest(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    // Traces off: no span, and nothing of the request is read for one.
    let span = state
        .tracer
        .as_ref()
        .map(|_| request_span(request.headers()));
    let mut seen = Seen::default();
    let outcome = handle(&state, request, &mut seen, span.as_ref().map(|s| s.context)).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    if let (Some(tracer), Some(span)) = (&state.tracer, span) {
        let status = match &outcome {
            Ok((response, _)) => response.status(),
            Err(refused) => refused.response.status(),
        };
        tracer.record(request_span_end(
            span,
            &method,
            &path,
            &seen,
            status.as_u16(),
        ));
    }
    // The route pattern, not the path: a bounded label for metrics, and what operators grep for.
    let route = seen.route.clone().unwrap_or_else(|| "unmatched".to_owned());
    match outcome {
        Ok((response, run_ids)) => {
            let status = response.status().as_u16();
            crate::observe::metrics::metrics().request("webhook", &route, status);
            if status < 400 {
                info!(%method, %path, %route, status, run_ids = %run_ids.join(","), latency_ms, "request");
            } else {
                warn!(%method, %path, %route, status, latency_ms, "request refused");
            }
            response
        }
        Err(refused) => {
            let status = refused.response.status().as_u16();
            crate::observe::metrics::metrics().request("webhook", &route, status);
            state.rejected.record(RejectedRequest {
                at: Utc::now(),
                method,
                path,
                route: seen.route,
                workflows: seen.workflows,
                source: seen.source,
                status,
                reason: refused.reason,
                detail: refused.detail,
            });
            *refused.response
        }
    }
}

/// The request's span, started when it arrives: the child of the sender's `traceparent` when
/// it sent a valid one, else the root of a new trace.
fn request_span(headers: &HeaderMap) -> Span {
    let parent = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| TraceParent::parse(text).ok());
    Span::start(parent, String::new(), SpanKind::Server)
}

/// The request's span once answered. The path without its query (which may hold a token),
/// no header and no body: nothing a secret could be in.
fn request_span_end(mut span: Span, method: &str, path: &str, seen: &Seen, status: u16) -> Span {
    span.name = match &seen.route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    };
    span.text("http.request.method", method);
    span.text("url.path", path);
    if let Some(route) = &seen.route {
        span.text("http.route", route.as_str());
    }
    span.integer("http.response.status_code", i64::from(status));
    if !seen.workflows.is_empty() {
        span.text("hookflow.workflow", seen.workflows.join(","));
    }
    span.failed = status >= 500;
    span.finish()
}

/// What is known of a request by the time it is answered, for the rejected-requests record.
#[derive(Default)]
struct Seen {
    route: Option<String>,
    workflows: Vec<String>,
    source: Option<IpAddr>,
}

/// A request refused on purpose: the bare answer, and the reason kept for the operator. The
/// answer is boxed so that each phase's `Result<_, Refused>` stays small.
struct Refused {
    response: Box<Response>,
    reason: RejectReason,
    detail: String,
}

impl Refused {
    fn new(response: Response, reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            response: Box::new(response),
            reason,
            detail: detail.into(),
        }
    }
}

/// The answer (with the runs started), or why the request was refused.
type Handled = Result<(Response, Vec<String>), Refused>;

/// One webhook request, phase by phase: find the route, apply the limits that cost nothing,
/// read the body, verify it, parse it, build the event and its runs, commit them, answer.
async fn handle(
    state: &AppState,
    request: Request,
    seen: &mut Seen,
    trace: Option<TraceParent>,
) -> Handled {
    let registry = match state.registry.read() {
        Ok(r) => Arc::clone(&r),
        Err(_) => {
            return Ok((
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                Vec::new(),
            ));
        }
    };
    let (parts, body) = request.into_parts();
    seen.source = client_source(state, &parts);
    let path = parts.uri.path().to_owned();
    let (route, params) = find_route(&registry, &path)?;
    seen.route = Some(route.pattern.as_str().to_owned());
    let method = parts.method.as_str().to_owned();
    let bound = bound_workflows(route, &method, &path)?;
    seen.workflows = bound.iter().map(|w| w.name.clone()).collect();
    admit_before_body(state, route, &bound, seen.source, &path)?;
    let raw = receive_body(state, route, &parts.headers, body).await?;
    // Signatures cover the exact bytes received: checked before anything parses or stores them.
    if let Err((reason, detail)) = verified(
        &bound,
        &state.secrets,
        &parts.headers,
        parts.uri.query(),
        &raw,
    ) {
        return Err(Refused::new(
            error_response(StatusCode::UNAUTHORIZED, "unauthorized"),
            reason,
            detail,
        ));
    }
    // Workflows sharing a path parse and check bodies alike (the route table refuses them
    // otherwise), so the first one decides.
    let trigger = bound[0].webhook.as_ref();
    let xml = trigger.map(|t| t.xml).unwrap_or_default();
    let parsed = parse_request_body(state, &parts.headers, &raw, xml)?;
    if let Some(schema) = trigger.and_then(|t| t.schema.as_ref()) {
        matches_schema(schema, &parsed)?;
    }
    let (mut query, mut headers) = (query_map(parts.uri.query()), header_map(&parts.headers));
    mask_credentials(&bound, &mut headers, &mut query);
    let event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        method,
        path,
        params,
        query,
        headers,
        body: parsed,
        raw: raw.to_vec(),
        received_at: Utc::now(),
        trigger: crate::run::Trigger::Webhook,
        trace,
    };
    let runs = crate::workflow::runs::new_runs(bound.iter().map(|w| w.as_ref()), &event);
    let event = Arc::new(event);
    // Registered before the commit so an answer cannot slip past between commit and wait.
    let waiter = (route.respond == RespondMode::Sync).then(|| state.worker.wait_for(&runs[0].id));
    // Places in the worker's window first: when every run has one, the store claims them in
    // the accept's own commit and the worker starts them without another.
    let places = state.worker.reserve_fresh(runs.len());
    let accepted = match accept_event(state, &event, &runs, &places, waiter.is_some()).await {
        Ok(accepted) => accepted,
        Err(unavailable) => return Ok((unavailable, Vec::new())),
    };
    Ok(answer(state, &event, &runs, accepted, waiter, places).await)
}

/// The client's address: the peer, or the address a trusted proxy forwarded for.
fn client_source(state: &AppState, parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .and_then(|info| {
            // Lossy, not `to_str`: a byte the client wrote must not make the proxy's own entry,
            // in the same header, disappear.
            let forwarded: Vec<_> = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .collect();
            crate::net::client_address(
                info.0.ip(),
                forwarded.iter().map(|v| v.as_ref()),
                &state.trusted_proxies,
            )
        })
}

/// The route bound to the path, with the path's parameters; 404 when there is none.
fn find_route<'r>(
    registry: &'r Registry,
    path: &str,
) -> Result<(&'r Route, BTreeMap<String, String>), Refused> {
    registry.routes.find(path).ok_or_else(|| {
        Refused::new(
            error_response(
                StatusCode::NOT_FOUND,
                format!("no workflow is bound to {path}"),
            ),
            RejectReason::NoRoute,
            "no workflow is bound to the path",
        )
    })
}

/// The route's workflows that accept the method; 405 with `Allow` when none does.
fn bound_workflows<'r>(
    route: &'r Route,
    method: &str,
    path: &str,
) -> Result<Vec<&'r Arc<Workflow>>, Refused> {
    let bound = route.bound(method);
    if !bound.is_empty() {
        return Ok(bound);
    }
    let allow = route.allowed_methods().join(", ");
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not accepted on {path}; use {allow}"),
    );
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Err(Refused::new(
        response,
        RejectReason::MethodNotAllowed,
        format!("{method} is not accepted; use {allow}"),
    ))
}

/// The checks made before the body is read, cheapest first: `ip_allow`, the store's backlog,
/// the route's rate limit.
fn admit_before_body(
    state: &AppState,
    route: &Route,
    bound: &[&Arc<Workflow>],
    source: Option<IpAddr>,
    path: &str,
) -> Result<(), Refused> {
    // The cheapest check first: an address outside `ip_allow` costs no token and no read.
    if let Some(blocks) = bound.iter().find_map(|w| {
        w.webhook
            .as_ref()
            .and_then(|t| t.verify.as_ref())
            .and_then(|v| v.ip_allow.as_ref())
    }) && !source.is_some_and(|source| crate::net::any_contains(blocks, source))
    {
        return Err(Refused::new(
            error_response(StatusCode::UNAUTHORIZED, "unauthorized"),
            RejectReason::IpNotAllowed,
            "ip not allowed",
        ));
    }
    // Before the body is read: a sender asked to come back later costs nothing more.
    if state.worker.backlog_full() {
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many runs are waiting; retry later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return Err(Refused::new(
            response,
            RejectReason::BacklogFull,
            "the store's queue holds max_backlog runs",
        ));
    }
    // Before the body is read: a flood costs as little as possible.
    if let Some(limit) = &route.rate_limit
        && let Err(wait) = state.limiter.admit(
            route.pattern.as_str(),
            source,
            limit,
            std::time::Instant::now(),
        )
    {
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests on {path}; retry later"),
        );
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Err(Refused::new(
            response,
            RejectReason::RateLimited,
            format!("over the rate limit; retry after {seconds} s"),
        ));
    }
    Ok(())
}

/// The body's bytes, refused when its declared or actual length passes `max_body`, when it
/// breaks, or when it does not arrive within `body_timeout`.
async fn receive_body(
    state: &AppState,
    route: &Route,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, Refused> {
    let too_large = || {
        Refused::new(
            error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", route.max_body),
            ),
            RejectReason::BodyTooLarge,
            format!(
                "the body is larger than max_body ({} bytes)",
                route.max_body
            ),
        )
    };
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_length.is_some_and(|len| len > route.max_body) {
        return Err(too_large());
    }
    // A client trickling its body would hold a connection and a task: it gets a deadline.
    match tokio::time::timeout(state.body_timeout, read_body(body, route.max_body)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(BodyReadError::TooLarge)) => Err(too_large()),
        Ok(Err(BodyReadError::Broken(reason))) => Err(Refused::new(
            error_response(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {reason}"),
            ),
            RejectReason::BodyUnreadable,
            "the body could not be read",
        )),
        Err(_) => {
            let mut response =
                error_response(StatusCode::REQUEST_TIMEOUT, "the body was not sent in time");
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(Refused::new(
                response,
                RejectReason::BodyUnreadable,
                format!(
                    "the body was not complete within body_timeout ({} s)",
                    state.body_timeout.as_secs()
                ),
            ))
        }
    }
}

/// The body parsed by its content type; 400 when it does not parse.
fn parse_request_body(
    state: &AppState,
    headers: &HeaderMap,
    raw: &[u8],
    xml: XmlMode,
) -> Result<Json, Refused> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    parse_body(content_type, raw, &state.body_limits, xml).map_err(|err| {
        // The parser's message may quote the body, so the record names only the type.
        let detail = format!(
            "the body does not parse as {}",
            content_type.unwrap_or("its content type")
        );
        Refused::new(
            error_response(StatusCode::BAD_REQUEST, err.to_string()),
            RejectReason::BadBody,
            detail,
        )
    })
}

/// The parsed body against the webhook's `schema`: 422 with the violations when it does not
/// match. The sender sees where its body is wrong; the record keeps only the schema's side
/// (which keywords failed), never a piece of the body.
fn matches_schema(schema: &BodySchema, body: &Json) -> Result<(), Refused> {
    let violations = schema.check(body);
    if violations.is_empty() {
        return Ok(());
    }
    let mut keywords: Vec<String> = Vec::new();
    for violation in &violations {
        let keyword = format!("#{}", violation.keyword);
        if !keywords.contains(&keyword) {
            keywords.push(keyword);
        }
    }
    let detail = format!(
        "the body does not match the schema ({}): {} violation(s) of {}",
        schema.origin,
        violations.len(),
        keywords.join(", ")
    );
    let answer = serde_json::json!({
        "error": "the body does not match the webhook's schema",
        "violations": violations,
    });
    Err(Refused::new(
        (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(answer)).into_response(),
        RejectReason::InvalidBody,
        detail,
    ))
}

/// Commits the event and its runs, claiming them with the reserved places' lease when there is
/// one. When the store fails, the answer is a 503 the sender retries on.
async fn accept_event(
    state: &AppState,
    event: &Arc<Event>,
    runs: &[NewRun],
    places: &FreshPlaces,
    sync: bool,
) -> Result<Accepted, Response> {
    let accepted = match places.lease() {
        Some(lease) => {
            let event = Arc::clone(event);
            state.store.accept_claimed(event, runs, lease).await
        }
        None => state.store.accept(Arc::clone(event), runs).await,
    };
    accepted.map_err(|err| {
        warn!(error = %err, "cannot store the event; answering 503 so the sender retries");
        if sync {
            state.worker.forget(&runs[0].id);
        }
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event could not be stored; retry later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        response
    })
}

/// Hands the committed runs to the worker and answers: 200 for a repeated delivery, 202 with the
/// run ids, or, on a sync route, the run's own answer when it comes in time.
async fn answer(
    state: &AppState,
    event: &Arc<Event>,
    runs: &[NewRun],
    accepted_runs: Accepted,
    waiter: Option<oneshot::Receiver<SyncAnswer>>,
    places: FreshPlaces,
) -> (Response, Vec<String>) {
    state.worker.superseded(&accepted_runs.superseded);
    let duplicate_of = accepted_runs.duplicate_of;
    let run_ids = accepted_runs.created;
    if run_ids.is_empty() {
        // A repeated delivery: the sender is told it arrived, and nothing runs again.
        if waiter.is_some() {
            state.worker.forget(&runs[0].id);
        }
        let body = serde_json::json!({ "duplicate_of": duplicate_of });
        return (
            (StatusCode::OK, axum::Json(body)).into_response(),
            Vec::new(),
        );
    }
    let event_id = event.id.clone();
    let created: Vec<&NewRun> = runs.iter().filter(|r| run_ids.contains(&r.id)).collect();
    state
        .worker
        .enqueue_accepted(&created, accepted_runs.claimed, Arc::clone(event), places);
    let accepted = || {
        let mut body = serde_json::json!({ "event_id": event_id, "run_ids": run_ids });
        if !duplicate_of.is_empty() {
            body["duplicate_of"] = serde_json::json!(duplicate_of);
        }
        (StatusCode::ACCEPTED, axum::Json(body)).into_response()
    };
    let response = match waiter {
        None => accepted(),
        Some(waiter) => match tokio::time::timeout(state.sync_timeout, waiter).await {
            Ok(Ok(SyncAnswer::Responded(answer))) => sync_response(answer),
            Ok(Ok(SyncAnswer::Finished { status })) => {
                let code = match status {
                    RunStatus::Failed => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::OK,
                };
                let body = serde_json::json!({ "run_id": run_ids[0], "status": status.as_str() });
                (code, axum::Json(body)).into_response()
            }
            // The run goes on; the event is safe, so the caller is told it was accepted.
            _ => {
                state.worker.forget(&run_ids[0]);
                accepted()
            }
        },
    };
    (response, run_ids.clone())
}

enum BodyReadError {
    TooLarge,
    Broken(String),
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, BodyReadError> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let inner = err.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            BodyReadError::TooLarge
        } else {
            BodyReadError::Broken(inner.to_string())
        }
    })
}

fn sync_response(answer: SyncResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let has_content_type = answer
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    let (body, content_type) = match answer.body {
        Json::Null => (Vec::new(), None),
        Json::String(text) => (text.into_bytes(), Some("text/plain; charset=utf-8")),
        other => (
            serde_json::to_vec(&other).unwrap_or_default(),
            Some("application/json"),
        ),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    if !has_content_type && let Some(ct) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    response
}

/// Whether the request passes every `verify` preset of its route, or why not. Workflows sharing
/// a path verify alike (the route table refuses them otherwise), so the first one with `verify`
/// decides. Reasons are recorded, never answered: a sender probing signatures learns nothing.
fn verified(
    bound: &[&std::sync::Arc<Workflow>],
    secrets: &crate::secrets::SecretSource,
    headers: &HeaderMap,
    query: Option<&str>,
    raw: &[u8],
) -> Result<(), (RejectReason, String)> {
    let Some((workflow, verify)) = bound.iter().find_map(|w| {
        w.webhook
            .as_ref()
            .and_then(|t| t.verify.as_ref())
            .map(|v| (w, v))
    }) else {
        return Ok(());
    };
    let source = secrets;
    let secrets = source.resolve(&workflow.secrets);
    // Read once per request: the declared secrets without a value are those `resolve` left out.
    let unset: Vec<String> = (workflow.secrets.iter())
        .filter(|name| !secrets.contains_key(*name))
        .map(|name| source.where_to_set(name))
        .collect();
    let context = crate::template::to_template_value(&serde_json::json!({ "secrets": secrets }));
    let scope = Scope {
        templates: &workflow.templates,
        context: &context,
        event_body: &Json::Null,
    };
    let now = Utc::now().timestamp();
    for preset in &verify.presets {
        let scheme = preset.preset.scheme.as_str();
        let values = preset_secrets(workflow, &scope, preset, scheme, &unset)?;
        // Twilio's public URL and Basic's user name: rendered like the secrets, and refused
        // alike when they are empty.
        let Some(url) = render_setting(workflow, &scope, scheme, "url", preset.url.as_ref()) else {
            return misconfigured(scheme, "`url` renders empty or cannot be rendered");
        };
        let Some(username) = render_setting(
            workflow,
            &scope,
            scheme,
            "username",
            preset.username.as_ref(),
        ) else {
            return misconfigured(scheme, "`username` renders empty or cannot be rendered");
        };
        // `hmac` content: rendered with the request's body, timestamp and id only.
        let render = |inputs: crate::verify::ContentInputs<'_>| {
            preset
                .render_content(&workflow.templates, inputs)?
                .inspect_err(|err| error!(workflow = %workflow.name, preset = scheme, error = %err, "the verify content cannot be rendered; refusing the request"))
                .ok()
        };
        let request = crate::verify::Request {
            headers,
            body: raw,
            query,
            url: url.as_deref(),
            content: Some(&render),
            username: username.as_deref(),
        };
        match crate::verify::check_request(&preset.preset, &request, now, &values) {
            Ok(()) => {}
            // The workflow's configuration is wrong, not the sender: an operator must act.
            Err(reason @ crate::verify::Rejection::UnusableSecret(_)) => {
                error!(workflow = %workflow.name, preset = scheme, %reason, "webhook verification is misconfigured; refusing the request");
                return misconfigured(scheme, &reason.to_string());
            }
            // Logged with the request by the rejected-requests record.
            Err(reason) => {
                return Err((
                    RejectReason::of_verify(&reason),
                    format!("{scheme}: {reason}"),
                ));
            }
        }
    }
    Ok(())
}

/// The preset's secrets, rendered; none may be empty or fail to render. `unset` says how to set
/// each declared secret that has no value, for the operator's log line.
fn preset_secrets(
    workflow: &Workflow,
    scope: &Scope<'_>,
    preset: &VerifyPreset,
    scheme: &str,
    unset: &[String],
) -> Result<Vec<String>, (RejectReason, String)> {
    let mut values = Vec::with_capacity(preset.secrets.len());
    for template in &preset.secrets {
        match template.render_string(scope) {
            Ok(value) if !value.is_empty() => values.push(value),
            // A missing secret must never turn into "accept everything": the request is
            // refused, and the log says which secret to set, not how to write templates.
            _ if !unset.is_empty() => {
                let fix = unset.join("; ");
                error!(workflow = %workflow.name, preset = scheme, "the verify secret is not set ({fix}); refusing the request");
                return misconfigured(scheme, &format!("the secret is not set: {fix}"));
            }
            Ok(_) => {
                error!(workflow = %workflow.name, preset = scheme, "the verify secret is empty; refusing the request");
                return misconfigured(scheme, "the secret is empty");
            }
            Err(err) => {
                error!(workflow = %workflow.name, preset = scheme, error = %err, "the verify secret cannot be rendered; refusing the request");
                return misconfigured(scheme, "the secret cannot be rendered");
            }
        }
    }
    Ok(values)
}

/// A refusal for a `verify` the operator must fix, not the sender.
fn misconfigured<T>(scheme: &str, what: &str) -> Result<T, (RejectReason, String)> {
    Err((
        RejectReason::VerifyMisconfigured,
        format!("{scheme}: {what}"),
    ))
}

/// Replace the credentials the request was verified with (a token or password sent in clear)
/// by `***`: they are the workflow's secrets, and the event is stored, listed by the admin API
/// and read by templates. The presets are those `verified` checked.
fn mask_credentials(
    bound: &[&std::sync::Arc<Workflow>],
    headers: &mut Map<String, Json>,
    query: &mut Map<String, Json>,
) {
    let Some(verify) = bound
        .iter()
        .find_map(|w| w.webhook.as_ref().and_then(|t| t.verify.as_ref()))
    else {
        return;
    };
    let mask = || Json::String(crate::run::MASK.to_owned());
    for preset in &verify.presets {
        match preset.preset.credential() {
            Some(crate::verify::Credential::Header(name)) => {
                if let Some(value) = headers.get_mut(name) {
                    *value = mask();
                }
            }
            Some(crate::verify::Credential::Query(name)) => match query.get_mut(name) {
                Some(Json::Array(values)) => values.iter_mut().for_each(|v| *v = mask()),
                Some(value) => *value = mask(),
                None => {}
            },
            None => {}
        }
    }
}

/// A `verify` setting other than the secret: `Some(None)` when the preset has none, `None` (after
/// logging why) when it cannot be rendered or renders empty.
fn render_setting(
    workflow: &Workflow,
    scope: &Scope<'_>,
    scheme: &str,
    key: &str,
    template: Option<&crate::template::ValueTemplate>,
) -> Option<Option<String>> {
    let Some(template) = template else {
        return Some(None);
    };
    match template.render_string(scope) {
        Ok(value) if !value.is_empty() => Some(Some(value)),
        Ok(_) => {
            error!(workflow = %workflow.name, preset = scheme, key, "the verify setting renders empty; refusing the request");
            None
        }
        Err(err) => {
            error!(workflow = %workflow.name, preset = scheme, key, error = %err, "the verify setting cannot be rendered; refusing the request");
            None
        }
    }
}

fn header_map(headers: &HeaderMap) -> Map<String, Json> {
    let mut out: Map<String, Json> = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Json::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Json::String(value));
            }
        }
    }
    out
}

/// Query parameters: one value -> a string, repeated -> a list.
pub fn query_map(query: Option<&str>) -> Map<String, Json> {
    let pairs: Vec<(String, String)> = query
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order = Vec::new();
    for (k, v) in pairs {
        if !grouped.contains_key(&k) {
            order.push(k.clone());
        }
        grouped.entry(k).or_default().push(v);
    }
    order
        .into_iter()
        .map(|k| {
            let mut values = grouped.remove(&k).unwrap_or_default();
            let value = if values.len() == 1 {
                Json::String(values.remove(0))
            } else {
                Json::Array(values.into_iter().map(Json::String).collect())
            };
            (k, value)
        })
        .collect()
}
