//! `hookflow schema` against a real JSON Schema 2020-12 validator (Python's `jsonschema`, run
//! by tests/schema/validate.py on the binary's output): every shipped workflow and the language
//! reference's examples validate, structural mistakes do not, `--settings` accepts the shipped
//! `hookflow.yaml` files; the committed schemas are what the command prints, and the example
//! workflows name them on their first line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value as Json;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const WORKFLOW_SCHEMA: &str = "docs/schema/workflow.schema.json";
const SETTINGS_SCHEMA: &str = "docs/schema/settings.schema.json";

fn root() -> &'static Path {
    Path::new(ROOT)
}

fn hookflow_schema(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .arg("schema")
        .args(args)
        .output()
        .expect("run hookflow schema");
    assert!(
        output.status.success(),
        "hookflow schema {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the schema is UTF-8")
}

/// Whether Python's `jsonschema` and PyYAML can be used. Without them the test is skipped,
/// said on the terminal (not in captured output), except under `CI=true`, where it fails.
fn validator_available(test: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", "import jsonschema, yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    let message = format!(
        "{test}: needs python3 with the jsonschema and pyyaml packages: pip install jsonschema pyyaml (.ci/run installs them)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    // Straight to the terminal: the test harness would swallow an eprintln! of a passing test.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {message}");
    false
}

/// What the validator said about one file.
#[derive(Debug)]
struct Verdict {
    file: String,
    valid: bool,
    errors: Vec<String>,
}

/// `hookflow schema [args]` piped into tests/schema/validate.py over `files`.
fn validate(schema_args: &[&str], files: &[PathBuf]) -> Vec<Verdict> {
    let mut schema = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .arg("schema")
        .args(schema_args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hookflow schema");
    let piped = schema.stdout.take().expect("hookflow's stdout");
    let output = Command::new("python3")
        .arg(root().join("tests/schema/validate.py"))
        .arg("-")
        .args(files)
        .stdin(Stdio::from(piped))
        .output()
        .expect("run tests/schema/validate.py");
    assert!(schema.wait().expect("hookflow schema ends").success());
    assert!(
        output.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<Verdict> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let v: Json = serde_json::from_str(line).expect("a JSON line per file");
            Verdict {
                file: v["file"].as_str().unwrap_or_default().to_owned(),
                valid: v["valid"] == Json::Bool(true),
                errors: v["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect(),
            }
        })
        .collect();
    assert_eq!(verdicts.len(), files.len(), "one verdict per file");
    verdicts
}

fn files_in(dir: &str, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| keep(p))
        .collect();
    files.sort();
    files
}

/// workflows/*.yaml and examples/*/workflow.yaml.
fn example_workflows() -> Vec<PathBuf> {
    let mut files = files_in("workflows", |p| p.extension().is_some_and(|e| e == "yaml"));
    for dir in files_in("examples", Path::is_dir) {
        files.push(dir.join("workflow.yaml"));
    }
    assert!(files.len() >= 6, "{files:?}");
    files
}

/// The golden cases under tests/workflows/ that `validate` accepts (expected.txt ends `ok:`).
fn golden_good_cases() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in files_in("tests/workflows", Path::is_dir) {
        let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap_or_default();
        if expected
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("ok:"))
        {
            files.extend(files_in(dir.to_str().expect("UTF-8 path"), |p| {
                p.extension().is_some_and(|e| e == "yaml")
            }));
        }
    }
    assert!(files.len() >= 4, "{files:?}");
    files
}

/// The fenced ```yaml blocks of a doc whose first line is `first_line`.
fn doc_blocks(doc: &str, first_line: &str) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(root().join("docs").join(doc)).expect("read the doc");
    let mut blocks = Vec::new();
    let mut block: Option<(usize, Vec<&str>)> = None;
    let mut in_fence = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            if in_fence {
                if let Some((start, lines)) = block.take()
                    && lines.first().map(|l| l.trim()) == Some(first_line)
                {
                    blocks.push((start, lines.join("\n") + "\n"));
                }
            } else if info.trim() == "yaml" {
                block = Some((index + 1, Vec::new()));
            }
            in_fence = !in_fence;
        } else if let Some((_, lines)) = block.as_mut() {
            lines.push(line);
        }
    }
    blocks
}

fn write_all(dir: &Path, files: &[(String, String)]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a file to validate");
            path
        })
        .collect()
}

fn assert_all_valid(verdicts: &[Verdict]) {
    let invalid: Vec<String> = verdicts
        .iter()
        .filter(|v| !v.valid)
        .map(|v| format!("{}:\n    {}", v.file, v.errors.join("\n    ")))
        .collect();
    assert!(
        invalid.is_empty(),
        "rejected by the schema:\n{}",
        invalid.join("\n")
    );
}

#[test]
fn the_committed_schemas_are_what_hookflow_schema_prints() {
    for (args, path) in [
        (&[][..], WORKFLOW_SCHEMA),
        (&["--settings"][..], SETTINGS_SCHEMA),
    ] {
        let printed = hookflow_schema(args);
        let committed = std::fs::read_to_string(root().join(path)).unwrap_or_default();
        let command: String = args.iter().map(|a| format!(" {a}")).collect();
        assert!(
            printed == committed,
            "{path} is not what `hookflow schema{command}` prints; regenerate it:\n    cargo run -- schema{command} > {path}"
        );
        let schema: Json = serde_json::from_str(&printed).expect("the schema is JSON");
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }
}

#[test]
fn every_shipped_workflow_and_documented_example_validates_against_the_schema() {
    if !validator_available("every_shipped_workflow_and_documented_example_validates") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks: Vec<(String, String)> = doc_blocks("language.md", "# validate")
        .into_iter()
        .map(|(line, text)| (format!("language.md-line-{line}.yaml"), text))
        .collect();
    assert!(blocks.len() >= 20, "few marked examples: {}", blocks.len());
    let mut files = example_workflows();
    files.extend(golden_good_cases());
    files.extend(write_all(dir.path(), &blocks));
    assert_all_valid(&validate(&[], &files));
}

/// Structural mistakes, each with what the validator must say (a path and a reason).
const MISTAKES: &[(&str, &str, &[&str])] = &[
    (
        "unknown-top-key",
        "stepz: []\nsteps: [{ log: hi }]\n",
        &["(top): Additional properties are not allowed ('stepz' was unexpected)"],
    ),
    (
        "no-steps",
        "name: x\n",
        &["(top): 'steps' is a required property"],
    ),
    (
        "steps-not-a-list",
        "steps: { log: hi }\n",
        &["steps: {'log': 'hi'} is not of type 'array'"],
    ),
    (
        "two-kinds",
        "steps:\n  - log: one\n    template: two\n",
        &["steps/0: {'log': 'one', 'template': 'two'} is valid under each of"],
    ),
    (
        "no-kind",
        "steps:\n  - name: lonely\n",
        &["steps/0: 'log' is a required property"],
    ),
    (
        "unknown-kind",
        "steps:\n  - emial: { to: a@example.test }\n",
        &["steps/0: Additional properties are not allowed ('emial' was unexpected)"],
    ),
    (
        "http-without-url",
        "steps:\n  - http: { method: POST }\n",
        &["steps/0/http: 'url' is a required property"],
    ),
    (
        "http-two-bodies",
        "steps:\n  - http: { url: https://x.test, json: {a: 1}, form: {b: 2} }\n",
        &["steps/0/http: {"],
    ),
    (
        "http-bad-method",
        "steps:\n  - http: { url: https://x.test, method: FETCH }\n",
        &[
            "steps/0/http/method: 'FETCH' is not one of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']",
        ],
    ),
    (
        "basic-without-password",
        "steps:\n  - http: { url: https://x.test, auth: { basic: { username: u } } }\n",
        &["steps/0/http/auth/basic: 'password' is a required property"],
    ),
    (
        "retry-unknown-key",
        "steps:\n  - log: hi\n    retry: { attempts: 3, backof: fixed }\n",
        &["steps/0/retry: Additional properties are not allowed ('backof' was unexpected)"],
    ),
    (
        "retry-attempts-too-many",
        "retry: { attempts: 1000 }\nsteps: [{ log: hi }]\n",
        &["retry/attempts: 1000 is greater than the maximum of 100"],
    ),
    (
        "continue-on-error-text",
        "steps:\n  - log: hi\n    continue_on_error: \"yes\"\n",
        &["steps/0/continue_on_error: 'yes' is not of type 'boolean'"],
    ),
    (
        "ci-two-providers",
        "steps:\n  - ci:\n      gitlab: { project: 1, ref: main, token: t }\n      jenkins: { base_url: https://ci.test, job: j }\n",
        &["steps/0/ci: {"],
    ),
    (
        "ci-provider-unknown-key",
        "steps:\n  - ci: { github_actions: { repo: a/b, workflow: b.yml, ref: main, token: t, input: {} } }\n",
        &[
            "steps/0/ci/github_actions: Additional properties are not allowed ('input' was unexpected)",
        ],
    ),
    (
        "buildkite-author-incomplete",
        "steps:\n  - ci: { buildkite: { organization: o, pipeline: p, token: t, commit: HEAD, branch: main, author: { name: n } } }\n",
        &["steps/0/ci/buildkite/author: 'email' is a required property"],
    ),
    (
        "email-without-subject",
        "steps:\n  - email: { to: a@example.test, text: hi }\n",
        &["steps/0/email: 'subject' is a required property"],
    ),
    (
        "attachment-unknown-key",
        "steps:\n  - email: { to: a@example.test, subject: s, text: t, attachments: [{ name: a, content: b, type: c }] }\n",
        &[
            "steps/0/email/attachments/0: Additional properties are not allowed ('type' was unexpected)",
        ],
    ),
    (
        "exec-command-not-a-list",
        "steps:\n  - exec: { command: ./deploy.sh }\n",
        &["steps/0/exec/command: './deploy.sh' is not of type 'array'"],
    ),
    (
        "foreach-without-items",
        "steps:\n  - foreach: { steps: [{ log: hi }] }\n",
        &["steps/0/foreach: 'items' is a required property"],
    ),
    (
        "nested-step-unknown-key",
        "steps:\n  - parallel: { branches: { a: { steps: [{ log: hi, iff: x }] } } }\n",
        &[
            "steps/0/parallel/branches/a/steps/0: Additional properties are not allowed ('iff' was unexpected)",
        ],
    ),
    (
        "call-unknown-key",
        "steps:\n  - call: { workflow: other, body: {} }\n",
        &["steps/0/call: Additional properties are not allowed ('body' was unexpected)"],
    ),
    (
        "respond-status-out-of-range",
        "steps:\n  - respond: { status: 700 }\n",
        &["steps/0/respond/status: 700 is greater than the maximum of 599"],
    ),
    (
        "filter-rule-two-operators",
        "steps:\n  - filter: { jsonpath: $.a, equals: 1, in: [1] }\n",
        &["steps/0/filter: {'jsonpath': '$.a', 'equals': 1, 'in': [1]} is valid under each of"],
    ),
    (
        "verify-unknown-preset",
        "on: { webhook: { path: /h, verify: { githb: { secret: s } } } }\nsteps: [{ log: hi }]\n",
        &["on/webhook/verify: Additional properties are not allowed ('githb' was unexpected)"],
    ),
    (
        "token-header-and-query",
        "on: { webhook: { path: /h, verify: { token: { value: v, header: X-T, query: t } } } }\nsteps: [{ log: hi }]\n",
        &["on/webhook/verify/token: {"],
    ),
    (
        "twilio-without-url",
        "on: { webhook: { path: /h, verify: { twilio: { secret: s } } } }\nsteps: [{ log: hi }]\n",
        &["on/webhook/verify/twilio: 'url' is a required property"],
    ),
    (
        "webhook-without-path",
        "on: { webhook: { methods: [POST] } }\nsteps: [{ log: hi }]\n",
        &["on/webhook: 'path' is a required property"],
    ),
    (
        "unknown-trigger",
        "on: { cron: '@hourly' }\nsteps: [{ log: hi }]\n",
        &["on: Additional properties are not allowed ('cron' was unexpected)"],
    ),
    (
        "concurrency-without-key",
        "concurrency: { limit: 2 }\nsteps: [{ log: hi }]\n",
        &["concurrency: 'key' is a required property"],
    ),
];

#[test]
fn structural_mistakes_are_refused_by_the_schema() {
    if !validator_available("structural_mistakes_are_refused_by_the_schema") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let written: Vec<(String, String)> = MISTAKES
        .iter()
        .map(|(name, text, _)| (format!("{name}.yaml"), (*text).to_owned()))
        .collect();
    let mut files = write_all(dir.path(), &written);
    // The golden cases whose mistakes are structural: unknown keys, wrong types and values,
    // missing required keys, two kinds in one step.
    let golden: &[(&str, &[&str])] = &[
        (
            "five-mistakes",
            &[
                "on/webhook: Additional properties are not allowed ('methds' was unexpected)",
                "steps/0: Additional properties are not allowed ('emial' was unexpected)",
            ],
        ),
        (
            "types-and-values",
            &[
                "on/webhook/path: 'hooks/no-slash' does not match '^/'",
                "on/webhook/respond: 'maybe' is not one of ['async', 'sync']",
                "steps/1/http/expect/1: 99 is less than the minimum of 100",
                "steps/2: {'name': 'two-kinds', 'log': 'one', 'template': 'two'} is valid under each of",
                "steps/3/template/format: 'toml' is not one of ['text', 'json', 'yaml']",
                "steps/4/continue_on_error: 'yes' is not of type 'boolean'",
            ],
        ),
        (
            "control-flow",
            &[
                "concurrency/limit: 0 is less than the minimum of 1",
                "concurrency/mode: 'later' is not one of ['queue', 'cancel_previous', 'skip']",
                "timeout: 'soon' is not of type 'number'",
                "steps/2/parallel/branches: 'bad name' does not match",
            ],
        ),
        (
            "schedule-mistakes",
            &[
                "on/schedule/3: Additional properties are not allowed ('jiter' was unexpected)",
                "on/schedule/3/catch_up: 'all' is not one of ['none', 'last']",
                "on/schedule/4: 'cron' is a required property",
            ],
        ),
        (
            "nested-names",
            &["steps/0/foreach/steps/0/name: 'notify café' does not match"],
        ),
    ];
    for (case, _) in golden {
        files.push(
            root()
                .join("tests/workflows")
                .join(case)
                .join("workflow.yaml"),
        );
    }
    let verdicts = validate(&[], &files);
    let expectations = MISTAKES
        .iter()
        .map(|(_, _, expected)| *expected)
        .chain(golden.iter().map(|(_, expected)| *expected));
    let mut problems = Vec::new();
    for (verdict, expected) in verdicts.iter().zip(expectations) {
        if verdict.valid {
            problems.push(format!("{}: accepted by the schema", verdict.file));
            continue;
        }
        for reason in expected {
            if !verdict.errors.iter().any(|e| e.starts_with(reason)) {
                problems.push(format!(
                    "{}: no error starting {reason:?} among:\n    {}",
                    verdict.file,
                    verdict.errors.join("\n    ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn hookflow_yaml_files_validate_against_the_settings_schema() {
    if !validator_available("hookflow_yaml_files_validate_against_the_settings_schema") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut good: Vec<PathBuf> = files_in("examples", Path::is_dir)
        .into_iter()
        .map(|d| d.join("hookflow.yaml"))
        .filter(|p| p.exists())
        .collect();
    assert!(!good.is_empty(), "no examples/*/hookflow.yaml");
    let documented: Vec<(String, String)> = doc_blocks("cli.md", "# hookflow.yaml")
        .into_iter()
        .map(|(line, text)| (format!("cli.md-line-{line}.yaml"), text))
        .collect();
    assert!(
        !documented.is_empty(),
        "docs/cli.md has no `# hookflow.yaml` block"
    );
    good.extend(write_all(dir.path(), &documented));
    assert_all_valid(&validate(&["--settings"], &good));

    let bad = [
        (
            "listn: 0.0.0.0:8080\n",
            "(top): Additional properties are not allowed ('listn' was unexpected)",
        ),
        (
            "workers: many\n",
            "workers: 'many' is not of type 'integer'",
        ),
        (
            "email: { smtp: smtp://h, form: a@b.test }\n",
            "email: Additional properties are not allowed ('form' was unexpected)",
        ),
        (
            "egress: { deny: [intranet] }\n",
            "egress/deny/0: 'intranet' is not one of ['private', 'loopback', 'link_local', 'metadata']",
        ),
        (
            "exec: { enabled: \"yes\" }\n",
            "exec/enabled: 'yes' is not of type 'boolean'",
        ),
        (
            "retry: { attempts: 3, on: [409] }\n",
            "retry: Additional properties are not allowed ('on' was unexpected)",
        ),
        (
            "sync_timeout: soon\n",
            "sync_timeout: 'soon' is not of type 'number'",
        ),
    ];
    let written: Vec<(String, String)> = bad
        .iter()
        .enumerate()
        .map(|(i, (text, _))| (format!("bad-{i}.yaml"), (*text).to_owned()))
        .collect();
    let files = write_all(dir.path(), &written);
    for (verdict, (text, reason)) in validate(&["--settings"], &files).iter().zip(bad) {
        assert!(
            !verdict.valid && verdict.errors.iter().any(|e| e.starts_with(reason)),
            "{text:?}: expected {reason:?}, got {:?}",
            verdict.errors
        );
    }
}

#[test]
fn example_workflows_name_the_schema_on_their_first_line() {
    let mut problems = Vec::new();
    for file in example_workflows() {
        let text = std::fs::read_to_string(&file).expect("read the workflow");
        let depth = file
            .strip_prefix(root())
            .expect("under the repository")
            .components()
            .count()
            - 1;
        let expected = format!(
            "# yaml-language-server: $schema={}{WORKFLOW_SCHEMA}",
            "../".repeat(depth)
        );
        let first = text.lines().next().unwrap_or_default();
        if first != expected {
            problems.push(format!(
                "{}: the first line is {first:?}, not {expected:?}",
                file.display()
            ));
        }
        let target = file
            .parent()
            .expect("a folder")
            .join(expected.rsplit('=').next().unwrap_or_default());
        assert!(target.exists(), "{} does not exist", target.display());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_docs_show_how_to_point_an_editor_at_the_schema() {
    let language = std::fs::read_to_string(root().join("docs/language.md")).expect("language.md");
    let top: String = language.lines().take(40).collect::<Vec<_>>().join("\n");
    assert!(
        top.contains("# yaml-language-server: $schema=") && top.contains("hookflow schema"),
        "docs/language.md should show the `$schema=` line near the top"
    );
    let cli = std::fs::read_to_string(root().join("docs/cli.md")).expect("cli.md");
    let section = cli
        .split("\n## `hookflow schema`")
        .nth(1)
        .expect("docs/cli.md has a `## hookflow schema` section");
    for needle in [
        "# yaml-language-server: $schema=",
        "hookflow schema > hookflow.schema.json",
        "--settings",
        WORKFLOW_SCHEMA,
        SETTINGS_SCHEMA,
    ] {
        assert!(
            section.contains(needle),
            "the `hookflow schema` section of docs/cli.md does not mention {needle}"
        );
    }
}
