//! `hookflow validate --payload` and the samples kept beside a workflow (`<stem>.samples/`): the
//! real binary checks the `event.body` paths of workflows against real published payloads
//! (GitHub JSON, a Twilio form body, Recurly XML).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::fixture_path;

/// `hookflow validate <args>`, run in `dir`.
fn validate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .arg("validate")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run hookflow validate")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn fixture(relative: &str) -> String {
    fixture_path(relative).display().to_string()
}

/// A temporary folder holding `push.yaml` with `text`.
fn workflow(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("push.yaml");
    std::fs::write(&path, text).expect("write the workflow");
    (dir, path)
}

const HEAD: &str = "name: push\non:\n  webhook:\n    path: /hooks/push\nsteps:\n";

#[test]
fn a_misspelled_key_warns_at_its_line_and_column_with_the_key_the_payload_has() {
    let (dir, _) = workflow(&format!(
        "{HEAD}  - log: \"{{{{ event.body.repository.full_name }}}}\"\n  - log: \"by {{{{ event.body.repository.ful_name }}}}\"\n"
    ));
    let payload = fixture("github/push.json");
    let output = validate(dir.path(), &["push.yaml", "--payload", &payload]);
    let text = stdout(&output);
    assert!(output.status.success(), "warnings only: exit 0\n{text}");
    assert!(
        text.contains(&format!(
            "push.yaml:7:17: warning: event.body.repository.ful_name is not in sample {payload}\n"
        )),
        "{text}"
    );
    assert!(text.contains("= hint: did you mean 'full_name'?"), "{text}");
    // The correct path on line 6 says nothing.
    assert!(!text.contains("push.yaml:6:"), "{text}");
    assert!(
        text.contains(&format!("samples push: {payload}\n")),
        "{text}"
    );
    assert!(
        text.ends_with("ok: 1 workflow file(s), 1 workflow(s), 1 warning(s)\n"),
        "{text}"
    );
}

#[test]
fn guarded_paths_and_paths_the_payload_has_do_not_warn() {
    let (dir, _) = workflow(&format!(
        "{HEAD}  - log: \"{{{{ event.body.note | default('') }}}} {{{{ event.body.issue is defined }}}}\"\n\
         \x20 - log: \"{{% if event.body.pull_request is defined %}}{{{{ event.body.pull_request.title }}}}{{% endif %}}\"\n\
         \x20 - if: event.body.release is defined\n    log: \"{{{{ event.body.release.tag_name }}}}\"\n\
         \x20 - foreach:\n      items: \"{{{{ event.body.commits }}}}\"\n      as: commit\n      steps:\n\
         \x20       - log: \"{{{{ commit.author.username }}}} {{{{ commit.added | length }}}}\"\n\
         \x20 - filter: {{ jsonpath: \"$.deleted_at\", exists: false }}\n\
         \x20 - filter: event.body.hook is defined\n  - log: \"{{{{ event.body.hook.config.url }}}}\"\n"
    ));
    let payload = fixture("github/push.json");
    let output = validate(dir.path(), &["push.yaml", "--payload", &payload]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("warning:"), "{text}");
    assert!(text.ends_with("0 warning(s)\n"), "{text}");
}

#[test]
fn type_mismatches_the_payload_makes_certain_warn() {
    let (dir, _) = workflow(&format!(
        "{HEAD}  - log: \"{{{{ event.body.repository.size | length }}}}\"\n\
         \x20 - log: \"{{{{ event.body.ref.name }}}}\"\n\
         \x20 - log: \"{{% for i in event.body.repository.forks_count %}}{{% endfor %}}\"\n\
         \x20 - log: \"{{{{ event.body.commits.id }}}}\"\n"
    ));
    let payload = fixture("github/push.json");
    let output = validate(dir.path(), &["push.yaml", "--payload", &payload]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    for expected in [
        format!(
            "push.yaml:6:14: warning: event.body.repository.size is a number in sample {payload}, which has no length"
        ),
        format!(
            "push.yaml:7:14: warning: event.body.ref is text in sample {payload}, so event.body.ref.name is undefined"
        ),
        format!(
            "push.yaml:8:23: warning: event.body.repository.forks_count is a number in sample {payload}, which cannot be looped over"
        ),
        format!(
            "push.yaml:9:14: warning: event.body.commits is a list in sample {payload}, so event.body.commits.id is undefined"
        ),
    ] {
        assert!(text.contains(&expected), "missing {expected}\n{text}");
    }
    assert!(text.ends_with("4 warning(s)\n"), "{text}");
}

#[test]
fn samples_beside_the_workflow_are_checked_without_a_flag_and_never_loaded_as_workflows() {
    let (dir, _) = workflow(&format!(
        "{HEAD}  - log: \"{{{{ event.body.Body }}}} from {{{{ event.body.Form }}}}\"\n"
    ));
    let samples = dir.path().join("push.samples");
    std::fs::create_dir(&samples).expect("mkdir");
    std::fs::copy(
        fixture_path("twilio/sms.incoming.txt"),
        samples.join("sms.txt"),
    )
    .expect("copy the sample");
    // Neither a note nor a YAML file in the samples folder is a sample or a workflow.
    std::fs::write(samples.join("README.md"), "Twilio's example SMS.\n").expect("write");
    std::fs::write(samples.join("broken.yaml"), "steps: [").expect("write");

    let output = validate(dir.path(), &["."]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}\n{}", stderr(&output));
    assert!(
        text.contains(
            "push.yaml:6:41: warning: event.body.Form is not in sample ./push.samples/sms.txt\n"
        ),
        "{text}"
    );
    assert!(text.contains("= hint: did you mean 'From'?"), "{text}");
    assert!(
        text.contains("samples push: ./push.samples/sms.txt\n"),
        "{text}"
    );
    assert!(
        text.ends_with("ok: 1 workflow file(s), 1 workflow(s), 1 warning(s)\n"),
        "{text}"
    );
}

#[test]
fn xml_samples_are_parsed_like_request_bodies_and_a_headers_file_names_the_type() {
    let (dir, _) = workflow(&format!(
        "{HEAD}  - log: \"{{{{ event.body.successful_payment_notification.transaction.amount_in_cents['#text'] }}}}\"\n\
         \x20 - log: \"{{{{ event.body.successful_payment_notification.transaction.invoice_number['@typ'] }}}}\"\n"
    ));
    let xml = fixture("recurly/successful_payment_notification.xml");
    let output = validate(dir.path(), &["push.yaml", "--payload", &xml]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "push.yaml:7:14: warning: event.body.successful_payment_notification.transaction.invoice_number['@typ'] is not in sample {xml}\n"
        )),
        "{text}"
    );
    assert!(text.contains("= hint: did you mean '@type'?"), "{text}");
    assert!(text.ends_with("1 warning(s)\n"), "{text}");

    // The same body under a name that says nothing: its headers file says it is XML.
    let copy = dir.path().join("payment.txt");
    std::fs::copy(&xml, &copy).expect("copy");
    std::fs::write(
        dir.path().join("payment.headers.json"),
        r#"{"Content-Type": "application/xml; charset=utf-8"}"#,
    )
    .expect("write headers");
    let output = validate(dir.path(), &["push.yaml", "--payload", "payment.txt"]);
    let text = stdout(&output);
    assert!(
        text.contains("['@typ'] is not in sample payment.txt\n")
            && text.ends_with("1 warning(s)\n"),
        "{text}"
    );
}

#[test]
fn a_missing_or_unparsable_payload_is_an_error() {
    let (dir, _) = workflow(&format!("{HEAD}  - log: \"{{{{ event.body.x }}}}\"\n"));
    let output = validate(dir.path(), &["push.yaml", "--payload", "nowhere.json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("error: cannot read payload nowhere.json"),
        "{}",
        stderr(&output)
    );

    std::fs::write(dir.path().join("cut.json"), "{\"ref\": ").expect("write");
    let output = validate(dir.path(), &["push.yaml", "--payload", "cut.json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output)
            .contains("error: payload cut.json cannot be parsed: invalid JSON at line 1"),
        "{}",
        stderr(&output)
    );

    // A broken sample beside the workflow stops validate the same way.
    std::fs::create_dir(dir.path().join("push.samples")).expect("mkdir");
    std::fs::write(dir.path().join("push.samples/cut.xml"), "<a><b></a>").expect("write");
    let output = validate(dir.path(), &["push.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output)
            .contains("error: payload push.samples/cut.xml cannot be parsed: invalid XML"),
        "{}",
        stderr(&output)
    );
}

/// The examples are real workflows with real payloads: checked against their own payload, they
/// read nothing it lacks. A false alarm here is one a user would get.
#[test]
fn the_examples_read_nothing_their_payloads_lack() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let config = tempfile::NamedTempFile::new().expect("config");
    std::fs::write(config.path(), "exec: { enabled: true }\n").expect("write config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("examples") {
        let dir = entry.expect("entry").path();
        let Some(payload) = std::fs::read_dir(&dir).ok().and_then(|entries| {
            entries
                .map(|e| e.expect("entry").path())
                .find(|p| p.file_stem().is_some_and(|s| s == "payload"))
        }) else {
            continue;
        };
        let config_path = config.path().display().to_string();
        let payload = payload.display().to_string();
        let args = [
            "workflow.yaml",
            "--payload",
            &payload,
            "--config",
            &config_path,
        ];
        let output = validate(&dir, &args);
        let text = stdout(&output);
        assert!(output.status.success(), "{}\n{text}", dir.display());
        assert!(
            text.contains("samples "),
            "{}: not checked\n{text}",
            dir.display()
        );
        assert!(!text.contains("warning:"), "{}\n{text}", dir.display());
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} examples have a payload");
}
