//! The docs stay true to the code: docs/language.md has a section for every step kind, names every
//! key and filter operator, and its full examples (fenced ```yaml blocks whose first line is
//! `# validate`) pass `hookflow validate`; docs/cli.md names every command, flag and variable;
//! nothing that exists is called missing, and the examples' README commands run.

use std::path::Path;
use std::process::Command;

fn hookflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
}

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

#[test]
fn every_step_kind_has_a_section_in_the_language_reference() {
    let text = doc("language.md");
    let missing: Vec<&str> = hookflow::steps::KindName::ALL
        .into_iter()
        .map(|kind| kind.as_str())
        .filter(|kind| {
            let heading = format!("### `{kind}`");
            !text.lines().any(|line| line.trim_end() == heading)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/language.md has no \"### `<kind>`\" heading for: {missing:?}"
    );
}

#[test]
fn every_key_and_operator_is_in_the_language_reference() {
    let text = doc("language.md");
    let lists: [(&str, &[&str]); 19] = [
        (
            "workflow::TOP_LEVEL_KEYS",
            hookflow::workflow::TOP_LEVEL_KEYS,
        ),
        ("workflow::TRIGGER_KEYS", hookflow::workflow::TRIGGER_KEYS),
        ("workflow::WEBHOOK_KEYS", hookflow::workflow::WEBHOOK_KEYS),
        (
            "workflow::schedule::SCHEDULE_KEYS",
            hookflow::workflow::schedule::SCHEDULE_KEYS,
        ),
        (
            "workflow::schedule::CATCH_UP_MODES",
            hookflow::workflow::schedule::CATCH_UP_MODES,
        ),
        (
            "workflow::VERIFY_PRESETS",
            hookflow::workflow::VERIFY_PRESETS,
        ),
        ("steps::COMMON_KEYS", hookflow::steps::COMMON_KEYS),
        ("steps::http::KEYS", hookflow::steps::http::KEYS),
        ("steps::email::KEYS", hookflow::steps::email::KEYS),
        (
            "steps::email::ATTACHMENT_KEYS",
            hookflow::steps::email::ATTACHMENT_KEYS,
        ),
        ("steps::exec::KEYS", hookflow::steps::exec::KEYS),
        ("steps::respond::KEYS", hookflow::steps::respond::KEYS),
        ("steps::template::KEYS", hookflow::steps::template::KEYS),
        ("steps::foreach::KEYS", hookflow::steps::foreach::KEYS),
        ("steps::parallel::KEYS", hookflow::steps::parallel::KEYS),
        ("steps::call::KEYS", hookflow::steps::call::KEYS),
        (
            "workflow::CONCURRENCY_KEYS",
            hookflow::workflow::CONCURRENCY_KEYS,
        ),
        (
            "workflow::CONCURRENCY_MODES",
            hookflow::workflow::CONCURRENCY_MODES,
        ),
        (
            "steps::filter::OPERATORS",
            hookflow::steps::filter::OPERATORS,
        ),
    ];
    let mut missing = Vec::new();
    for (list, keys) in lists {
        assert!(!keys.is_empty(), "{list} is empty");
        for key in keys {
            if !text.contains(&format!("`{key}`")) {
                missing.push(format!("{list}: `{key}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/language.md does not mention:\n{}",
        missing.join("\n")
    );
}

/// The `ci` providers share key names (`token`, `ref`, `project`), so each must be named in the
/// `ci` section itself, not just somewhere in the page.
#[test]
fn every_ci_provider_and_key_is_in_the_ci_section() {
    let text = doc("language.md");
    let start = text
        .find("\n### `ci`\n")
        .expect("docs/language.md has a ### `ci` section");
    let rest = &text[start + 1..];
    let end = rest[4..].find("\n### ").map_or(rest.len(), |i| i + 4);
    let section = &rest[..end];
    use hookflow::steps::ci;
    let lists: [(&str, &[&str]); 7] = [
        ("steps::ci::PROVIDERS", ci::PROVIDERS),
        ("steps::ci::github::ACTIONS_KEYS", ci::github::ACTIONS_KEYS),
        (
            "steps::ci::github::DISPATCH_KEYS",
            ci::github::DISPATCH_KEYS,
        ),
        ("steps::ci::gitlab::KEYS", ci::gitlab::KEYS),
        ("steps::ci::jenkins::KEYS", ci::jenkins::KEYS),
        ("steps::ci::buildkite::KEYS", ci::buildkite::KEYS),
        ("steps::ci::circleci::KEYS", ci::circleci::KEYS),
    ];
    let mut missing = Vec::new();
    for (list, keys) in lists {
        assert!(!keys.is_empty(), "{list} is empty");
        for key in keys {
            if !section.contains(&format!("`{key}`")) {
                missing.push(format!("{list}: `{key}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the `ci` section of docs/language.md does not mention:\n{}",
        missing.join("\n")
    );
}

/// The fenced ```yaml blocks whose first line is `# validate`: the line of the opening fence and
/// the block's text.
fn blocks_to_validate(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut in_fence = false;
    let mut yaml: Option<(usize, Vec<&str>)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if !in_fence {
            if let Some(info) = trimmed.strip_prefix("```") {
                in_fence = true;
                if info.trim() == "yaml" {
                    yaml = Some((index + 1, Vec::new()));
                }
            }
            continue;
        }
        if trimmed == "```" {
            in_fence = false;
            if let Some((start, lines)) = yaml.take()
                && lines.first().map(|l| l.trim()) == Some("# validate")
            {
                blocks.push((start, format!("{}\n", lines.join("\n"))));
            }
            continue;
        }
        if let Some((_, lines)) = yaml.as_mut() {
            lines.push(line);
        }
    }
    assert!(!in_fence, "a fenced block is not closed");
    blocks
}

#[test]
fn the_marked_examples_of_the_language_reference_validate() {
    let text = doc("language.md");
    let blocks = blocks_to_validate(&text);
    assert!(
        blocks.len() >= 2,
        "expected the full examples of docs/language.md to start with `# validate`, found {}",
        blocks.len()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // Server settings the examples may need: `exec` steps are off unless enabled.
    let config = dir.path().join("hookflow.yaml");
    std::fs::write(&config, "exec: { enabled: true }\n").expect("write hookflow.yaml");
    let mut failures = Vec::new();
    for (line, yaml) in &blocks {
        // One file each: examples may reuse a name or a path.
        let path = dir.path().join(format!("example-line-{line}.yaml"));
        std::fs::write(&path, yaml).expect("write the example");
        let output = hookflow()
            .arg("validate")
            .arg(&path)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run hookflow validate");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let ok = stdout.lines().last().is_some_and(|l| l.starts_with("ok:"));
        if !output.status.success() || !ok {
            failures.push(format!(
                "docs/language.md:{line}: the example does not validate\n{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `hookflow <args> --help`.
fn help(args: &[&str]) -> String {
    let output = hookflow()
        .args(args)
        .arg("--help")
        .output()
        .expect("run hookflow --help");
    assert!(output.status.success(), "hookflow {args:?} --help failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The subcommands a help text lists under `Commands:`, without `help`.
fn subcommands(help: &str) -> Vec<String> {
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    names
}

/// Every command as typed (`hookflow runs list`), with its help text.
fn commands() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for top in subcommands(&help(&[])) {
        let top_help = help(&[top.as_str()]);
        let nested = subcommands(&top_help);
        if nested.is_empty() {
            out.push((format!("hookflow {top}"), top_help));
        }
        for sub in nested {
            let sub_help = help(&[top.as_str(), sub.as_str()]);
            out.push((format!("hookflow {top} {sub}"), sub_help));
        }
    }
    out
}

#[test]
fn every_command_flag_and_variable_is_in_the_cli_reference() {
    let text = doc("cli.md");
    let commands = commands();
    assert!(
        commands.len() >= 5,
        "expected serve, validate, run, runs list and runs show, found {:?}",
        commands.iter().map(|(c, _)| c).collect::<Vec<_>>()
    );
    let mut missing = Vec::new();
    for (command, help) in &commands {
        if !text.contains(command.as_str()) {
            missing.push(command.clone());
        }
        let options = help.lines().skip_while(|l| l.trim() != "Options:");
        for line in options {
            let flag = line
                .split_whitespace()
                .find(|word| word.starts_with("--"))
                .map(|word| word.trim_end_matches(','));
            if let Some(flag) = flag
                && flag != "--help"
                && flag != "--version"
                && !text.contains(flag)
            {
                missing.push(format!("{command} {flag}"));
            }
            if let Some((_, rest)) = line.split_once("[env: ")
                && let Some((variable, _)) = rest.split_once('=')
                && !text.contains(variable)
            {
                missing.push(format!("{command}: {variable}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/cli.md does not mention:\n{}",
        missing.join("\n")
    );
}

/// Every markdown file a user reads: docs/, the README, ARCHITECTURE.md, the examples' READMEs.
fn user_docs() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for dir in [root.join("docs"), root.join("examples")] {
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "md") {
                    files.push(path);
                }
            }
        }
    }
    files
        .into_iter()
        .filter(|p| !p.ends_with("docs/benchmarks.md"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            (
                p.strip_prefix(root).expect("inside").display().to_string(),
                text,
            )
        })
        .collect()
}

/// The `backticked` words of a text.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// A doc that says a command, a step kind or a `verify` preset does not exist yet, or is not
/// implemented, while it does, is wrong: the sentence must go when the thing arrives.
#[test]
fn nothing_that_exists_is_called_missing() {
    let commands: Vec<String> = commands().into_iter().map(|(name, _)| name).collect();
    let kinds = hookflow::steps::KindName::names();
    let presets: Vec<&str> = hookflow::verify::Scheme::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let exists = |word: &str| {
        let word = word.trim_end_matches(':').trim();
        commands
            .iter()
            .any(|c| c == word || c.starts_with(&format!("{word} ")))
            || kinds.contains(&word)
            || presets.contains(&word)
            || word == "verify"
    };
    let missing_words = ["not implemented", "not yet", "no `verify"];
    let mut wrong = Vec::new();
    for (file, text) in user_docs() {
        // A "Not yet" section: every name in it.
        if let Some(start) = text.find("## Not yet") {
            let section = &text[start..];
            let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
            for word in backticked(&section[..end]) {
                if exists(&word) {
                    wrong.push(format!("{file}: `{word}` is listed under Not yet"));
                }
            }
        }
        // A line that calls something missing.
        for line in text.lines() {
            let lower = line.to_lowercase();
            if !missing_words.iter().any(|w| lower.contains(w)) {
                continue;
            }
            for word in backticked(line) {
                if exists(&word) {
                    wrong.push(format!("{file}: calls `{word}` missing: {line}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "docs call existing things missing:\n{}",
        wrong.join("\n")
    );
}

/// The `sh` blocks of a markdown text, as commands: continuation lines joined, comments dropped.
fn shell_commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut inside = false;
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            inside = line.trim() == "```sh" && !inside;
            continue;
        }
        if !inside || line.trim_start().starts_with('#') {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current).trim().to_owned());
            }
        }
    }
    commands
}

/// The offline commands each example's README shows (`hookflow run`, `test`, `validate`) run
/// as written, from the repository root, and succeed. (`serve`, `curl` and `send` need a
/// running server: the examples' end-to-end tests cover those.)
#[test]
fn the_commands_in_the_examples_readmes_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_hookflow"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for (file, text) in user_docs()
        .into_iter()
        .filter(|(f, _)| f.starts_with("examples/"))
    {
        for command in shell_commands(&text) {
            let program = command
                .split_whitespace()
                .find(|word| !word.contains('='))
                .unwrap_or_default();
            let sub = command
                .split_whitespace()
                .skip_while(|w| *w != "hookflow")
                .nth(1);
            if program != "hookflow" || !matches!(sub, Some("run" | "test" | "validate")) {
                continue;
            }
            let output = Command::new("bash")
                .args(["-c", &command])
                .current_dir(root)
                .env("PATH", &path)
                .env_remove("HOOKFLOW_CONFIG")
                .output()
                .expect("bash");
            assert!(
                output.status.success(),
                "{file}: `{command}` failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 12, "only {ran} README commands found to run");
}
