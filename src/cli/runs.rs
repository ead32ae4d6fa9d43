//! `hookflow runs list|show|event|replay`: what the store recorded.

use std::process::ExitCode;

use anyhow::bail;

use super::{RunsArgs, RunsCommand};
use crate::run::{RunStatus, SavedPayload, StepRecord, StepStatus};
use crate::store::{OpenMode, RunCursor, RunDetail, RunFilter, RunSummary, Store};

pub async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RunsCommand::Replay {
            id,
            from_start,
            latest,
            admin,
            admin_token,
        } => {
            let ask = ReplayAsk { from_start, latest };
            return replay(&id, ask, &admin, admin_token.as_deref()).await;
        }
        RunsCommand::Cancel { id, reason, server } => {
            return super::pause::cancel(&id, reason.as_deref(), &server).await;
        }
        RunsCommand::ReplayAll {
            workflow,
            status,
            since,
            until,
            error,
            rate,
            latest,
            from_start,
            preview,
            admin,
            admin_token,
        } => {
            let ask = serde_json::json!({
                "status": status, "since": since, "until": until, "error": error,
                "rate": rate, "latest": latest, "from_start": from_start, "preview": preview,
            });
            let request = super::replay_all::ReplayAll {
                workflow,
                ask,
                admin,
                admin_token,
            };
            return super::replay_all::replay_all(request).await;
        }
        RunsCommand::List {
            workflow,
            status,
            limit,
            json,
        } => {
            let store = open_store(&args.store).await?;
            let status = match status {
                None => None,
                Some(s) => match RunStatus::parse(&s) {
                    Some(s) => Some(s),
                    None => bail!(
                        "unknown status '{s}'; expected queued, running, retrying, succeeded, failed, filtered or cancelled"
                    ),
                },
            };
            let filter = RunFilter {
                workflow,
                status,
                limit,
                ..RunFilter::default()
            };
            let runs = list_all(&store, filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(ExitCode::SUCCESS);
            }
            print_run_table(&runs);
        }
        RunsCommand::Show { id, json } => {
            let store = open_store(&args.store).await?;
            let Some(detail) = store.run(&id).await? else {
                bail!("no run with id {id} (or the prefix matches several runs)");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
                return Ok(ExitCode::SUCCESS);
            }
            print_run(&detail);
            print_steps(&detail.steps);
        }
        RunsCommand::Event { id, save, name } => {
            let store = open_store(&args.store).await?;
            let Some(detail) = store.run(&id).await? else {
                bail!("no run with id {id} (or the prefix matches several runs)");
            };
            match save {
                Some(dir) => save_event(&detail, &dir, name.as_deref())?,
                None => print_event(&detail),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Up to `filter.limit` runs, newest first, read a page at a time: the store answers at most
/// [`PAGE`] per read.
async fn list_all(store: &Store, mut filter: RunFilter) -> anyhow::Result<Vec<RunSummary>> {
    let wanted = filter.limit as usize;
    let mut runs: Vec<RunSummary> = Vec::new();
    while runs.len() < wanted {
        filter.limit = (wanted - runs.len()).min(PAGE) as u32;
        let page = store.list_runs(&filter).await?;
        let last_page = page.len() < filter.limit as usize;
        runs.extend(page);
        if last_page {
            break;
        }
        filter.before = runs.last().map(RunCursor::after);
    }
    Ok(runs)
}

/// The most runs one read of the store gives.
const PAGE: usize = 1000;
/// `runs event`: the stored request as it arrived, as HTTP shows one: the request line, the
/// headers (as stored: what the store masked stays masked), a blank line, the body.
fn print_event(detail: &RunDetail) {
    let event = &detail.event;
    eprintln!(
        "event {} of run {} (workflow {}), {} bytes",
        event.id,
        detail.run.id,
        detail.run.workflow,
        event.raw.len()
    );
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(event.query.iter().flat_map(|(name, value)| {
            let values = match value {
                serde_json::Value::Array(values) => values.clone(),
                other => vec![other.clone()],
            };
            values.into_iter().map(move |v| {
                (
                    name.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
        }))
        .finish();
    let target = if query.is_empty() {
        event.path.clone()
    } else {
        format!("{}?{query}", event.path)
    };
    println!("{} {target}", event.method);
    for (name, value) in &event.headers {
        println!(
            "{name}: {}",
            value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned)
        );
    }
    println!();
    match std::str::from_utf8(&event.raw) {
        Ok(text) => print!("{text}"),
        Err(_) => println!(
            "({} bytes that are not UTF-8: --save writes them exactly)",
            event.raw.len()
        ),
    }
}

/// `runs event --save DIR`: the event as payload files `run`, `test` and `send` read.
fn save_event(detail: &RunDetail, dir: &std::path::Path, name: Option<&str>) -> anyhow::Result<()> {
    let name = match name {
        Some(name) if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') => {
            bail!("--name {name:?} is not a file name (no folders, not hidden)")
        }
        Some(name) => name.to_owned(),
        None => crate::run::payload::saved_name(&detail.run.workflow, &detail.run.id),
    };
    let payload = SavedPayload::of_event(&detail.event);
    let (body, headers) = super::payload::write(dir, &name, &payload)?;
    println!("{}", body.display());
    println!("{}", headers.display());
    eprintln!(
        "saved the event of run {}; try it: hookflow run {} --payload {}",
        detail.run.id,
        detail.run.workflow,
        body.display()
    );
    Ok(())
}

/// `runs list`: one line per run.
fn print_run_table(runs: &[RunSummary]) {
    println!(
        "{:<36}  {:<24}  {:<9}  {:<24}  {:>9}",
        "RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION"
    );
    for run in runs {
        println!(
            "{:<36}  {:<24}  {:<9}  {:<24}  {:>9}",
            run.id,
            run.workflow,
            run.status.as_str(),
            run.created_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            run.duration_ms()
                .map(|d| format!("{d} ms"))
                .unwrap_or_else(|| "-".into())
        );
    }
}

/// `runs show`: the run, its event and what triggered it.
fn print_run(detail: &RunDetail) {
    let run = &detail.run;
    println!("run       {}", run.id);
    match &run.replayed_from_version {
        Some(earlier) => println!(
            "workflow  {} (version {}, replayed from version {earlier})",
            run.workflow, run.version
        ),
        None => println!("workflow  {} (version {})", run.workflow, run.version),
    }
    println!("status    {}", run.status.as_str());
    println!("created   {}", run.created_at.to_rfc3339());
    if let Some(d) = run.duration_ms() {
        println!("duration  {d} ms");
    }
    if let Some(error) = &run.error {
        println!("error     {error}");
    }
    match (&run.cancelled_by, run.cancel_requested) {
        (Some(by), true) if !run.status.is_final() => {
            println!("cancel    asked by {by}: stops at its next step");
        }
        (Some(by), _) if run.status == RunStatus::Cancelled => println!("cancelled by {by}"),
        _ => {}
    }
    let event = &detail.event;
    println!(
        "event     {} {} {} ({} bytes)",
        event.id,
        event.method,
        event.path,
        event.raw.len()
    );
    match &event.trigger {
        crate::run::Trigger::Webhook => {}
        crate::run::Trigger::Schedule { scheduled_at } => {
            println!("trigger   schedule, tick {}", scheduled_at.to_rfc3339());
        }
        crate::run::Trigger::Manual { started_by } => {
            println!("trigger   manual, started by {started_by}");
        }
    }
}

/// `runs show`: each recorded step with its input, output and error.
fn print_steps(steps: &[StepRecord]) {
    println!("steps");
    // Numbered as listed: record numbers leave gaps (unused `on_error` slots, nested steps).
    for (number, step) in (1..).zip(steps) {
        let status = if step.filtered {
            "filtered"
        } else {
            match step.status {
                StepStatus::Succeeded => "ok",
                StepStatus::Failed => "FAILED",
                StepStatus::Skipped => "skipped",
                StepStatus::Retrying => "retrying",
            }
        };
        let tries = match step.attempts {
            1 => String::new(),
            n => format!(", attempt {n}"),
        };
        println!(
            "  [{number}] {} ({}) {status} {:.1} ms{tries}",
            step.name, step.kind, step.duration_ms
        );
        print_earlier_attempts(step);
        if !step.input.is_null() {
            println!("      input  {}", step.input);
        }
        // Most local steps output what they rendered; say it once.
        if !step.output.is_null() && step.output != step.input {
            println!("      output {}", step.output);
        }
        if let Some(error) = &step.error {
            println!("      error  {error}");
        }
    }
}

/// What each earlier attempt of a retried step got, oldest first.
fn print_earlier_attempts(step: &StepRecord) {
    for attempt in &step.earlier {
        let answer = attempt
            .answer_status
            .map(|s| format!(" (answer {s})"))
            .unwrap_or_default();
        println!(
            "      attempt {} at {}{answer} {:.1} ms: {}",
            attempt.attempt,
            attempt
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            attempt.duration_ms,
            attempt.error.as_deref().unwrap_or("no error recorded")
        );
    }
}

async fn open_store(store: &str) -> anyhow::Result<Store> {
    if crate::store::is_postgres(store) {
        return Ok(Store::open(store, OpenMode::Read).await?);
    }
    let path = store.strip_prefix("sqlite://").unwrap_or(store);
    if !std::path::Path::new(path).exists() {
        bail!("no store at {path} (start `hookflow serve` first, or pass --store)");
    }
    Ok(Store::open(path, OpenMode::Read).await?)
}

/// What `runs replay` asks the server for.
struct ReplayAsk {
    from_start: bool,
    latest: bool,
}

/// Replays go through the server, whose worker must pick the run up.
async fn replay(
    id: &str,
    ask: ReplayAsk,
    admin: &str,
    token: Option<&str>,
) -> anyhow::Result<ExitCode> {
    crate::effects::http::install_crypto_provider();
    let url = format!(
        "{}/api/runs/{id}/replay?from_start={}&latest={}",
        admin.trim_end_matches('/'),
        ask.from_start,
        ask.latest
    );
    let mut request = reqwest::Client::new().post(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        anyhow::anyhow!("cannot reach the server at {admin} (is `hookflow serve` running?): {e}")
    })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status.is_success() {
        let version = match (
            body["version"].as_str(),
            body["replayed_from_version"].as_str(),
        ) {
            (Some(version), Some(earlier)) => format!(" on version {version} (was {earlier})"),
            (Some(version), None) => format!(" on version {version}"),
            (None, _) => String::new(),
        };
        println!(
            "run {} queued again (attempt {}){version}",
            body["run_id"].as_str().unwrap_or(id),
            body["attempt"]
        );
        Ok(ExitCode::SUCCESS)
    } else {
        bail!(
            "{}",
            body["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("the server answered {status}"))
        )
    }
}
