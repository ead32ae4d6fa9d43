//! Workflow tests (`*.test.yaml`): each case runs its workflow in process on a trigger it gives,
//! with every effect answered by a stub and waits passed on a virtual clock, and holds the run
//! against its expectations. Nothing is sent.

mod case;
mod expect;
mod file;
pub mod report;
mod stubs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use expect::Failure;
use file::TestFile;
pub use stubs::StubSpec;

use crate::diag::{Diagnostic, Severity, SourceFile, Span};
use crate::workflow::{self, CompileOptions, Registry, Workflow};

/// What one test file gave.
#[derive(Debug)]
pub struct FileResult {
    pub path: String,
    /// Why no case could run (the file or its workflow has problems), rendered.
    pub problems: Vec<String>,
    pub cases: Vec<CaseResult>,
}

#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    pub duration: Duration,
    pub verdict: Verdict,
}

#[derive(Debug)]
pub enum Verdict {
    Passed,
    Failed(Vec<Failure>),
    /// The case could not run (its payload is missing, say).
    Error(String),
}

impl FileResult {
    pub fn passed(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Passed))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed() + usize::from(!self.problems.is_empty())
    }
}

/// The test files under `paths`: files as given, directories searched for `*.test.yaml` and
/// `*.test.yml`, sorted.
pub fn find_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside = Vec::new();
            collect(path, &mut inside)?;
            inside.sort();
            found.extend(inside);
        } else if path.exists() {
            found.push(path.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            ));
        }
    }
    Ok(found)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        if path.is_dir() && !name.starts_with('.') {
            collect(&path, out)?;
        } else if name.ends_with(".test.yaml") || name.ends_with(".test.yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Where a test file's workflow is looked for and how it compiles.
pub struct Setup<'a> {
    /// Workflows to load instead of the test file's own directory.
    pub workflows: Option<&'a Path>,
    pub options: &'a CompileOptions,
    /// Only the cases whose name contains this.
    pub filter: Option<&'a str>,
}

/// Runs every case of the test file at `path`.
pub async fn run_file(path: &Path, setup: &Setup<'_>) -> FileResult {
    let shown = path.display().to_string();
    let failed = |problems: Vec<String>| FileResult {
        path: shown.clone(),
        problems,
        cases: Vec::new(),
    };
    let test = match file::read(path) {
        Ok(test) => test,
        Err(problems) => return failed(problems.iter().map(Diagnostic::render).collect()),
    };
    let (workflow, registry) = match subject_of(&test, setup) {
        Ok(found) => found,
        Err(problems) => return failed(problems),
    };
    let subject = case::Subject {
        file: &test,
        workflow: &workflow,
        registry: &registry,
    };
    let mut cases = Vec::new();
    for case in &test.cases {
        if setup.filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let started = Instant::now();
        let verdict = match case::run_case(&subject, case).await {
            Ok(end) => match expect::check(&case.span, &case.expect, &end) {
                failures if failures.is_empty() => Verdict::Passed,
                failures => Verdict::Failed(failures),
            },
            Err(error) => Verdict::Error(format!(
                "{}:{}:{}: {error}",
                case.span.file.path, case.span.line, case.span.col
            )),
        };
        cases.push(CaseResult {
            name: case.name.clone(),
            duration: started.elapsed(),
            verdict,
        });
    }
    FileResult {
        path: shown,
        problems: Vec::new(),
        cases,
    }
}

/// The workflow the file tests, with the workflows loaded beside it (for `call` steps), or the
/// problems that keep it from running.
fn subject_of(
    test: &TestFile,
    setup: &Setup<'_>,
) -> Result<(std::sync::Arc<Workflow>, Registry), Vec<String>> {
    let base = directory_of(&test.path);
    let dir = setup.workflows.map_or(base.clone(), Path::to_path_buf);
    let loaded = workflow::load(std::slice::from_ref(&dir), setup.options).map_err(|e| {
        vec![format!(
            "error: cannot load the workflows in {}: {e}",
            dir.display()
        )]
    })?;
    let by_file = looks_like_file(&test.workflow).then(|| base.join(&test.workflow));
    let found = match &by_file {
        Some(path) => loaded
            .registry
            .workflows
            .values()
            .find(|w| same_file(&w.name_span.file.path, path))
            .cloned(),
        None => loaded.registry.get(&test.workflow).cloned(),
    };
    // Only the problems of the file under test stop it: a broken neighbour does not.
    let own_file = (found
        .as_ref()
        .map(|w| PathBuf::from(&w.name_span.file.path)))
    .or(by_file);
    let problems: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .filter(|d| {
            own_file
                .as_ref()
                .is_none_or(|p| same_file(&d.span.file.path, p))
        })
        .map(Diagnostic::render)
        .collect();
    match found {
        Some(workflow) if problems.is_empty() => Ok((workflow, loaded.registry)),
        Some(_) => Err(problems),
        None => {
            let mut all = problems;
            all.insert(0, unknown_workflow(test, &loaded.registry, &dir));
            Err(all)
        }
    }
}

fn looks_like_file(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml") || name.contains('/')
}

fn same_file(loaded: &str, wanted: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    canonical(Path::new(loaded)).is_some_and(|a| Some(a) == canonical(wanted))
}

fn unknown_workflow(test: &TestFile, registry: &Registry, dir: &Path) -> String {
    let known: Vec<&str> = registry.workflows.keys().map(String::as_str).collect();
    let mut problem = Diagnostic::error(
        test.workflow_span.clone(),
        format!(
            "no workflow '{}' in {} (known: {})",
            test.workflow,
            dir.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ),
    );
    if let Some(near) = crate::diag::closest(&test.workflow, known.iter().copied()) {
        problem = problem.with_hint(format!("did you mean '{near}'?"));
    }
    problem.render()
}

/// A stub file of `run --stub STEP=FILE`: one answer (`http:`, `email:` or `exec:`), or a
/// list of them, for the step named.
pub fn read_stub_file(step: &str, path: &Path) -> Result<StubSpec, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let file = SourceFile::new(path.display().to_string(), String::new());
        vec![Diagnostic::error(
            Span::file_start(&file),
            format!("cannot read the stub: {e}"),
        )]
    })?;
    let file = SourceFile::new(path.display().to_string(), text);
    let root = crate::lang::yaml::parse(&file).map_err(|d| vec![d])?;
    let mut reader = file::Reader {
        base: directory_of(path),
        problems: Vec::new(),
    };
    let spec = stubs::read_step_answers(&mut reader, &root, step);
    match spec {
        Some(spec) if reader.problems.is_empty() => Ok(spec),
        _ => Err(reader.problems),
    }
}

/// The directory a file is in, `.` for a bare file name.
pub(crate) fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
