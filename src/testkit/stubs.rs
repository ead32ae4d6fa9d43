//! The `stubs` of a case (and `run --stub` files): what each effect answers instead of the
//! world — an HTTP answer or a transport error, an email's delivery or refusal, a command's
//! exit and output — one answer, or a list answered in turn to exercise retries.

use serde_json::Value as Json;

use super::file::Reader;
use crate::effects::HttpError;
use crate::effects::HttpResponse;
use crate::effects::mail::{Delivery, MailError};
use crate::effects::process::{Captured, Exit, ProcessOutput};
use crate::effects::stand_in::{Stub, StubAnswer, StubTarget};
use crate::lang::yaml::{Key, Node};

/// A stub as written; a fresh [`Stub`] is made from it for each run of its case.
#[derive(Debug, Clone)]
pub struct StubSpec {
    pub target: StubTarget,
    pub answers: Vec<StubAnswer>,
    /// `file:line:col`, shown when the stub answers.
    pub origin: String,
}

impl StubSpec {
    pub fn to_stub(&self) -> Stub {
        Stub::new(
            self.target.clone(),
            self.answers.clone(),
            self.origin.clone(),
        )
    }
}

const STUB_KEYS: &[&str] = &["step", "method", "url", "http", "email", "exec"];
const HTTP_KEYS: &[&str] = &["status", "headers", "body", "error"];
const EMAIL_KEYS: &[&str] = &["error", "permanent"];
const EXEC_KEYS: &[&str] = &["exit", "stdout", "stderr"];

pub(super) fn read_stubs(reader: &mut Reader, node: &Node) -> Vec<StubSpec> {
    let Some(items) = node.as_seq() else {
        reader.error(&node.span, "`stubs` must be a list");
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| read_stub(reader, item))
        .collect()
}

/// One stub: `step:` or `method:`/`url:`, and one of `http`, `email`, `exec`.
pub(super) fn read_stub(reader: &mut Reader, node: &Node) -> Option<StubSpec> {
    let entries = reader.map(node, "a stub", STUB_KEYS)?;
    let field = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
    let target = match (field("step"), field("url")) {
        (Some(step), None) => StubTarget::Step(reader.string(step, "`step`")?),
        (None, Some(url)) => StubTarget::Http {
            method: match field("method") {
                Some(m) => Some(reader.string(m, "`method`")?),
                None => None,
            },
            url: reader.string(url, "`url`")?,
        },
        _ => {
            reader.error(
                &node.span,
                "a stub answers a step (`step: name`) or requests (`url: pattern`, with an optional `method`), one of the two",
            );
            return None;
        }
    };
    let (answers, kind) = answers_of(reader, node, entries)?;
    if matches!(target, StubTarget::Http { .. }) && kind != "http" {
        reader.error(
            &node.span,
            "a stub with `url` answers HTTP requests: use `http`",
        );
    }
    let span = &node.span;
    Some(StubSpec {
        target,
        answers,
        origin: format!("{}:{}:{}", span.file.path, span.line, span.col),
    })
}

/// A stub file for one step (`run --stub STEP=FILE`): `http:`, `email:` or `exec:`.
pub(super) fn read_step_answers(reader: &mut Reader, node: &Node, step: &str) -> Option<StubSpec> {
    let entries = reader.map(node, "a stub file", &["http", "email", "exec"])?;
    let (answers, _) = answers_of(reader, node, entries)?;
    let span = &node.span;
    Some(StubSpec {
        target: StubTarget::Step(step.to_owned()),
        answers,
        origin: span.file.path.clone(),
    })
}

/// The answers of the one answer kind the stub gives, and that kind.
fn answers_of(
    reader: &mut Reader,
    node: &Node,
    entries: &[(Key, Node)],
) -> Option<(Vec<StubAnswer>, &'static str)> {
    let given: Vec<(&'static str, &Node)> = ["http", "email", "exec"]
        .into_iter()
        .filter_map(|kind| {
            let found = entries.iter().find(|(k, _)| k.name == kind);
            found.map(|(_, answers)| (kind, answers))
        })
        .collect();
    let [(kind, answers)] = given.as_slice() else {
        reader.error(
            &node.span,
            "a stub gives one answer kind: `http`, `email` or `exec`",
        );
        return None;
    };
    let read = match *kind {
        "http" => http_answer,
        "email" => email_answer,
        _ => exec_answer,
    };
    Some((each(reader, answers, read), kind))
}

/// One answer, or a list of them answered in turn.
fn each(
    reader: &mut Reader,
    node: &Node,
    read: fn(&mut Reader, &Node) -> Option<StubAnswer>,
) -> Vec<StubAnswer> {
    match node.as_seq() {
        Some([]) => {
            reader.error(&node.span, "a list of answers has at least one");
            Vec::new()
        }
        Some(items) => items.iter().filter_map(|item| read(reader, item)).collect(),
        None => read(reader, node).into_iter().collect(),
    }
}

/// `{status, headers, body}` (a mapping or list body is JSON, text is sent as is), or
/// `{error: text}` for a request that got no answer.
fn http_answer(reader: &mut Reader, node: &Node) -> Option<StubAnswer> {
    let entries = reader.map(node, "an HTTP answer", HTTP_KEYS)?;
    let mut response = HttpResponse {
        status: 200,
        headers: Vec::new(),
        body: Vec::new(),
    };
    let mut json_body = false;
    for (key, value) in entries {
        match key.name.as_str() {
            "error" => {
                let text = reader.string(value, "`error`")?;
                return Some(StubAnswer::Http(Err(HttpError::Connect(text))));
            }
            "status" => match reader.number(value, "`status`")? {
                code @ 100..=599 => response.status = code as u16,
                _ => reader.error(&value.span, "`status` is an HTTP status, 100 to 599"),
            },
            "headers" => {
                response.headers = reader
                    .text_map(value, "`headers`")
                    .into_iter()
                    .map(|(name, v)| (name.to_ascii_lowercase(), v))
                    .collect()
            }
            "body" => {
                let (bytes, is_json) = body_bytes(value);
                response.body = bytes;
                json_body = is_json;
            }
            _ => {}
        }
    }
    let has_type = response.headers.iter().any(|(n, _)| n == "content-type");
    if json_body && !has_type {
        response
            .headers
            .push(("content-type".into(), "application/json".into()));
    }
    Some(StubAnswer::Http(Ok(response)))
}

fn body_bytes(node: &Node) -> (Vec<u8>, bool) {
    match node.to_json() {
        Json::String(text) => (text.into_bytes(), false),
        other => (other.to_string().into_bytes(), true),
    }
}

/// `delivered` (or `{}`), or `{error: text, permanent: bool}`: a refusal, temporary unless
/// `permanent`.
fn email_answer(reader: &mut Reader, node: &Node) -> Option<StubAnswer> {
    if node.as_str() == Some("delivered") {
        return Some(delivered());
    }
    let entries = reader.map(
        node,
        "an email answer (`delivered` or `{error: ...}`)",
        EMAIL_KEYS,
    )?;
    let field = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
    let Some(error) = field("error") else {
        return Some(delivered());
    };
    let message = reader.string(error, "`error`")?;
    let permanent = match field("permanent") {
        Some(flag) => reader.flag(flag, "`permanent`")?,
        None => false,
    };
    let server = "the stubbed mail server".to_owned();
    Some(StubAnswer::Mail(Err(if permanent {
        MailError::Rejected { server, message }
    } else {
        MailError::Deferred { server, message }
    })))
}

fn delivered() -> StubAnswer {
    StubAnswer::Mail(Ok(Delivery::Smtp {
        reply: "250 accepted by a stub".into(),
        recipients: 1,
    }))
}

/// `{exit, stdout, stderr}`, each optional (exit 0, empty output).
fn exec_answer(reader: &mut Reader, node: &Node) -> Option<StubAnswer> {
    let entries = reader.map(node, "a command's result", EXEC_KEYS)?;
    let mut output = ProcessOutput {
        exit: Exit::Code(0),
        timed_out: false,
        stdout: Captured::default(),
        stderr: Captured::default(),
    };
    for (key, value) in entries {
        match key.name.as_str() {
            "exit" => match &value.value {
                crate::lang::yaml::NodeValue::Int(code) => {
                    output.exit = Exit::Code(i32::try_from(*code).unwrap_or(i32::MAX))
                }
                _ => reader.error(&value.span, "`exit` is the command's exit code"),
            },
            "stdout" => output.stdout = captured(reader.string(value, "`stdout`")?),
            "stderr" => output.stderr = captured(reader.string(value, "`stderr`")?),
            _ => {}
        }
    }
    Some(StubAnswer::Process(Ok(output)))
}

fn captured(text: String) -> Captured {
    Captured {
        bytes: text.into_bytes(),
        truncated: false,
    }
}
