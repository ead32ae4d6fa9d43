//! `hookflow test`: runs workflow test files and reports like `cargo test`, optionally as JUnit
//! XML; exit 1 when any case fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};

use super::TestArgs;
use crate::settings::{Overrides, ServeSettings};
use crate::testkit::{self, FileResult, Setup, report};
use crate::workflow::CompileOptions;

pub async fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    crate::observe::telemetry::init(crate::observe::telemetry::LogFormat::Text, "error");
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("./workflows")]
    } else {
        args.paths.clone()
    };
    let files = testkit::find_files(&paths)?;
    if files.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        bail!("no test files (*.test.yaml) in {}", shown.join(", "));
    }
    let started = Instant::now();
    let mut results = Vec::new();
    for path in &files {
        results.push(run_one(path, &args).await?);
    }
    let elapsed = started.elapsed();
    print!("{}", report::summary(&results, elapsed));
    if let Some(junit) = &args.junit {
        std::fs::write(junit, report::junit(&results, elapsed))
            .with_context(|| format!("cannot write {}", junit.display()))?;
    }
    let failed: usize = results.iter().map(FileResult::failed).sum();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_one(path: &Path, args: &TestArgs) -> anyhow::Result<FileResult> {
    let options = compile_options(path, args)?;
    let setup = Setup {
        workflows: args.workflows.as_deref(),
        options: &options,
        filter: args.filter.as_deref(),
    };
    println!("\nrunning {}", path.display());
    let result = testkit::run_file(path, &setup).await;
    for case in &result.cases {
        println!("{}", report::case_line(case));
    }
    if !result.problems.is_empty() {
        println!("test file ... ERROR (see failures)");
    }
    Ok(result)
}

/// The settings a test file's workflow compiles under: `--config`, else a `hookflow.yaml`
/// beside the test file, else `./hookflow.yaml` when present.
fn compile_options(path: &Path, args: &TestArgs) -> anyhow::Result<CompileOptions> {
    let beside = path
        .parent()
        .map(|dir| dir.join("hookflow.yaml"))
        .filter(|config| config.is_file());
    let settings = ServeSettings::resolve(&Overrides {
        config: args.config.clone().or(beside),
        ..Overrides::default()
    })?;
    Ok(settings.compile_options())
}
