//! `exec`: one local command as an argv list (never a shell), with templated arguments, `env`
//! and `stdin`, a timeout that kills its process group, and captured, capped output. Off unless
//! the server enables it.

use std::time::Duration;

use serde_json::Value as Json;

use crate::diag::{Diagnostic, Span};
use crate::effects::Effects;
use crate::effects::process::{Exit, ProcessOutput, ProcessRequest, signal_name};
use crate::lang::compile::Compiler;
use crate::lang::yaml::{Node, NodeValue};
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate};

/// The keys of an `exec` step.
pub const KEYS: &[&str] = &[
    "command",
    "cwd",
    "env",
    "stdin",
    "timeout",
    "output_limit",
    "expect_exit",
];
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Kept of stdout and of stderr, each.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;
/// Output is recorded with the run; more than this belongs in a file the command writes.
pub const MAX_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;
/// Variables hookflow sets for every command (a step's `env` may replace them).
pub const RUN_ID_VAR: &str = "HOOKFLOW_RUN_ID";
pub const STEP_VAR: &str = "HOOKFLOW_STEP";
const STDERR_TAIL: usize = 300;
const DISABLED: &str = "`exec` steps are disabled on this server; enable them with `exec: { enabled: true }` in hookflow.yaml";

#[derive(Debug)]
pub struct ExecStep {
    /// Written out in the workflow: payload data never chooses what runs.
    program: String,
    args: Vec<Part>,
    cwd: Option<String>,
    env: Vec<(String, Part)>,
    stdin: Option<Part>,
    timeout: Duration,
    output_limit: usize,
    expect_exit: Vec<i32>,
}

/// A templated value, and whether its template reads a secret: such values are recorded as
/// `***` whatever filter transformed them (the engine only masks exact secret values).
#[derive(Debug)]
struct Part {
    template: ValueTemplate,
    secret: bool,
}

/// The command as rendered, before it runs.
#[derive(Debug, Clone)]
pub struct RenderedExec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<String>,
    pub timeout: Duration,
    pub output_limit: usize,
    expect_exit: Vec<i32>,
    /// Which of `args`, `env` and `stdin` are shown as `***` in the record.
    secret_args: Vec<bool>,
    secret_env: Vec<String>,
    secret_stdin: bool,
}

impl RenderedExec {
    pub fn to_json(&self) -> Json {
        let mask = |value: &str, secret: bool| {
            Json::String(if secret {
                "***".into()
            } else {
                value.to_owned()
            })
        };
        let mut command = vec![Json::String(self.program.clone())];
        command.extend(
            self.args
                .iter()
                .zip(&self.secret_args)
                .map(|(arg, secret)| mask(arg, *secret)),
        );
        let env: serde_json::Map<String, Json> = self
            .env
            .iter()
            .map(|(name, value)| (name.clone(), mask(value, self.secret_env.contains(name))))
            .collect();
        serde_json::json!({
            "command": command,
            "cwd": self.cwd,
            "env": env,
            "stdin": self.stdin.as_deref().map(|s| mask(s, self.secret_stdin)),
        })
    }
}

impl ExecStep {
    /// `kind_span` is the `exec` key, where "disabled on this server" points.
    pub fn compile(c: &mut Compiler, node: &Node, kind_span: &Span) -> Option<Self> {
        let enabled = c.options.exec_enabled;
        if !enabled {
            c.push(Diagnostic::error(kind_span.clone(), DISABLED).with_hint(
                "`hookflow validate` and `hookflow run` read ./hookflow.yaml, or the file given with --config",
            ));
        }
        // The rest is checked even when disabled, so one pass shows every problem.
        let fields = c.fields(node, "`exec`", KEYS, &["command"])?;
        let command = fields.get("command").and_then(|n| compile_command(c, n));
        let cwd = match fields.get("cwd") {
            Some(n) => compile_cwd(c, n).map(Some),
            None => Some(None),
        };
        let env = match fields.get("env") {
            Some(n) => compile_env(c, n),
            None => Some(Vec::new()),
        };
        let stdin = match fields.get("stdin") {
            Some(n) => c.value(n).map(|t| Some(part(c, t))),
            None => Some(None),
        };
        let timeout = match fields.get("timeout") {
            Some(n) => c.duration(n, "`timeout`").and_then(|d| {
                if d.is_zero() {
                    c.error(n.span.clone(), "`timeout` must be longer than 0");
                    None
                } else {
                    Some(d)
                }
            }),
            None => Some(DEFAULT_TIMEOUT),
        };
        let output_limit = match fields.get("output_limit") {
            Some(n) => c.size(n, "`output_limit`").and_then(|size| {
                if size > MAX_OUTPUT_LIMIT {
                    c.error(
                        n.span.clone(),
                        "`output_limit` is at most 16MiB: output is recorded with the run",
                    );
                    None
                } else {
                    Some(size)
                }
            }),
            None => Some(DEFAULT_OUTPUT_LIMIT),
        };
        let expect_exit = match fields.get("expect_exit") {
            Some(n) => compile_expect_exit(c, n),
            None => Some(vec![0]),
        };
        let (program, args) = command?;
        let step = Self {
            program,
            args,
            cwd: cwd?,
            env: env?,
            stdin: stdin?,
            timeout: timeout?,
            output_limit: output_limit?,
            expect_exit: expect_exit?,
        };
        enabled.then_some(step)
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedExec, StepError> {
        let mut args = Vec::new();
        for (index, arg) in self.args.iter().enumerate() {
            let text = arg.template.render_string(scope).map_err(|e| {
                StepError::permanent(format!(
                    "`command` item {}: {} (each item is exactly one argument)",
                    index + 2,
                    e.0
                ))
            })?;
            args.push(text);
        }
        let mut env = vec![
            (RUN_ID_VAR.to_owned(), id.run_id.to_owned()),
            (STEP_VAR.to_owned(), id.step_name.to_owned()),
        ];
        let mut secret_env = Vec::new();
        for (name, value) in &self.env {
            let text = value
                .template
                .render_string(scope)
                .map_err(|e| StepError::permanent(format!("`env` {name}: {}", e.0)))?;
            env.retain(|(existing, _)| existing != name);
            env.push((name.clone(), text));
            if value.secret {
                secret_env.push(name.clone());
            }
        }
        let stdin = match &self.stdin {
            None => None,
            Some(part) => Some(match part.template.render(scope)? {
                Json::String(text) => text,
                Json::Null => String::new(),
                other => other.to_string(),
            }),
        };
        for (what, text) in args
            .iter()
            .map(|a| ("an argument", a))
            .chain(env.iter().map(|(_, v)| ("an `env` value", v)))
        {
            // The operating system ends a C string there: refuse rather than pass a cut value.
            if text.contains('\0') {
                return Err(StepError::permanent(format!(
                    "{what} contains a NUL character, which a command cannot receive"
                )));
            }
        }
        Ok(RenderedExec {
            program: self.program.clone(),
            secret_args: self.args.iter().map(|a| a.secret).collect(),
            args,
            cwd: self.cwd.clone(),
            env,
            stdin,
            timeout: self.timeout,
            output_limit: self.output_limit,
            expect_exit: self.expect_exit.clone(),
            secret_env,
            secret_stdin: self.stdin.as_ref().is_some_and(|p| p.secret),
        })
    }
}

fn part(c: &Compiler, template: ValueTemplate) -> Part {
    let secret = template
        .variables(&c.templates)
        .iter()
        .any(|v| v == "secrets" || v.starts_with("secrets.") || v.starts_with("secrets["));
    Part { template, secret }
}

/// `[program, arg, ...]`: the program written out, each argument one text template.
fn compile_command(c: &mut Compiler, node: &Node) -> Option<(String, Vec<Part>)> {
    let items = match &node.value {
        NodeValue::Seq(items) if !items.is_empty() => items,
        NodeValue::Seq(_) => {
            c.error(
                node.span.clone(),
                "`command` is empty; give the program, then its arguments",
            );
            return None;
        }
        NodeValue::Str(line) => {
            let words: Vec<String> = line
                .split_whitespace()
                .map(|w| format!("\"{w}\""))
                .collect();
            c.push(
                Diagnostic::error(
                    node.span.clone(),
                    "`command` must be a list: the program, then each argument; no shell splits a string",
                )
                .with_hint(format!("write `command: [{}]`", words.join(", "))),
            );
            return None;
        }
        _ => {
            c.error(
                node.span.clone(),
                format!("`command` must be a list, found {}", node.kind_name()),
            );
            return None;
        }
    };
    let (first, rest) = items.split_first()?;
    let program = match c.text(first, "the program") {
        Some(ValueTemplate::Literal(Json::String(p))) if p.trim().is_empty() => {
            c.error(first.span.clone(), "the program is empty");
            None
        }
        Some(ValueTemplate::Literal(Json::String(p))) => Some(p),
        Some(_) => {
            c.push(
                Diagnostic::error(
                    first.span.clone(),
                    "the program must be written out, not a template: data from a request must never choose what runs",
                )
                .with_hint("pass the data as an argument or in `env`"),
            );
            None
        }
        None => None,
    };
    let mut args = Vec::new();
    let mut ok = true;
    for item in rest {
        match c.text(item, "an argument of `command`") {
            Some(template) => args.push(part(c, template)),
            None => ok = false,
        }
    }
    let program = program?;
    ok.then_some((program, args))
}

/// The working directory is written out: with a relative program it decides what runs.
fn compile_cwd(c: &mut Compiler, node: &Node) -> Option<String> {
    match c.text(node, "`cwd`")? {
        ValueTemplate::Literal(Json::String(dir)) if dir.trim().is_empty() => {
            c.error(node.span.clone(), "`cwd` is empty");
            None
        }
        ValueTemplate::Literal(Json::String(dir)) => Some(dir),
        _ => {
            c.push(
                Diagnostic::error(
                    node.span.clone(),
                    "`cwd` must be written out, not a template: it decides which relative program runs",
                )
                .with_hint("pass the data as an argument or in `env`"),
            );
            None
        }
    }
}

fn compile_env(c: &mut Compiler, node: &Node) -> Option<Vec<(String, Part)>> {
    let entries = c.mapping(node, "`env`")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (key, value) in entries {
        if !is_env_name(&key.name) {
            c.push(
                Diagnostic::error(
                    key.span.clone(),
                    format!("'{}' is not an environment variable name", key.name),
                )
                .with_hint("letters, digits and `_`, not starting with a digit"),
            );
            ok = false;
            continue;
        }
        match c.text(value, "an `env` value") {
            Some(template) => out.push((key.name.clone(), part(c, template))),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn compile_expect_exit(c: &mut Compiler, node: &Node) -> Option<Vec<i32>> {
    let items: Vec<&Node> = match &node.value {
        NodeValue::Seq(items) if !items.is_empty() => items.iter().collect(),
        NodeValue::Seq(_) => {
            c.error(node.span.clone(), "`expect_exit` is empty; list at least 0");
            return None;
        }
        _ => vec![node],
    };
    let mut codes = Vec::new();
    for item in items {
        match item.value {
            NodeValue::Int(code) if (0..=255).contains(&code) => codes.push(code as i32),
            _ => {
                c.error(
                    item.span.clone(),
                    "`expect_exit` takes exit codes: whole numbers from 0 to 255",
                );
                return None;
            }
        }
    }
    Some(codes)
}

/// Run the command and judge how it ended against `expect_exit`.
pub async fn execute(rendered: RenderedExec, effects: &Effects) -> Result<Json, StepError> {
    let request = ProcessRequest {
        program: rendered.program.clone(),
        args: rendered.args.clone(),
        env: rendered.env.clone(),
        cwd: rendered.cwd.clone(),
        stdin: rendered.stdin.clone().map(String::into_bytes),
        timeout: rendered.timeout,
        output_limit: rendered.output_limit,
    };
    let finished = effects.process.run(request).await.map_err(|e| StepError {
        message: e.to_string(),
        output: None,
        transient: e.is_transient(),
    })?;
    judge(&rendered, &finished)
}

fn judge(rendered: &RenderedExec, finished: &ProcessOutput) -> Result<Json, StepError> {
    let output = output_json(finished);
    let program = &rendered.program;
    if finished.timed_out {
        return Err(StepError {
            message: format!(
                "{program}: timed out after {}; its process group was killed",
                humanize(rendered.timeout)
            ),
            output: Some(output),
            transient: true,
        });
    }
    let message = match finished.exit {
        Exit::Code(code) if rendered.expect_exit.contains(&code) => return Ok(output),
        Exit::Code(code) => format!(
            "{program}: exit code {code}{}",
            tail(&finished.stderr.bytes)
        ),
        Exit::Signal(signal) => format!(
            "{program}: killed by signal {signal} ({}){}",
            signal_name(signal).unwrap_or("unknown"),
            tail(&finished.stderr.bytes)
        ),
    };
    Err(StepError {
        message,
        output: Some(output),
        transient: false,
    })
}

fn output_json(finished: &ProcessOutput) -> Json {
    let (code, signal) = match finished.exit {
        Exit::Code(code) => (Some(code), None),
        Exit::Signal(signal) => (
            None,
            Some(
                signal_name(signal)
                    .map(str::to_owned)
                    .unwrap_or_else(|| signal.to_string()),
            ),
        ),
    };
    serde_json::json!({
        "exit_code": code,
        "signal": signal,
        "stdout": String::from_utf8_lossy(&finished.stdout.bytes),
        "stderr": String::from_utf8_lossy(&finished.stderr.bytes),
        "stdout_truncated": finished.stdout.truncated,
        "stderr_truncated": finished.stderr.truncated,
    })
}

/// `: <the end of stderr>`, for the error message; empty when there is none.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let count = text.chars().count();
    if count <= STDERR_TAIL {
        return format!(": {text}");
    }
    let end: String = text.chars().skip(count - STDERR_TAIL).collect();
    format!(": ...{end}")
}

fn humanize(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::process::Captured;

    fn rendered(expect_exit: Vec<i32>) -> RenderedExec {
        RenderedExec {
            program: "/bin/deploy".into(),
            args: vec!["abc".into(), "token".into()],
            cwd: None,
            env: vec![
                ("A".into(), "1".into()),
                ("TOKEN".into(), "t0ps3cret".into()),
            ],
            stdin: Some("hello".into()),
            timeout: Duration::from_millis(500),
            output_limit: 10,
            expect_exit,
            secret_args: vec![false, true],
            secret_env: vec!["TOKEN".into()],
            secret_stdin: true,
        }
    }

    fn finished(exit: Exit, stderr: &str) -> ProcessOutput {
        ProcessOutput {
            exit,
            timed_out: false,
            stdout: Captured {
                bytes: b"out".to_vec(),
                truncated: true,
            },
            stderr: Captured {
                bytes: stderr.as_bytes().to_vec(),
                truncated: false,
            },
        }
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("DEPLOY_ENV"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("A-B"));
        assert!(!is_env_name("A=B"));
        assert!(!is_env_name(""));
    }

    #[test]
    fn the_record_masks_values_read_from_secrets() {
        let record = rendered(vec![0]).to_json();
        assert_eq!(
            record["command"],
            serde_json::json!(["/bin/deploy", "abc", "***"])
        );
        assert_eq!(record["env"]["A"], "1");
        assert_eq!(record["env"]["TOKEN"], "***");
        assert_eq!(record["stdin"], "***");
        assert_eq!(record["cwd"], Json::Null);
    }

    #[test]
    fn exit_codes_are_judged_against_expect_exit() {
        let ok = judge(&rendered(vec![0, 3]), &finished(Exit::Code(3), "")).expect("listed");
        assert_eq!(ok["exit_code"], 3);
        assert_eq!(ok["signal"], Json::Null);
        assert_eq!(ok["stdout_truncated"], true);
        assert_eq!(ok["stderr_truncated"], false);

        let err = judge(&rendered(vec![0]), &finished(Exit::Code(3), "  no disk\n"))
            .expect_err("not listed");
        assert_eq!(err.message, "/bin/deploy: exit code 3: no disk");
        assert!(!err.transient);
        assert_eq!(err.output.expect("output")["stderr"], "  no disk\n");

        let err = judge(
            &rendered(vec![0]),
            &finished(Exit::Signal(libc::SIGSEGV), ""),
        )
        .expect_err("signal");
        assert_eq!(err.message, "/bin/deploy: killed by signal 11 (SIGSEGV)");
        assert!(!err.transient);

        let mut timed_out = finished(Exit::Signal(libc::SIGKILL), "");
        timed_out.timed_out = true;
        let err = judge(&rendered(vec![0]), &timed_out).expect_err("timeout");
        assert!(err.transient);
        assert!(
            err.message.contains("timed out after 500ms"),
            "{}",
            err.message
        );
        assert_eq!(err.output.expect("output")["signal"], "SIGKILL");
    }

    #[test]
    fn the_stderr_tail_is_the_end() {
        let long = format!("{}END", "x".repeat(1000));
        let t = tail(long.as_bytes());
        assert!(t.starts_with(": ...") && t.ends_with("END"), "{t}");
        assert_eq!(t.chars().count(), ": ...".len() + STDERR_TAIL);
        assert_eq!(tail(b"  \n"), "");
    }
}
