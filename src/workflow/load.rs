//! Loading: the workflow files under the given paths (`*.yaml`/`*.yml`; test files, schema
//! files and folders of sample payloads skipped), each compiled, and the set checked as a
//! whole into a registry or diagnostics.

use super::*;

pub(super) fn file_stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}

/// What names a folder of sample payloads beside a workflow file: `push.yaml` keeps its samples
/// in `push.samples/`. Loading never reads such a folder as workflows.
pub const SAMPLES_SUFFIX: &str = ".samples";

/// The folder of sample payloads of a workflow file: `<folder>/<file stem>.samples`.
pub fn samples_dir(workflow_file: &Path) -> PathBuf {
    let stem = file_stem(&workflow_file.to_string_lossy());
    let name = format!("{stem}{SAMPLES_SUFFIX}");
    match workflow_file.parent() {
        Some(parent) => parent.join(name),
        None => PathBuf::from(name),
    }
}

fn is_samples_dir(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().ends_with(SAMPLES_SUFFIX))
}

/// The result of loading a set of files: what compiled, and every problem found.
pub struct Loaded {
    pub registry: Registry,
    pub diagnostics: Diagnostics,
    pub files: usize,
    /// What each compiled file's templates and queries read, by the file's path.
    pub readings: BTreeMap<String, Vec<Reading>>,
}

/// The workflow files under the given paths: files as given, directories searched for
/// `*.yaml`/`*.yml` (test files `*.test.yaml` and schema files `*.schema.yaml` excluded),
/// sorted for stable output.
pub fn workflow_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            collect_dir(path, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

pub(super) fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if !is_samples_dir(&path) {
                collect_dir(&path, out)?;
            }
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        let is_test = name.ends_with(".test.yaml") || name.ends_with(".test.yml");
        // A webhook's body schema written in YAML (`schema: order.schema.yaml`).
        let is_schema = name.ends_with(".schema.yaml") || name.ends_with(".schema.yml");
        // A server config kept beside its workflows is not a workflow.
        let is_config = name == "hookflow.yaml" || name == "hookflow.yml";
        if is_yaml && !is_test && !is_schema && !is_config && !name.starts_with('.') {
            out.push(path);
        }
    }
    Ok(())
}

/// Load and compile every workflow under `paths`, then check what files can only get wrong
/// together: duplicate names and routes that disagree.
pub fn load(paths: &[PathBuf], options: &CompileOptions) -> std::io::Result<Loaded> {
    let files = workflow_files(paths)?;
    let mut sources = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })?;
        sources.push(SourceFile::new(path.display().to_string(), text));
    }
    Ok(load_sources(sources, options))
}

pub fn load_sources(sources: Vec<Arc<SourceFile>>, options: &CompileOptions) -> Loaded {
    let mut diagnostics = Diagnostics::default();
    let mut registry = Registry::default();
    let files = sources.len();
    let mut names: BTreeMap<String, Span> = BTreeMap::new();
    let mut readings = BTreeMap::new();
    // Files that did not compile, by the name they would most likely have had: a call of one
    // is not reported again as a call of an unknown workflow.
    let mut broken: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for file in sources {
        let stem = file_stem(&file.path);
        let path = file.path.clone();
        let (workflow, problems, file_readings) = compile_file_with_readings(file, options);
        diagnostics.extend(problems);
        let Some(workflow) = workflow else {
            broken.insert(stem);
            continue;
        };
        readings.insert(path, file_readings);
        let name_span = workflow.name_span.clone();
        if let Some(first) = names.get(&workflow.name) {
            diagnostics.push(
                Diagnostic::error(
                    name_span,
                    format!("duplicate workflow name '{}'", workflow.name),
                )
                .with_hint(format!(
                    "{}:{} already uses it",
                    first.file.path, first.line
                )),
            );
            continue;
        }
        names.insert(workflow.name.clone(), name_span);
        registry
            .workflows
            .insert(workflow.name.clone(), Arc::new(workflow));
    }
    let route_problems = registry.routes.build(registry.workflows.values());
    diagnostics.extend(route_problems);
    diagnostics.extend(check_calls(&registry, &broken));
    Loaded {
        registry,
        diagnostics,
        files,
        readings,
    }
}
