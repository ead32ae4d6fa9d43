//! `hookflow validate`: every problem of every file, located, in one pass.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::ValidateArgs;
use crate::secrets::SecretSource;
use crate::settings::{DEFAULT_WORKFLOWS, Overrides, ServeSettings};
use crate::workflow::{self, CompileOptions};

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
    let (report, ok) = report(&paths, &settings.compile_options(), &settings.secrets, from)?;
    let mut out = std::io::stdout().lock();
    out.write_all(report.as_bytes())?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The full text `validate` prints, and whether it found no errors. Schedules show their fire
/// times after `from`.
pub fn report(
    paths: &[PathBuf],
    options: &CompileOptions,
    secrets: &SecretSource,
    from: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(String, bool)> {
    for path in paths {
        if !path.exists() {
            anyhow::bail!("{}: no such file or directory", path.display());
        }
    }
    let loaded = workflow::load(paths, options)?;
    let mut out = String::new();
    let errors = loaded.diagnostics.error_count();
    let warnings = loaded.diagnostics.warning_count();
    let mut missing = Vec::new();
    for w in loaded.registry.workflows.values() {
        for secret in secrets.missing(&w.secrets) {
            missing.push(format!(
                "{}: secret {secret} is not set in this environment",
                w.name
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
