//! A workflow test file (`*.test.yaml`) read into cases: the trigger, the stubs and the
//! expectations, each remembering where it was written so a failure can point at it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use super::directory_of;
use super::stubs::{StubSpec, read_stubs};
use crate::diag::{Diagnostic, SourceFile, Span, closest};
use crate::lang::yaml::{self, Key, Node};
use crate::run::{RunStatus, StepStatus};

/// One test file, read.
#[derive(Debug)]
pub struct TestFile {
    pub path: PathBuf,
    /// The workflow under test: its name, or a workflow file relative to the test file.
    pub workflow: String,
    pub workflow_span: Span,
    /// Effects no stub answers get the step kind's sample answer instead of failing the case.
    pub default_stubs: bool,
    pub secrets: BTreeMap<String, String>,
    pub cases: Vec<Case>,
}

#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub span: Span,
    /// Where the virtual clock starts.
    pub at: Option<DateTime<Utc>>,
    pub trigger: TriggerSpec,
    pub secrets: BTreeMap<String, String>,
    pub stubs: Vec<StubSpec>,
    pub expect: Expect,
}

#[derive(Debug)]
pub enum TriggerSpec {
    Webhook(WebhookSpec),
    Schedule,
    Manual { body: Json },
}

#[derive(Debug, Default)]
pub struct WebhookSpec {
    pub body: BodySpec,
    pub headers: Vec<(String, String)>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub query: Map<String, Json>,
}

#[derive(Debug, Default)]
pub enum BodySpec {
    #[default]
    Empty,
    /// A payload file (its `.headers.json` beside it is read too).
    File(PathBuf),
    /// A value written in the test, sent as JSON.
    Json(Json),
}

/// A value the test expects, with its place in the file.
#[derive(Debug, Clone)]
pub struct Expected<T> {
    pub value: T,
    pub span: Span,
}

#[derive(Debug, Default)]
pub struct Expect {
    pub status: Option<Expected<RunStatus>>,
    pub error: Option<Expected<String>>,
    pub ran: Vec<Expected<String>>,
    pub skipped: Vec<Expected<String>>,
    pub not_ran: Vec<Expected<String>>,
    pub filtered: Option<Expected<String>>,
    pub steps: Vec<StepExpect>,
    pub response: Option<Node>,
    pub vars: Option<Node>,
    /// `refused:`: the webhook's `schema` refuses the body, so no run starts.
    pub refused: Option<RefusedExpect>,
}

/// `refused: true`, or `{status: 422, violations: [...]}`: each violation written is a subset
/// of one the body has (`{path, message}`), in any order.
#[derive(Debug)]
pub struct RefusedExpect {
    pub span: Span,
    pub status: Option<Expected<u64>>,
    pub violations: Vec<Node>,
}

#[derive(Debug)]
pub struct StepExpect {
    pub name: Expected<String>,
    pub status: Option<Expected<StepStatus>>,
    pub calls: Option<Expected<u64>>,
    pub attempts: Option<Expected<u64>>,
    pub error: Option<Expected<String>>,
    pub input: Option<Node>,
    pub output: Option<Node>,
}

const FILE_KEYS: &[&str] = &["workflow", "default_stubs", "secrets", "cases"];
const CASE_KEYS: &[&str] = &[
    "name", "at", "webhook", "schedule", "manual", "secrets", "stubs", "expect",
];
const WEBHOOK_KEYS: &[&str] = &["payload", "body", "headers", "method", "path", "query"];
const EXPECT_KEYS: &[&str] = &[
    "status", "error", "ran", "skipped", "not_ran", "filtered", "steps", "response", "vars",
    "refused",
];
const REFUSED_KEYS: &[&str] = &["status", "violations"];
const STEP_EXPECT_KEYS: &[&str] = &["status", "calls", "attempts", "error", "input", "output"];

/// Reads `path`, or every problem with it (file:line:col).
pub fn read(path: &Path) -> Result<TestFile, Vec<Diagnostic>> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let file = SourceFile::new(shown.clone(), String::new());
        vec![Diagnostic::error(
            Span::file_start(&file),
            format!("cannot read the test file: {e}"),
        )]
    })?;
    let file = SourceFile::new(shown, text);
    let root = yaml::parse(&file).map_err(|d| vec![d])?;
    let mut reader = Reader {
        base: directory_of(path),
        problems: Vec::new(),
    };
    let read = reader.file(&root, path);
    match read {
        Some(test) if reader.problems.is_empty() => Ok(test),
        _ => Err(reader.problems),
    }
}

/// Reads nodes, collecting every problem rather than stopping at the first.
pub(super) struct Reader {
    /// The test file's directory: payload files are relative to it.
    pub(super) base: PathBuf,
    pub(super) problems: Vec<Diagnostic>,
}

impl Reader {
    pub(super) fn error(&mut self, span: &Span, message: impl Into<String>) {
        self.problems.push(Diagnostic::error(span.clone(), message));
    }

    /// The node's entries, each key checked against `known`.
    pub(super) fn map<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
    ) -> Option<&'n [(Key, Node)]> {
        let Some(entries) = node.as_map() else {
            self.error(
                &node.span,
                format!("{what} must be a mapping, not {}", node.kind_name()),
            );
            return None;
        };
        for (key, _) in entries {
            if !known.contains(&key.name.as_str()) {
                let mut problem = Diagnostic::error(
                    key.span.clone(),
                    format!("unknown key `{}` in {what}", key.name),
                );
                problem = match closest(&key.name, known.iter().copied()) {
                    Some(near) => problem.with_hint(format!("did you mean `{near}`?")),
                    None => problem.with_hint(format!("known keys: {}", known.join(", "))),
                };
                self.problems.push(problem);
            }
        }
        Some(entries)
    }

    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            yaml::NodeValue::Str(s) => Some(s.clone()),
            yaml::NodeValue::Int(i) => Some(i.to_string()),
            yaml::NodeValue::Bool(b) => Some(b.to_string()),
            _ => {
                self.error(
                    &node.span,
                    format!("{what} must be text, not {}", node.kind_name()),
                );
                None
            }
        }
    }

    pub(super) fn number(&mut self, node: &Node, what: &str) -> Option<u64> {
        match node.value {
            yaml::NodeValue::Int(i) if i >= 0 => u64::try_from(i).ok(),
            _ => {
                self.error(&node.span, format!("{what} must be a whole number"));
                None
            }
        }
    }

    pub(super) fn flag(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            yaml::NodeValue::Bool(b) => Some(b),
            _ => {
                self.error(&node.span, format!("{what} must be true or false"));
                None
            }
        }
    }

    /// A mapping of names to text (headers, secrets), in the order written.
    pub(super) fn text_map(&mut self, node: &Node, what: &str) -> Vec<(String, String)> {
        let Some(entries) = node.as_map() else {
            self.error(
                &node.span,
                format!("{what} must be a mapping of names to text"),
            );
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|(key, value)| Some((key.name.clone(), self.string(value, what)?)))
            .collect()
    }

    fn names(&mut self, node: &Node, what: &str) -> Vec<Expected<String>> {
        let items: Vec<&Node> = match node.as_seq() {
            Some(items) => items.iter().collect(),
            None => vec![node],
        };
        items
            .into_iter()
            .filter_map(|item| {
                let value = self.string(item, what)?;
                Some(Expected {
                    value,
                    span: item.span.clone(),
                })
            })
            .collect()
    }

    fn instant(&mut self, node: &Node, what: &str) -> Option<DateTime<Utc>> {
        let text = self.string(node, what)?;
        match DateTime::parse_from_rfc3339(&text) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(e) => {
                self.error(
                    &node.span,
                    format!("{what} must be an RFC 3339 time such as 2026-03-01T12:00:00Z: {e}"),
                );
                None
            }
        }
    }

    fn file(&mut self, root: &Node, path: &Path) -> Option<TestFile> {
        let entries = self.map(root, "a test file", FILE_KEYS)?;
        let mut test = TestFile {
            path: path.to_path_buf(),
            workflow: String::new(),
            workflow_span: root.span.clone(),
            default_stubs: false,
            secrets: BTreeMap::new(),
            cases: Vec::new(),
        };
        let mut saw_cases = false;
        for (key, value) in entries {
            match key.name.as_str() {
                "workflow" => {
                    test.workflow = self.string(value, "`workflow`").unwrap_or_default();
                    test.workflow_span = value.span.clone();
                }
                "default_stubs" => {
                    test.default_stubs = self.flag(value, "`default_stubs`").unwrap_or(false)
                }
                "secrets" => test.secrets = self.text_map(value, "`secrets`").into_iter().collect(),
                "cases" => {
                    saw_cases = true;
                    test.cases = self.cases(value);
                }
                _ => {}
            }
        }
        if test.workflow.is_empty() {
            self.error(
                &root.span,
                "a test file names its workflow: `workflow: <name or file>`",
            );
        }
        if !saw_cases {
            self.error(&root.span, "a test file has `cases:`, a list of cases");
        }
        Some(test)
    }

    fn cases(&mut self, node: &Node) -> Vec<Case> {
        let Some(items) = node.as_seq() else {
            self.error(&node.span, "`cases` must be a list");
            return Vec::new();
        };
        items.iter().filter_map(|item| self.case(item)).collect()
    }

    fn case(&mut self, node: &Node) -> Option<Case> {
        let entries = self.map(node, "a case", CASE_KEYS)?;
        let mut case = Case {
            name: String::new(),
            span: node.span.clone(),
            at: None,
            trigger: TriggerSpec::Webhook(WebhookSpec::default()),
            secrets: BTreeMap::new(),
            stubs: Vec::new(),
            expect: Expect::default(),
        };
        let mut triggers = 0;
        for (key, value) in entries {
            match key.name.as_str() {
                "name" => case.name = self.string(value, "a case's `name`").unwrap_or_default(),
                "at" => case.at = self.instant(value, "`at`"),
                "webhook" | "schedule" | "manual" => {
                    triggers += 1;
                    case.trigger = self.trigger(&key.name, value);
                }
                "secrets" => case.secrets = self.text_map(value, "`secrets`").into_iter().collect(),
                "stubs" => case.stubs = read_stubs(self, value),
                "expect" => case.expect = self.expect(value),
                _ => {}
            }
        }
        if case.name.is_empty() {
            self.error(&node.span, "a case has a `name`");
        }
        if triggers > 1 {
            self.error(
                &node.span,
                "a case has one trigger: `webhook`, `schedule` or `manual`",
            );
        }
        Some(case)
    }

    fn trigger(&mut self, kind: &str, node: &Node) -> TriggerSpec {
        match kind {
            "schedule" => TriggerSpec::Schedule,
            "manual" => {
                let body = match node.as_map() {
                    Some(entries) => entries
                        .iter()
                        .find(|(k, _)| k.name == "body")
                        .map(|(_, v)| v.to_json())
                        .unwrap_or(Json::Object(Map::new())),
                    None => Json::Object(Map::new()),
                };
                TriggerSpec::Manual { body }
            }
            _ => TriggerSpec::Webhook(self.webhook(node).unwrap_or_default()),
        }
    }

    fn webhook(&mut self, node: &Node) -> Option<WebhookSpec> {
        let entries = self.map(node, "`webhook`", WEBHOOK_KEYS)?;
        let mut spec = WebhookSpec::default();
        for (key, value) in entries {
            match key.name.as_str() {
                "payload" => {
                    let file = self.string(value, "`payload`")?;
                    spec.body = BodySpec::File(self.base.join(file));
                }
                "body" => spec.body = BodySpec::Json(value.to_json()),
                "headers" => spec.headers = self.text_map(value, "`headers`"),
                "method" => spec.method = self.string(value, "`method`"),
                "path" => spec.path = self.string(value, "`path`"),
                "query" => {
                    spec.query = self
                        .text_map(value, "`query`")
                        .into_iter()
                        .map(|(k, v)| (k, Json::String(v)))
                        .collect()
                }
                _ => {}
            }
        }
        if entries
            .iter()
            .filter(|(k, _)| k.name == "payload" || k.name == "body")
            .count()
            > 1
        {
            self.error(
                &node.span,
                "a webhook gives its body as `payload` (a file) or `body`, not both",
            );
        }
        Some(spec)
    }

    fn expect(&mut self, node: &Node) -> Expect {
        let mut expect = Expect::default();
        let Some(entries) = self.map(node, "`expect`", EXPECT_KEYS) else {
            return expect;
        };
        for (key, value) in entries {
            let span = value.span.clone();
            match key.name.as_str() {
                "status" => {
                    expect.status = self.run_status(value).map(|value| Expected { value, span })
                }
                "error" => {
                    expect.error = self
                        .string(value, "`error`")
                        .map(|value| Expected { value, span })
                }
                "ran" => expect.ran = self.names(value, "`ran`"),
                "skipped" => expect.skipped = self.names(value, "`skipped`"),
                "not_ran" => expect.not_ran = self.names(value, "`not_ran`"),
                "filtered" => {
                    expect.filtered = self
                        .string(value, "`filtered`")
                        .map(|value| Expected { value, span })
                }
                "steps" => expect.steps = self.step_expectations(value),
                "response" => expect.response = Some(value.clone()),
                "vars" => expect.vars = Some(value.clone()),
                "refused" => expect.refused = self.refused(value),
                _ => {}
            }
        }
        if expect.refused.is_some() && entries.len() > 1 {
            self.error(
                &node.span,
                "`refused` means no run starts: it is not combined with expectations of a run",
            );
        }
        expect
    }

    fn refused(&mut self, node: &Node) -> Option<RefusedExpect> {
        let mut refused = RefusedExpect {
            span: node.span.clone(),
            status: None,
            violations: Vec::new(),
        };
        if let yaml::NodeValue::Bool(true) = node.value {
            return Some(refused);
        }
        if node.as_map().is_none() {
            self.error(
                &node.span,
                "`refused` is `true` or a mapping of `status` and `violations`",
            );
            return None;
        }
        for (key, value) in self.map(node, "`refused`", REFUSED_KEYS)? {
            match key.name.as_str() {
                "status" => {
                    refused.status = self.number(value, "`status`").map(|status| Expected {
                        value: status,
                        span: value.span.clone(),
                    })
                }
                "violations" => match value.as_seq() {
                    Some(items) => refused.violations = items.to_vec(),
                    None => self.error(
                        &value.span,
                        "`violations` is a list, each a subset of one violation: `{path, message}`",
                    ),
                },
                _ => {}
            }
        }
        Some(refused)
    }

    fn run_status(&mut self, node: &Node) -> Option<RunStatus> {
        let text = self.string(node, "`status`")?;
        let status = RunStatus::parse(&text);
        if status.is_none() {
            let known: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
            self.error(
                &node.span,
                format!("`status` is one of {}, not '{text}'", known.join(", ")),
            );
        }
        status
    }

    fn step_expectations(&mut self, node: &Node) -> Vec<StepExpect> {
        let Some(entries) = node.as_map() else {
            self.error(
                &node.span,
                "`steps` maps step names to what each should have done",
            );
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|(key, value)| self.step_expect(key, value))
            .collect()
    }

    fn step_expect(&mut self, key: &Key, node: &Node) -> Option<StepExpect> {
        let what = format!("the expectations of step '{}'", key.name);
        let entries = self.map(node, &what, STEP_EXPECT_KEYS)?;
        let mut expect = StepExpect {
            name: Expected {
                value: key.name.clone(),
                span: key.span.clone(),
            },
            status: None,
            calls: None,
            attempts: None,
            error: None,
            input: None,
            output: None,
        };
        for (field, value) in entries {
            let span = value.span.clone();
            match field.name.as_str() {
                "status" => {
                    expect.status = self
                        .step_status(value)
                        .map(|value| Expected { value, span })
                }
                "calls" => {
                    expect.calls = self
                        .number(value, "`calls`")
                        .map(|value| Expected { value, span })
                }
                "attempts" => {
                    expect.attempts = self
                        .number(value, "`attempts`")
                        .map(|value| Expected { value, span })
                }
                "error" => {
                    expect.error = self
                        .string(value, "`error`")
                        .map(|value| Expected { value, span })
                }
                "input" => expect.input = Some(value.clone()),
                "output" => expect.output = Some(value.clone()),
                _ => {}
            }
        }
        Some(expect)
    }

    fn step_status(&mut self, node: &Node) -> Option<StepStatus> {
        let text = self.string(node, "`status`")?;
        let status = StepStatus::parse(&text);
        if status.is_none() {
            self.error(
                &node.span,
                format!(
                    "a step's `status` is succeeded, failed, skipped or retrying, not '{text}'"
                ),
            );
        }
        status
    }
}
