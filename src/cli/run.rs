//! `hookflow run`: one run in-process on a saved payload, with a step-by-step trace on stderr
//! and the outcome as JSON on stdout. `--dry-run` renders every step and sends nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::{Map, Value as Json};

use super::RunArgs;
use crate::diag::SourceFile;
use crate::effects::stand_in::{AnsweredBy, StubbedWorld, Unstubbed};
use crate::engine::{self, ExecOptions, Journal, JournalError, RunInfo, RunRequest};
use crate::future::BoxFuture;
use crate::http::body::{BodyLimits, parse_body};
use crate::run::SyncResponse;
use crate::run::{Event, RunStatus, StepRecord, StepStatus};
use crate::settings::{Overrides, ServeSettings};
use crate::workflow::{self, CompileOptions, WebhookTrigger, Workflow};

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    crate::observe::telemetry::init(crate::observe::telemetry::LogFormat::Text, "warn");
    let settings = ServeSettings::resolve(&Overrides {
        config: args.config.clone(),
        secrets_dir: args.secrets_dir.clone(),
        email_from: args.email_from.clone(),
        ..Overrides::default()
    })?;
    let (workflow, registry) =
        find_workflow(&args.workflow, &args.workflows, &settings.compile_options())?;
    let event = payload_event(&args, &workflow)?;
    let run = RunInfo {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: workflow.name.clone(),
        attempt: 1,
    };
    let secrets = settings.secrets.resolve(&workflow.secrets);
    let stand_ins = dry_run_world(&args)?;
    let effects = match &stand_ins {
        Some(world) => world.effects(),
        None => settings.effects()?,
    };
    let options = ExecOptions {
        dry_run: args.dry_run,
        started_at: Some(Utc::now()),
        cancel: None,
        trace: None,
    };
    eprintln!(
        "run {} of workflow '{}'{}",
        run.id,
        workflow.name,
        if args.dry_run {
            " (dry run: nothing is sent)"
        } else {
            ""
        }
    );
    note_unchecked_verify(&workflow);
    let callees = LoadedCallees {
        registry: &registry,
        secrets: &settings.secrets,
    };
    let request = RunRequest {
        workflow: &workflow,
        event: &event,
        run: &run,
        secrets: &secrets,
        finished: &[],
        effects: &effects,
        options: &options,
        callees: Some(&callees),
    };
    let started = std::time::Instant::now();
    let outcome = execute_with_retries(request, stand_ins.as_ref()).await?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    report(&run, &outcome, elapsed)
}

/// `verify` guards the server's door, which an in-process run does not go through: say so
/// rather than pass over it in silence.
fn note_unchecked_verify(workflow: &Workflow) {
    let Some(verify) = workflow.webhook.as_ref().and_then(|t| t.verify.as_ref()) else {
        return;
    };
    let presets: Vec<&str> = verify
        .presets
        .iter()
        .map(|p| p.preset.scheme.as_str())
        .collect();
    eprintln!(
        "note: verify ({}) is not checked by `hookflow run`: it guards the server's door; `hookflow send` tries it against `hookflow serve`",
        presets.join(", ")
    );
}

/// The event the run starts from: the payload file's bytes, parsed like the server parses a
/// body, with its headers file's headers, the `--header`s and the `--path` given.
fn payload_event(args: &RunArgs, workflow: &Workflow) -> anyhow::Result<Event> {
    let saved = match &args.payload {
        Some(path) => super::payload::read(path)?,
        None => crate::run::SavedPayload::default(),
    };
    let raw = saved.body;
    let headers = request_headers(&args.headers, &saved.headers)?;
    let content_type = headers.get("content-type").and_then(Json::as_str);
    let trigger = workflow.webhook.as_ref();
    let xml = trigger.map(|t| t.xml).unwrap_or_default();
    let body = parse_body(content_type, &raw, &BodyLimits::default(), xml)
        .map_err(|e| anyhow::anyhow!("the payload cannot be parsed: {e}"))?;
    let (path, params) = request_path(args.path.as_ref(), trigger)?;
    Ok(Event {
        id: uuid::Uuid::now_v7().to_string(),
        method: trigger
            .and_then(|t| t.methods.first().cloned())
            .unwrap_or_else(|| "POST".to_owned()),
        path,
        params,
        query: Map::new(),
        headers,
        body,
        raw,
        received_at: Utc::now(),
        trigger: crate::run::Trigger::Webhook,
        trace: None,
    })
}

/// The headers file's headers, then the `--header`s over them, named in lower case.
fn request_headers(
    flags: &[String],
    file: &[(String, String)],
) -> anyhow::Result<Map<String, Json>> {
    let mut headers = Map::new();
    for header in flags {
        let Some((name, value)) = header.split_once(':') else {
            bail!("--header '{header}' is not 'Name: value'");
        };
        // Repeated headers are joined the way the server joins them.
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match headers.get_mut(&name) {
            Some(Json::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                headers.insert(name, Json::String(value.to_owned()));
            }
        }
    }
    let mut merged: Map<String, Json> = file
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), Json::String(value.clone())))
        .collect();
    merged.extend(headers);
    Ok(merged)
}

/// The event's path and path parameters: `--path`, which must match the webhook's pattern,
/// else the pattern itself, else `/`.
fn request_path(
    given: Option<&String>,
    trigger: Option<&WebhookTrigger>,
) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    Ok(match (given, trigger) {
        (Some(path), Some(t)) => match t.path.matches(path) {
            Some(params) => (path.clone(), params),
            None => bail!(
                "--path {path} does not match the workflow's path {}",
                t.path.as_str()
            ),
        },
        (Some(path), None) => (path.clone(), BTreeMap::new()),
        (None, Some(t)) => (t.path.as_str().to_owned(), BTreeMap::new()),
        (None, None) => ("/".to_owned(), BTreeMap::new()),
    })
}

/// Under `--dry-run`, the world every effect acts on: each answered by its `--stub`, else by
/// what the real service would answer; its clock moves to each retry's due time at once.
fn dry_run_world(args: &RunArgs) -> anyhow::Result<Option<DryRunWorld>> {
    if !args.dry_run {
        return Ok(None);
    }
    let mut stubs = Vec::new();
    for given in &args.stubs {
        let Some((step, file)) = given.split_once('=') else {
            bail!("--stub '{given}' is not 'STEP=FILE'");
        };
        let spec = crate::testkit::read_stub_file(step, Path::new(file)).map_err(|problems| {
            for problem in &problems {
                eprint!("{}", problem.render());
            }
            anyhow::anyhow!("the stub file {file} has {} problem(s)", problems.len())
        })?;
        stubs.push(spec.to_stub());
    }
    let clock = Arc::new(crate::effects::clock::ManualClock::at(Utc::now()));
    let world = StubbedWorld::new(stubs, Unstubbed::Sample, clock.clone());
    Ok(Some(DryRunWorld { world, clock }))
}

/// The stand-in world of a dry run and its clock.
struct DryRunWorld {
    world: StubbedWorld,
    clock: Arc<crate::effects::clock::ManualClock>,
}

impl DryRunWorld {
    fn effects(&self) -> crate::effects::Effects {
        self.world.effects()
    }
}

/// Executes the run until it ends, tracing each step on stderr. In-process, a retry simply
/// waits here and the run resumes with the steps recorded so far (a dry run moves its clock
/// instead); the server stores the due time.
async fn execute_with_retries(
    request: RunRequest<'_>,
    dry_run: Option<&DryRunWorld>,
) -> anyhow::Result<engine::RunOutcome> {
    let workflow = request.workflow;
    let trace = Trace {
        total: workflow.steps.len(),
        top_level: workflow.steps.len() + workflow.on_error.len(),
        records: std::sync::Mutex::new(Vec::new()),
        world: dry_run.map(|d| d.world.clone()),
    };
    loop {
        let finished = trace.records.lock().map(|r| r.clone()).unwrap_or_default();
        let outcome = engine::execute(
            RunRequest {
                finished: &finished,
                ..request
            },
            &trace,
        )
        .await?;
        match (outcome.status, outcome.due_at) {
            (RunStatus::Retrying, Some(due_at)) if let Some(dry) = dry_run => {
                eprintln!("    next attempt due at {due_at} (a dry run does not wait)");
                dry.clock.set(due_at);
            }
            (RunStatus::Retrying, Some(due_at)) => {
                let wait = (due_at - Utc::now()).to_std().unwrap_or_default();
                eprintln!(
                    "    waiting {:.1} s before the next attempt",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
            _ => return Ok(outcome),
        }
    }
}

/// The outcome: a line on stderr, the summary as JSON on stdout, and the exit code (1 when the
/// run failed).
fn report(run: &RunInfo, outcome: &engine::RunOutcome, elapsed: f64) -> anyhow::Result<ExitCode> {
    match &outcome.error {
        Some(error) => eprintln!(
            "run {} in {elapsed:.1} ms: {error}",
            outcome.status.as_str()
        ),
        None => eprintln!("run {} in {elapsed:.1} ms", outcome.status.as_str()),
    }
    let summary = serde_json::json!({
        "run_id": run.id,
        "workflow": run.workflow,
        "status": outcome.status.as_str(),
        "error": outcome.error,
        "vars": outcome.vars,
        "response": outcome.response.as_ref().map(SyncResponse::to_json),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(if outcome.status == RunStatus::Failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A file path, or the name of a workflow in the workflows directory (`send` looks up alike).
pub(super) fn find_workflow(
    given: &str,
    dir: &Path,
    options: &CompileOptions,
) -> anyhow::Result<(Arc<Workflow>, workflow::Registry)> {
    let path = PathBuf::from(given);
    let loaded = if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        workflow::load_sources(
            vec![SourceFile::new(path.display().to_string(), text)],
            options,
        )
    } else if dir.is_dir() {
        workflow::load(&[dir.to_path_buf()], options)?
    } else {
        bail!(
            "{given} is not a workflow file, and {} is not a directory",
            dir.display()
        );
    };
    let problems: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::diag::Severity::Error)
        .map(|d| d.render())
        .collect();
    let found = if path.is_file() {
        loaded.registry.workflows.values().next().cloned()
    } else {
        loaded.registry.get(given).cloned()
    };
    match found {
        Some(w) if problems.is_empty() || !path.is_file() => Ok((w, loaded.registry)),
        _ if !problems.is_empty() => {
            for p in &problems {
                eprint!("{p}");
            }
            bail!("the workflow has {} problem(s)", problems.len())
        }
        _ => bail!(
            "no workflow named '{given}' in {} (known: {})",
            dir.display(),
            loaded
                .registry
                .workflows
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `call` steps run the workflows loaded with the one being run.
struct LoadedCallees<'a> {
    registry: &'a workflow::Registry,
    secrets: &'a crate::secrets::SecretSource,
}

impl engine::Callees for LoadedCallees<'_> {
    fn workflow(&self, name: &str) -> Option<Arc<Workflow>> {
        self.registry.get(name).cloned()
    }

    fn secrets(&self, workflow: &Workflow) -> BTreeMap<String, String> {
        self.secrets.resolve(&workflow.secrets)
    }
}

/// Prints each step as it finishes.
struct Trace {
    total: usize,
    /// Records numbered from here are nested steps (of loops, branches, calls).
    top_level: usize,
    /// Every record so far, the latest per step, as a resumed execution needs them.
    records: std::sync::Mutex<Vec<StepRecord>>,
    /// A dry run's stand-ins, which say how each effect was answered.
    world: Option<StubbedWorld>,
}

impl Trace {
    /// Where the answer of a step a dry run answered came from.
    fn answered_by(&self, step: &str) -> Option<String> {
        let calls = self.world.as_ref()?.calls();
        match &calls.iter().rev().find(|c| c.step == step)?.answered_by {
            AnsweredBy::Sample => Some("a sample of the real answer (nothing was sent)".into()),
            AnsweredBy::Stub(origin) => Some(format!("the stub in {origin} (nothing was sent)")),
            AnsweredBy::Nothing => None,
        }
    }
}

impl Journal for Trace {
    fn vars_evaluated(&self, vars: &Json) {
        if let Json::Object(map) = vars
            && !map.is_empty()
        {
            eprintln!("vars");
            for (name, value) in map {
                eprintln!("    {name} = {}", compact(value, 200));
            }
        }
    }

    fn step_finished<'a>(
        &'a self,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        if let Ok(mut records) = self.records.lock() {
            records.retain(|r| r.index != record.index);
            records.push(record.clone());
        }
        Box::pin(async move {
            let status = match (record.status, record.filtered) {
                (_, true) => "filtered: the run stops here",
                (StepStatus::Succeeded, _) => "ok",
                (StepStatus::Failed, _) => "FAILED",
                (StepStatus::Skipped, _) => "skipped (`if` was false)",
                (StepStatus::Retrying, _) if record.kind == "delay" => "waiting",
                (StepStatus::Retrying, _) => "failed, will retry",
            };
            let position = if record.index < self.top_level {
                format!("[{}/{}]", record.index + 1, self.total)
            } else {
                "  -".to_owned()
            };
            eprintln!(
                "{position} {} ({}) {status} {:.1} ms",
                record.name, record.kind, record.duration_ms
            );
            if !record.input.is_null() {
                eprintln!("    input  {}", indent(&pretty(&record.input)));
            }
            // Most local steps output what they rendered; say it once.
            if let Some(answered_by) = self.answered_by(&record.name) {
                eprintln!("    answer {answered_by}");
            }
            if !record.output.is_null() && record.output != record.input {
                eprintln!("    output {}", indent(&pretty(&record.output)));
            }
            if let Some(error) = &record.error {
                eprintln!("    error  {error}");
            }
            Ok(())
        })
    }
}

fn pretty(value: &Json) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn compact(value: &Json, limit: usize) -> String {
    let text = value.to_string();
    if text.chars().count() > limit {
        format!("{}...", text.chars().take(limit).collect::<String>())
    } else {
        text
    }
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n           ")
}
