//! One case run in process: its event built from the trigger (and its body held to the
//! webhook's `schema`, as the server's door holds it), its effects answered by stubs, its waits
//! (retries, delays) passed on a virtual clock by resuming the run at each due time, as the
//! worker resumes a stored run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use super::file::{BodySpec, Case, TestFile, TriggerSpec, WebhookSpec};
use crate::effects::clock::ManualClock;
use crate::effects::stand_in::{EffectCall, StubbedWorld, Unstubbed};
use crate::engine::{self, ExecOptions, Journal, JournalError, RunInfo, RunOutcome, RunRequest};
use crate::future::BoxFuture;
use crate::http::body::{BodyLimits, parse_body};
use crate::run::payload::PayloadFileError;
use crate::run::{Event, RunStatus, SavedPayload, StepRecord, SyncResponse, Trigger};
use crate::workflow::{Registry, Violation, Workflow};

/// More executions than any sane retry policy needs: a run still waiting after these is
/// reported rather than looped on forever.
const MAX_EXECUTIONS: usize = 1000;

/// What a case's run did.
#[derive(Debug)]
pub struct CaseRun {
    pub outcome: RunOutcome,
    /// The latest record of each step, in step order.
    pub records: Vec<StepRecord>,
    pub response: Option<SyncResponse>,
    pub calls: Vec<EffectCall>,
}

/// How a case ended: its run, or its body refused before any run started.
#[derive(Debug)]
pub enum CaseEnd {
    Ran(Box<CaseRun>),
    Refused(Refusal),
}

/// The server's answer to a body its webhook's `schema` refuses.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub violations: Vec<Violation>,
}

/// The status the server answers a body its `schema` refuses with.
pub const REFUSED_STATUS: u16 = 422;

/// Why a case could not be run at all (as opposed to failing its expectations).
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("the payload: {0}")]
    Payload(#[from] PayloadFileError),
    #[error("the payload cannot be parsed: {0}")]
    Body(String),
    #[error("path {path} does not match the webhook's path {pattern}")]
    Path { path: String, pattern: String },
    #[error("the run could not be recorded: {0}")]
    Journal(#[from] JournalError),
    #[error("the run was still waiting after {MAX_EXECUTIONS} executions")]
    NeverEnded,
}

/// Everything a case runs against besides itself.
pub struct Subject<'a> {
    pub file: &'a TestFile,
    pub workflow: &'a Workflow,
    pub registry: &'a Registry,
}

pub async fn run_case(subject: &Subject<'_>, case: &Case) -> Result<CaseEnd, CaseError> {
    let start = case.at.unwrap_or_else(Utc::now);
    let event = case_event(subject.workflow, &case.trigger, start)?;
    if let Some(refusal) = refused_at_the_door(subject.workflow, &case.trigger, &event) {
        return Ok(CaseEnd::Refused(refusal));
    }
    run_event(subject, case, &event, start)
        .await
        .map(|run| CaseEnd::Ran(Box::new(run)))
}

/// A webhook case whose body the workflow's `schema` refuses: the server would answer 422 and
/// start nothing.
fn refused_at_the_door(
    workflow: &Workflow,
    trigger: &TriggerSpec,
    event: &Event,
) -> Option<Refusal> {
    let TriggerSpec::Webhook(_) = trigger else {
        return None;
    };
    let schema = workflow.webhook.as_ref()?.schema.as_ref()?;
    let violations = schema.check(&event.body);
    (!violations.is_empty()).then_some(Refusal {
        status: REFUSED_STATUS,
        violations,
    })
}

/// Runs the case's event to its end, resuming at each due time on the virtual clock.
async fn run_event(
    subject: &Subject<'_>,
    case: &Case,
    event: &Event,
    start: DateTime<Utc>,
) -> Result<CaseRun, CaseError> {
    let clock = Arc::new(ManualClock::at(start));
    let unstubbed = if subject.file.default_stubs {
        Unstubbed::Sample
    } else {
        Unstubbed::Refuse
    };
    let stubs = case.stubs.iter().map(|s| s.to_stub()).collect();
    let world = StubbedWorld::new(stubs, unstubbed, clock.clone());
    let secrets = CaseSecrets {
        file: subject.file,
        case,
    };
    let callees = RegistryCallees {
        registry: subject.registry,
        secrets: &secrets,
    };
    let journal = MapJournal::default();
    let effects = world.effects();
    let options = ExecOptions {
        dry_run: false,
        started_at: Some(start),
        cancel: None,
        trace: None,
    };
    let run = RunInfo {
        id: format!("test-{}", uuid::Uuid::now_v7()),
        workflow: subject.workflow.name.clone(),
        attempt: 1,
    };
    let workflow_secrets = secrets.of(subject.workflow);
    for _ in 0..MAX_EXECUTIONS {
        let finished = journal.records();
        let request = RunRequest {
            workflow: subject.workflow,
            event,
            run: &run,
            secrets: &workflow_secrets,
            finished: &finished,
            effects: &effects,
            options: &options,
            callees: Some(&callees),
        };
        let outcome = engine::execute(request, &journal).await?;
        match (outcome.status, outcome.due_at) {
            (RunStatus::Retrying, Some(due)) => clock.set(due.max(start)),
            _ => {
                return Ok(CaseRun {
                    outcome,
                    records: journal.records(),
                    response: journal.response(),
                    calls: world.calls(),
                });
            }
        }
    }
    Err(CaseError::NeverEnded)
}

/// The secrets a case's runs see: the case's, then the file's; a declared secret given by
/// neither reads as `<NAME>`, so tests never depend on the machine's environment.
struct CaseSecrets<'a> {
    file: &'a TestFile,
    case: &'a Case,
}

impl CaseSecrets<'_> {
    fn of(&self, workflow: &Workflow) -> BTreeMap<String, String> {
        workflow
            .secrets
            .iter()
            .map(|name| {
                let value = (self.case.secrets.get(name))
                    .or_else(|| self.file.secrets.get(name))
                    .cloned()
                    .unwrap_or_else(|| format!("<{name}>"));
                (name.clone(), value)
            })
            .collect()
    }
}

struct RegistryCallees<'a> {
    registry: &'a Registry,
    secrets: &'a CaseSecrets<'a>,
}

impl engine::Callees for RegistryCallees<'_> {
    fn workflow(&self, name: &str) -> Option<Arc<Workflow>> {
        self.registry.get(name).cloned()
    }

    fn secrets(&self, workflow: &Workflow) -> BTreeMap<String, String> {
        self.secrets.of(workflow)
    }
}

fn case_event(
    workflow: &Workflow,
    trigger: &TriggerSpec,
    at: DateTime<Utc>,
) -> Result<Event, CaseError> {
    let mut event = match trigger {
        TriggerSpec::Webhook(spec) => webhook_event(workflow, spec)?,
        TriggerSpec::Schedule => Event::without_request(
            Trigger::Schedule { scheduled_at: at },
            Json::Object(Map::new()),
            Vec::new(),
        ),
        TriggerSpec::Manual { body } => Event::without_request(
            Trigger::Manual {
                started_by: "test".into(),
            },
            body.clone(),
            body.to_string().into_bytes(),
        ),
    };
    event.received_at = at;
    Ok(event)
}

fn webhook_event(workflow: &Workflow, spec: &WebhookSpec) -> Result<Event, CaseError> {
    let (raw, mut headers) = match &spec.body {
        BodySpec::Empty => (Vec::new(), Map::new()),
        BodySpec::Json(value) => {
            let mut headers = Map::new();
            headers.insert("content-type".into(), "application/json".into());
            (value.to_string().into_bytes(), headers)
        }
        BodySpec::File(path) => {
            let saved = SavedPayload::read(path)?;
            let headers = saved
                .headers
                .into_iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), Json::String(value)))
                .collect();
            (saved.body, headers)
        }
    };
    for (name, value) in &spec.headers {
        headers.insert(name.to_ascii_lowercase(), Json::String(value.clone()));
    }
    let content_type = headers.get("content-type").and_then(Json::as_str);
    let trigger = workflow.webhook.as_ref();
    let xml = trigger.map(|t| t.xml).unwrap_or_default();
    let body = parse_body(content_type, &raw, &BodyLimits::default(), xml)
        .map_err(|e| CaseError::Body(e.to_string()))?;
    let (path, params) = match (&spec.path, trigger) {
        (Some(path), Some(t)) => match t.path.matches(path) {
            Some(params) => (path.clone(), params),
            None => {
                return Err(CaseError::Path {
                    path: path.clone(),
                    pattern: t.path.as_str().to_owned(),
                });
            }
        },
        (Some(path), None) => (path.clone(), BTreeMap::new()),
        (None, Some(t)) => (t.path.as_str().to_owned(), BTreeMap::new()),
        (None, None) => ("/".to_owned(), BTreeMap::new()),
    };
    let method = (spec.method.clone())
        .or_else(|| trigger.and_then(|t| t.methods.first().cloned()))
        .unwrap_or_else(|| "POST".to_owned());
    let mut event = Event::without_request(Trigger::Webhook, body, raw);
    event.method = method.to_ascii_uppercase();
    event.path = path;
    event.params = params;
    event.query = spec.query.clone();
    event.headers = headers;
    Ok(event)
}

/// Records by step number, the latest replacing the earlier, as the store keeps them.
#[derive(Default)]
struct MapJournal {
    records: Mutex<BTreeMap<usize, StepRecord>>,
    response: Mutex<Option<SyncResponse>>,
}

impl MapJournal {
    fn records(&self) -> Vec<StepRecord> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.values().cloned().collect()
    }

    fn response(&self) -> Option<SyncResponse> {
        let response = self.response.lock().unwrap_or_else(|p| p.into_inner());
        response.clone()
    }
}

impl Journal for MapJournal {
    fn step_finished<'a>(
        &'a self,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.insert(record.index, record.clone());
        Box::pin(std::future::ready(Ok(())))
    }

    fn responded(&self, response: &SyncResponse) {
        let mut kept = self.response.lock().unwrap_or_else(|p| p.into_inner());
        *kept = Some(response.clone());
    }
}
