//! The UI's pages: runs, a run, its event, workflows (all, and one with its charts), refused
//! requests, and the Replay and Start forms, each read from the store and the registry and rendered through `Ui`.

use super::*;

pub(super) async fn runs_list(
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
            "statuses": RunStatus::ALL.map(RunStatus::as_str),
            "filter": { "workflow": workflow, "status": status },
            "cursor": filter.before.is_some(),
            "auto_refresh": filter.before.is_none(),
            "first_url": url(None),
            "next_url": page.next.as_deref().map(|c| url(Some(c))),
        }),
    )
}

pub(super) async fn load_run(state: &AppState, ui: &Ui, id: &str) -> Result<RunDetail, Response> {
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
pub(super) struct RunPageQuery {
    replayed: Option<u32>,
}

pub(super) async fn run_page(
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

pub(super) fn render_run(
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
    run["replayed_from_version"] = json!(detail.run.replayed_from_version);
    run["cancelled_by"] = json!(detail.run.cancelled_by);
    run["cancel_requested"] = json!(detail.run.cancel_requested);
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
pub(super) struct ReplayForm {
    #[serde(default)]
    csrf: String,
    from_start: Option<String>,
    latest: Option<String>,
}

pub(super) async fn replay_form(
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
    let ask = ReplayAsk {
        from_start: form.from_start.as_deref() == Some("true"),
        latest: form.latest.as_deref() == Some("true"),
    };
    match replay(&state, &id, ask).await {
        Ok(queued) => Redirect::to(&format!(
            "/ui/runs/{}?replayed={}",
            queued.run_id, queued.attempt
        ))
        .into_response(),
        Err(ReplayError::NotFound(_)) => ui.error_page(
            StatusCode::NOT_FOUND,
            "No such run",
            &format!("No run has the id {id}."),
        ),
        Err(err) => {
            let status = err.status();
            match load_run(&state, &ui, &id).await {
                Ok(detail) => {
                    render_run(&ui, &detail, &headers, None, Some(err.to_string()), status)
                }
                Err(page) => page,
            }
        }
    }
}

/// The cancel and pause forms: the CSRF token and an optional reason.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

impl ReasonForm {
    fn reason(&self) -> Option<String> {
        let reason = self.reason.trim();
        (!reason.is_empty()).then(|| reason.chars().take(500).collect())
    }
}

/// The run page's Cancel button, through the admin API's cancel path.
pub(super) async fn cancel_form(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: ReasonForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if !ui.genuine(&headers, &form.csrf) {
        return ui.stale_form();
    }
    let request = CancelRequest {
        by: Via::Ui.as_str().to_owned(),
        reason: form.reason(),
    };
    match cancel(&state, &id, &request, Via::Ui).await {
        Ok(run) => Redirect::to(&format!("/ui/runs/{}", run.id)).into_response(),
        Err(CancelError::NotFound(_)) => ui.error_page(
            StatusCode::NOT_FOUND,
            "No such run",
            &format!("No run has the id {id}."),
        ),
        Err(err) => {
            let status = match err {
                CancelError::Finished { .. } => StatusCode::CONFLICT,
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

/// The workflows page's Pause button, through the admin API's path.
pub(super) async fn pause_form(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    pause_or_resume(&state, &ui, &name, &headers, &body, true).await
}

/// The workflows page's Resume button.
pub(super) async fn resume_form(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    pause_or_resume(&state, &ui, &name, &headers, &body, false).await
}

async fn pause_or_resume(
    state: &AppState,
    ui: &Ui,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    pausing: bool,
) -> Response {
    let form: ReasonForm = serde_urlencoded::from_bytes(body).unwrap_or_default();
    if !ui.genuine(headers, &form.csrf) {
        return ui.stale_form();
    }
    let request = PauseRequest {
        by: Via::Ui.as_str().to_owned(),
        reason: form.reason(),
    };
    let done = if pausing {
        pause(state, name, &request, Via::Ui).await
    } else {
        resume(state, name, &request, Via::Ui).await
    };
    match done {
        Ok(_) => Redirect::to("/ui/workflows").into_response(),
        Err(PauseError::NoWorkflow(_)) => ui.error_page(
            StatusCode::NOT_FOUND,
            "No such workflow",
            &format!("No workflow is named {name}."),
        ),
        Err(err) => ui.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not changed",
            &err.to_string(),
        ),
    }
}

pub(super) async fn event_page(
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
            "downloads": downloads_view(&detail),
            "curl": matches!(event.trigger, crate::run::Trigger::Webhook)
                .then(|| curl_command(&state.webhook_url, event)),
        }),
    )
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    payload: String,
}

/// The workflows page's Start form: a run by hand on the JSON payload typed in, through the same
/// path as `POST /api/workflows/{name}/start`.
pub(super) async fn start_form(
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

#[derive(Debug, Default, Deserialize)]
pub(super) struct BulkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    rate: String,
    latest: Option<String>,
    /// `preview` or `replay`: which button was pressed.
    #[serde(default)]
    action: String,
}

/// The workflows page's bulk replay form, through the same path as
/// `POST /api/workflows/{name}/replay`.
pub(super) async fn bulk_replay_form(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: BulkForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if !ui.genuine(&headers, &form.csrf) {
        return ui.stale_form();
    }
    let ask = match bulk_ask(&form) {
        Ok(ask) => ask,
        Err(message) => return ui.error_page(StatusCode::BAD_REQUEST, "Not replayed", &message),
    };
    match crate::http::bulk_replay::start(&state, &name, ask).await {
        Ok(answer) => ui.render(
            "bulk.html",
            serde_json::json!({
                "workflow": answer.workflow, "matched": answer.matched, "preview": answer.preview,
                "rate": answer.rate, "seconds": format!("{:.0}", answer.seconds),
                "run_ids": answer.run_ids, "status": form.status, "latest": form.latest.is_some(),
            }),
        ),
        Err(err) => ui.error_page(StatusCode::BAD_REQUEST, "Not replayed", &err.to_string()),
    }
}

/// The form's fields as a bulk replay asks for them; an empty field is "any".
fn bulk_ask(form: &BulkForm) -> Result<crate::http::bulk_replay::BulkAsk, String> {
    let time = |text: &str, what: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
        match text.trim() {
            "" => Ok(None),
            given => chrono::DateTime::parse_from_rfc3339(given)
                .map(|t| Some(t.with_timezone(&chrono::Utc)))
                .map_err(|e| format!("{what} '{given}' is not an RFC 3339 time: {e}")),
        }
    };
    let rate = match form.rate.trim() {
        "" => 1.0,
        given => given
            .parse()
            .map_err(|_| format!("rate '{given}' is not a number"))?,
    };
    Ok(crate::http::bulk_replay::BulkAsk {
        status: if form.status.is_empty() {
            "failed".into()
        } else {
            form.status.clone()
        },
        since: time(&form.since, "since")?,
        until: time(&form.until, "until")?,
        error: Some(form.error.trim().to_owned()).filter(|e| !e.is_empty()),
        rate,
        latest: form.latest.is_some(),
        from_start: false,
        preview: form.action != "replay",
    })
}

/// The page for a store that failed to answer (the log has why).
fn unreadable_store(ui: &Ui, err: &crate::store::StoreError, what: &str) -> Response {
    tracing::error!(error = %err, "{what} failed");
    ui.error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The store cannot be read",
        "See the server's log.",
    )
}

pub(super) async fn workflows_page(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let window = WindowQuery::read(query.as_deref());
    let (workflows, reload) = match workflows_overview(&state, 8).await {
        Ok(overview) => overview,
        Err(err) => return unreadable_store(&ui, &err, "listing workflows"),
    };
    let (chart, durations) = match run_activity(&state, None, window).await {
        Ok(activity) => activity,
        Err(err) => return unreadable_store(&ui, &err, "counting runs"),
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
                "paused": w.paused,
                "paused_since": w.paused_since.map(time_text),
                "paused_by": w.paused_by,
                "paused_reason": w.paused_reason,
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
            "chart": chart_view(&chart),
            "durations": durations_view(&durations),
        }),
    );
    with_csrf_cookie(response, fresh)
}

/// One workflow: its triggers, and its runs per minute by status with their p50/p95.
pub(super) async fn workflow_page(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let window = WindowQuery::read(query.as_deref());
    let workflows = match workflows_overview(&state, 8).await {
        Ok((workflows, _)) => workflows,
        Err(err) => return unreadable_store(&ui, &err, "listing workflows"),
    };
    let Some(workflow) = workflows.iter().find(|w| w.name == name) else {
        return ui.error_page(
            StatusCode::NOT_FOUND,
            "No such workflow",
            &format!("No workflow is named {name}."),
        );
    };
    let (chart, durations) = match run_activity(&state, Some(&name), window).await {
        Ok(activity) => activity,
        Err(err) => return unreadable_store(&ui, &err, "counting runs"),
    };
    let recent: Vec<Json> = workflow
        .recent_runs
        .iter()
        .map(|r| json!({ "id": r.id, "status": r.status, "created": time_text(r.created_at) }))
        .collect();
    ui.render(
        "workflow.html",
        json!({
            "page": "workflows",
            "workflow": {
                "name": workflow.name,
                "description": workflow.description,
                "file": workflow.file,
                "routes": workflow.routes,
                "schedules": workflow.schedules.iter().map(|s| s.description.clone()).collect::<Vec<_>>(),
                "recent": recent,
            },
            "chart": chart_view(&chart),
            "durations": durations_view(&durations),
        }),
    )
}

/// How many refused requests the page shows (the record keeps more; `/api/rejected` has them).
pub(super) const REJECTED_SHOWN: usize = 200;

pub(super) async fn rejected_page(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    RawQuery(query): RawQuery,
) -> Response {
    let chart = rejected_activity(&state, WindowQuery::read(query.as_deref()));
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
            "chart": chart_view(&chart),
        }),
    )
}
