//! `hookflow validate`: every problem of every file, located, in one pass.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value as Json;

use super::ValidateArgs;
use crate::http::body::{BodyLimits, XmlMode, parse_body};
use crate::lang::paths::{self, Sample};
use crate::secrets::SecretSource;
use crate::settings::{DEFAULT_WORKFLOWS, Overrides, ServeSettings};
use crate::workflow::{self, CompileOptions, Loaded};

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(DEFAULT_WORKFLOWS)]
    } else {
        args.paths
    };
    let settings = ServeSettings::resolve(&Overrides {
        config: args.config,
        secrets_dir: args.secrets_dir,
        email_from: args.email_from,
        ..Overrides::default()
    })?;
    let from = args.schedules_from.unwrap_or_else(chrono::Utc::now);
    let inputs = Inputs {
        paths: &paths,
        payloads: &args.payloads,
        options: &settings.compile_options(),
        secrets: &settings.secrets,
        from,
    };
    let (report, ok) = report(&inputs)?;
    let mut out = std::io::stdout().lock();
    out.write_all(report.as_bytes())?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `validate` checks, resolved from its arguments.
pub struct Inputs<'a> {
    pub paths: &'a [PathBuf],
    /// Sample bodies to check every workflow's `event.body` reads against.
    pub payloads: &'a [PathBuf],
    pub options: &'a CompileOptions,
    pub secrets: &'a SecretSource,
    /// Schedules show their fire times after this instant.
    pub from: chrono::DateTime<chrono::Utc>,
}

/// The full text `validate` prints, and whether it found no errors.
pub fn report(inputs: &Inputs<'_>) -> anyhow::Result<(String, bool)> {
    let Inputs {
        paths,
        payloads,
        options,
        secrets,
        from,
    } = *inputs;
    for path in paths {
        if !path.exists() {
            anyhow::bail!("{}: no such file or directory", path.display());
        }
    }
    let given = payloads
        .iter()
        .map(|p| read_sample(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut loaded = workflow::load(paths, options)?;
    let samples_report = check_samples(&mut loaded, &given)?;
    let mut out = String::new();
    let errors = loaded.diagnostics.error_count();
    let warnings = loaded.diagnostics.warning_count();
    let mut missing = Vec::new();
    for w in loaded.registry.workflows.values() {
        for secret in secrets.missing(&w.secrets) {
            missing.push(format!(
                "{}: secret {secret} is not set here ({})",
                w.name,
                secrets.where_to_set(&secret)
            ));
        }
    }
    for d in loaded.diagnostics.sorted() {
        out.push_str(&d.render());
        out.push('\n');
    }
    // Notes depend on this shell's environment, so they go to stderr and not into the report.
    for note in &missing {
        eprintln!("note: {note}");
    }
    out.push_str(&schedules_report(&loaded.registry, from));
    out.push_str(&samples_report);
    let files = loaded.files;
    if errors == 0 {
        out.push_str(&format!(
            "ok: {files} workflow file(s), {} workflow(s), {warnings} warning(s)\n",
            loaded.registry.workflows.len()
        ));
    } else {
        out.push_str(&format!(
            "failed: {errors} error(s), {warnings} warning(s) in {files} workflow file(s)\n"
        ));
    }
    Ok((out, errors == 0))
}

/// How many fire times `validate` shows for each schedule.
const UPCOMING: usize = 3;

/// The next fire times of every schedule of the valid workflows, after `from`: in the
/// schedule's time zone and in UTC.
fn schedules_report(registry: &workflow::Registry, from: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = String::new();
    for w in registry.workflows.values() {
        for schedule in &w.schedules {
            out.push_str(&format!("schedule {}: {}\n", w.name, schedule.describe()));
            for tick in schedule.upcoming(from, UPCOMING) {
                let utc = tick.with_timezone(&chrono::Utc);
                let local = tick.format("%Y-%m-%d %H:%M:%S %Z").to_string();
                if schedule.timezone == chrono_tz::UTC {
                    out.push_str(&format!("  {local}\n"));
                } else {
                    out.push_str(&format!(
                        "  {local} = {}\n",
                        utc.format("%Y-%m-%d %H:%M:%S UTC")
                    ));
                }
            }
        }
    }
    out
}

/// Checks what each valid workflow reads from `event.body` against the samples given and the
/// ones kept beside its file (`<stem>.samples/`), adding the warnings to `loaded`; returns one
/// line per workflow checked, naming its samples.
fn check_samples(loaded: &mut Loaded, given: &[SampleFile]) -> anyhow::Result<String> {
    let mut out = String::new();
    for w in loaded.registry.workflows.values() {
        let mut files = given.to_vec();
        files.extend(samples_beside(Path::new(&w.source.path))?);
        if files.is_empty() {
            continue;
        }
        // Parsed as this workflow's webhook parses a body (`xml: typed` changes XML).
        let xml = w.webhook.as_ref().map(|t| t.xml).unwrap_or_default();
        let samples = files
            .iter()
            .map(|f| f.parse(xml))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let readings = loaded
            .readings
            .get(&w.source.path)
            .map(Vec::as_slice)
            .unwrap_or_default();
        loaded.diagnostics.extend(paths::check(readings, &samples));
        if let Some(trigger) = &w.webhook {
            loaded
                .diagnostics
                .extend(refused_samples(trigger, &samples));
        }
        let names: Vec<&str> = samples.iter().map(|s| s.name.as_str()).collect();
        out.push_str(&format!("samples {}: {}\n", w.name, names.join(", ")));
    }
    Ok(out)
}

/// A warning for each sample the webhook's `schema` would refuse (422): the sample was taken
/// from a real sender, so either the schema or the sample is wrong.
fn refused_samples(
    trigger: &crate::workflow::WebhookTrigger,
    samples: &[Sample],
) -> crate::diag::Diagnostics {
    let mut diagnostics = crate::diag::Diagnostics::default();
    let Some(schema) = &trigger.schema else {
        return diagnostics;
    };
    for sample in samples {
        let violations = schema.check(&sample.body);
        let Some(first) = violations.first() else {
            continue;
        };
        let at = if first.path.is_empty() {
            "the body"
        } else {
            &first.path
        };
        let warning = crate::diag::Diagnostic::warning(
            trigger.span.clone(),
            format!(
                "sample {} would be refused (422) by the webhook's schema: {at}: {} ({} violation(s) in all)",
                sample.name,
                first.message,
                violations.len()
            ),
        )
        .with_hint("fix the schema, or the sample if it is not what the sender sends");
        diagnostics.push(warning);
    }
    diagnostics
}

/// The sample payloads in the folder beside a workflow file, in name order.
fn samples_beside(workflow_file: &Path) -> anyhow::Result<Vec<SampleFile>> {
    let dir = workflow::samples_dir(workflow_file);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if is_sample_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    files.iter().map(|p| read_sample(p)).collect()
}

/// Extensions of sample payloads: JSON, XML, and form bodies (`.txt` holds a form body or text).
const SAMPLE_EXTENSIONS: &[&str] = &["json", "xml", "form", "txt"];
const FORM: &str = "application/x-www-form-urlencoded";

fn is_sample_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    path.is_file()
        && !name.starts_with('.')
        && !name.ends_with(".headers.json")
        && extension.is_some_and(|e| SAMPLE_EXTENSIONS.contains(&e.as_str()))
}

/// A sample payload as read: its bytes and content type, parsed per workflow.
#[derive(Clone)]
struct SampleFile {
    name: String,
    raw: Vec<u8>,
    content_type: Option<String>,
}

impl SampleFile {
    /// The body as the server parses a request body of its content type.
    fn parse(&self, xml: XmlMode) -> anyhow::Result<Sample> {
        let body = parse_body(
            self.content_type.as_deref(),
            &self.raw,
            &BodyLimits::default(),
            xml,
        )
        .with_context(|| format!("payload {} cannot be parsed", self.name))?;
        Ok(Sample {
            name: self.name.clone(),
            body,
        })
    }
}

/// A sample payload, read and checked to parse before any workflow is looked at.
fn read_sample(path: &Path) -> anyhow::Result<SampleFile> {
    let raw =
        std::fs::read(path).with_context(|| format!("cannot read payload {}", path.display()))?;
    let content_type = sample_content_type(path, &raw)?;
    let file = SampleFile {
        name: path.display().to_string(),
        raw,
        content_type,
    };
    file.parse(XmlMode::Plain)?;
    Ok(file)
}

/// The `Content-Type` of the headers file beside the sample, or one from its extension: `.json`,
/// `.xml`, `.form`, and `.txt` when its text is a form body (`a=1&b=2`); else none (text).
fn sample_content_type(path: &Path, raw: &[u8]) -> anyhow::Result<Option<String>> {
    if let Some(declared) = declared_content_type(path)? {
        return Ok(Some(declared));
    }
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let guessed = match extension.as_deref() {
        Some("json") => Some("application/json"),
        Some("xml") => Some("application/xml"),
        Some("form") => Some(FORM),
        Some("txt") if looks_like_form(raw) => Some(FORM),
        _ => None,
    };
    Ok(guessed.map(str::to_owned))
}

/// `X.headers.json` beside `X.json`: one JSON object of header names and values.
fn declared_content_type(path: &Path) -> anyhow::Result<Option<String>> {
    let Some(stem) = path.file_stem() else {
        return Ok(None);
    };
    let file = path.with_file_name(format!("{}.headers.json", stem.to_string_lossy()));
    if !file.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read headers {}", file.display()))?;
    let headers: serde_json::Map<String, Json> = serde_json::from_str(&text)
        .with_context(|| format!("headers {} is not one JSON object", file.display()))?;
    Ok(headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, value)| value.as_str())
        .map(str::to_owned))
}

/// Whether text is `name=value` pairs joined by `&`, without spaces or line breaks.
fn looks_like_form(raw: &[u8]) -> bool {
    !raw.is_empty()
        && raw
            .split(|b| *b == b'&')
            .all(|pair| pair.contains(&b'=') && pair.iter().all(u8::is_ascii_graphic))
}
