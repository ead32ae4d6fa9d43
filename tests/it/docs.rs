//! The docs stay true to the code: docs/language.md has a section for every step kind, names every
//! key and filter operator, and its full examples (fenced ```yaml blocks whose first line is
//! `# validate`) pass `hookflow validate`; docs/cli.md names every command, flag and variable.

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
