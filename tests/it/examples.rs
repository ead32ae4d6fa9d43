//! The shipped examples (`examples/*/`), through the real binary: each validates, dry-runs to
//! `succeeded` on its own payload, renders what its README promises, and filters what it must not act on.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value as Json, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookflow");

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example(name: &str) -> PathBuf {
    manifest_dir().join("examples").join(name)
}

/// Every example directory, sorted: a new one is covered without touching this file.
fn example_dirs() -> Vec<PathBuf> {
    let root = manifest_dir().join("examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn read_json(path: &Path) -> Json {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn payload_of(dir: &Path) -> Json {
    read_json(&dir.join("payload.json"))
}

/// The example's own server settings (`hookflow.yaml`, e.g. enabling `exec`), when it has them.
fn config_of(dir: &Path) -> Option<PathBuf> {
    Some(dir.join("hookflow.yaml")).filter(|path| path.is_file())
}

/// `--config <dir>/hookflow.yaml` when the example has one, else nothing.
fn config_args(dir: &Path) -> Vec<std::ffi::OsString> {
    config_of(dir)
        .map(|path| vec!["--config".into(), path.into_os_string()])
        .unwrap_or_default()
}

/// The secrets a workflow declares, as hookflow itself compiles them.
fn declared_secrets(dir: &Path) -> Vec<String> {
    let options = match config_of(dir) {
        Some(config) => {
            hookflow::settings::ServeSettings::resolve(&hookflow::settings::Overrides {
                config: Some(config),
                ..Default::default()
            })
            .expect("the example's hookflow.yaml")
            .compile_options()
        }
        None => Default::default(),
    };
    let loaded = hookflow::workflow::load(&[dir.join("workflow.yaml")], &options)
        .expect("load the workflow");
    loaded
        .registry
        .workflows
        .values()
        .flat_map(|w| w.secrets.clone())
        .collect()
}

/// An obviously fake value for a secret, long enough to be redacted wherever it appears.
fn fake_secret(name: &str) -> String {
    let lower = name.to_ascii_lowercase().replace('_', "-");
    if name.ends_with("_URL") {
        format!("https://fake.example.test/{lower}")
    } else {
        format!("fake-{lower}")
    }
}

fn fake_secrets(dir: &Path) -> Vec<(String, String)> {
    declared_secrets(dir)
        .into_iter()
        .map(|name| {
            let value = fake_secret(&name);
            (name, value)
        })
        .collect()
}

/// The headers the example's payload is sent with (`payload.headers.json`, optional).
fn example_headers(dir: &Path) -> Vec<(String, String)> {
    let path = dir.join("payload.headers.json");
    if !path.exists() {
        return Vec::new();
    }
    let Json::Object(map) = read_json(&path) else {
        panic!("{} must hold one JSON object", path.display());
    };
    map.into_iter()
        .map(|(name, value)| {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("header {name} is not a string"));
            (name, value.to_owned())
        })
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One `hookflow run --dry-run`: the outcome printed on stdout and the trace printed on stderr.
struct DryRun {
    code: Option<i32>,
    outcome: Json,
    trace: String,
    stdout: String,
    secrets: Vec<(String, String)>,
}

impl DryRun {
    fn status(&self) -> &str {
        self.outcome["status"].as_str().unwrap_or("<no status>")
    }

    fn assert_status(&self, expected: &str) {
        assert_eq!(
            self.status(),
            expected,
            "outcome {}\ntrace:\n{}",
            self.outcome,
            self.trace
        );
        assert_eq!(self.code, Some(0), "exit code; trace:\n{}", self.trace);
    }

    /// Whether the step ran (filtered runs stop before later steps).
    fn ran(&self, step: &str) -> bool {
        self.step_lines()
            .any(|line| line.contains(&format!("] {step} (")))
    }

    fn step_lines(&self) -> impl Iterator<Item = &str> {
        self.trace.lines().filter(|line| line.starts_with('['))
    }

    /// The rendered input of a step, as the trace shows it: `[i/n] name (kind) ...` followed by
    /// `input  {json}`.
    fn input(&self, step: &str) -> Json {
        let header = format!("] {step} (");
        let start = self
            .trace
            .lines()
            .scan(0usize, |offset, line| {
                let at = *offset;
                *offset += line.len() + 1;
                Some((at, line))
            })
            .find(|(_, line)| line.starts_with('[') && line.contains(&header))
            .map(|(at, _)| at)
            .unwrap_or_else(|| panic!("step '{step}' is not in the trace:\n{}", self.trace));
        let after_header = &self.trace[start..];
        let body = &after_header[after_header.find('\n').expect("a line after the step") + 1..];
        let rest = body.trim_start();
        let json_text = rest
            .strip_prefix("input")
            .unwrap_or_else(|| panic!("step '{step}' has no input line:\n{}", self.trace));
        serde_json::Deserializer::from_str(json_text)
            .into_iter::<Json>()
            .next()
            .unwrap_or_else(|| panic!("no JSON after input of '{step}'"))
            .unwrap_or_else(|e| panic!("the input of '{step}' is not JSON ({e}):\n{}", self.trace))
    }

    /// No fake secret value leaks into the trace or the outcome.
    fn assert_no_secret_leaks(&self) {
        for (name, value) in &self.secrets {
            assert!(
                !self.trace.contains(value.as_str()),
                "{name} leaked into the trace:\n{}",
                self.trace
            );
            assert!(
                !self.stdout.contains(value.as_str()),
                "{name} leaked into stdout:\n{}",
                self.stdout
            );
        }
    }
}

fn dry_run(dir: &Path, payload: &Path, headers: &[(String, String)]) -> DryRun {
    let secrets = fake_secrets(dir);
    let mut command = Command::new(BIN);
    command
        .current_dir(manifest_dir())
        .arg("run")
        .arg(dir.join("workflow.yaml"))
        .arg("--payload")
        .arg(payload)
        .arg("--dry-run")
        .args(config_args(dir));
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    command.envs(secrets.iter().map(|(k, v)| (k, v)));
    let output = command.output().expect("run hookflow");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let trace = String::from_utf8_lossy(&output.stderr).into_owned();
    let outcome = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not the outcome JSON ({e}):\n{stdout}\nstderr:\n{trace}")
    });
    let run = DryRun {
        code: output.status.code(),
        outcome,
        trace,
        stdout,
        secrets,
    };
    run.assert_no_secret_leaks();
    run
}

/// The example on its own payload and headers.
fn dry_run_example(dir: &Path) -> DryRun {
    dry_run(dir, &dir.join("payload.json"), &example_headers(dir))
}

/// A variant of an example's payload, written to a temporary file.
struct Variant {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn variant(payload: &Json) -> Variant {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("payload.json");
    std::fs::write(&path, serde_json::to_vec_pretty(payload).expect("encode"))
        .expect("write payload");
    Variant { _dir: dir, path }
}

#[test]
fn every_example_validates_and_dry_runs_to_succeeded() {
    let dirs = example_dirs();
    assert!(
        dirs.len() >= 3,
        "expected at least 3 examples, found {dirs:?}"
    );
    let index = std::fs::read_to_string(manifest_dir().join("examples/README.md"))
        .expect("examples/README.md");
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for file in ["workflow.yaml", "payload.json", "README.md"] {
            assert!(dir.join(file).is_file(), "{name} has no {file}");
        }
        assert!(
            index.contains(&format!("[{name}]({name}/)")),
            "examples/README.md does not list {name}"
        );

        let validate = Command::new(BIN)
            .current_dir(manifest_dir())
            .arg("validate")
            .arg(dir.join("workflow.yaml"))
            .args(config_args(dir))
            .envs(fake_secrets(dir))
            .output()
            .expect("run hookflow validate");
        let report = String::from_utf8_lossy(&validate.stdout);
        assert_eq!(
            validate.status.code(),
            Some(0),
            "{name}: validate failed:\n{report}"
        );
        assert!(
            report.starts_with("ok:"),
            "{name}: validate said:\n{report}"
        );
        assert!(
            report.contains(" 0 warning(s)"),
            "{name}: validate warned:\n{report}"
        );

        let run = dry_run_example(dir);
        run.assert_status("succeeded");
        assert_eq!(run.outcome["error"], Json::Null, "{name}");
        assert!(
            run.trace.contains("dry run: nothing is sent"),
            "{name}:\n{}",
            run.trace
        );
        assert!(!run.trace.contains("FAILED"), "{name}:\n{}", run.trace);
    }
}

#[test]
fn example_payloads_are_the_published_fixtures() {
    for (example_name, fixture) in [
        ("github-push-build", "github/push.json"),
        ("stripe-invoice-crm", "stripe/invoice.paid.json"),
        ("shop-order-notify", "shopify/orders.create.json"),
        ("deploy-script", "github/push.json"),
        ("gitlab-push-jenkins", "gitlab/push.json"),
    ] {
        let ours =
            std::fs::read(example(example_name).join("payload.json")).expect("example payload");
        let published =
            std::fs::read(manifest_dir().join("tests/fixtures").join(fixture)).expect("fixture");
        assert!(
            ours == published,
            "{example_name}/payload.json differs from tests/fixtures/{fixture}"
        );
    }
}

// --- github-push-build ---

#[test]
fn github_push_build_dispatches_the_pushed_commit() {
    let dir = example("github-push-build");
    let payload = payload_of(&dir);
    let full_name = payload["repository"]["full_name"]
        .as_str()
        .expect("full_name");
    let after = payload["after"].as_str().expect("after");
    let git_ref = payload["ref"].as_str().expect("ref");
    let branch = git_ref.strip_prefix("refs/heads/").expect("a branch push");
    // The sample is what the README says: a push to the default branch, not a deletion.
    assert_eq!(full_name, "Codertocat/Hello-World");
    assert_eq!(payload["repository"]["default_branch"], json!(branch));
    assert_eq!(payload["deleted"], json!(false));

    let run = dry_run_example(&dir);
    run.assert_status("succeeded");
    assert_eq!(run.outcome["vars"]["branch"], json!(branch));
    assert_eq!(run.outcome["vars"]["sha"], json!(after));

    let request = run.input("dispatch-build");
    assert_eq!(request["provider"], "github_actions");
    assert_eq!(request["method"], "POST");
    assert_eq!(
        request["url"],
        json!(format!(
            "https://api.github.com/repos/{full_name}/actions/workflows/build.yml/dispatches"
        ))
    );
    assert!(
        request["url"]
            .as_str()
            .unwrap()
            .contains("repos/Codertocat/Hello-World/actions/workflows/build.yml/dispatches")
    );
    assert_eq!(
        request["body"],
        json!({ "ref": branch, "inputs": { "sha": after } })
    );
    let sent = &request["headers"];
    assert_eq!(sent["Authorization"], "Bearer ***", "{sent}");
    assert_eq!(sent["Accept"], "application/vnd.github+json");
    assert_eq!(sent["X-GitHub-Api-Version"], "2022-11-28");
    assert_eq!(sent["Content-Type"], "application/json");
    let run_id = run.outcome["run_id"].as_str().expect("run_id");
    assert_eq!(
        sent["Idempotency-Key"],
        json!(format!("{run_id}.dispatch-build")),
        "{sent}"
    );

    // The team is mailed only when the build cannot start: not after a dispatch that went out.
    assert!(!run.trace.contains("tell-team"), "{}", run.trace);
    let log = run.input("done");
    let message = log["message"].as_str().expect("log message");
    assert!(
        message.contains(&format!("{full_name}@{branch}")),
        "{message}"
    );
    assert!(message.contains(&format!("({})", &after[..7])), "{message}");
}

#[test]
fn github_push_build_filters_what_it_must_not_build() {
    let dir = example("github-push-build");
    let push = vec![("X-GitHub-Event".to_owned(), "push".to_owned())];
    let payload = payload_of(&dir);

    // GitHub's sample that deletes a tag: not a branch, and a deletion.
    let tag_deleted = manifest_dir().join("tests/fixtures/github/push.tag-deleted.json");
    assert_eq!(read_json(&tag_deleted)["deleted"], json!(true));
    let run = dry_run(&dir, &tag_deleted, &push);
    run.assert_status("filtered");
    assert!(run.ran("default-branch-only"));
    assert!(!run.ran("dispatch-build"), "{}", run.trace);

    // The right body with another event's header (or none) is not a push. A copy of the body,
    // since `run` reads the example's `payload.headers.json` beside its `payload.json`.
    let bare = variant(&payload);
    for headers in [headers(&[("X-GitHub-Event", "create")]), Vec::new()] {
        let run = dry_run(&dir, &bare.path, &headers);
        run.assert_status("filtered");
        assert!(!run.ran("dispatch-build"), "{headers:?}: {}", run.trace);
    }

    // A push to another branch of the same repository.
    let mut other_branch = payload.clone();
    other_branch["ref"] = json!("refs/heads/feature/login");
    let file = variant(&other_branch);
    let run = dry_run(&dir, &file.path, &push);
    run.assert_status("filtered");
    assert!(!run.ran("dispatch-build"), "{}", run.trace);

    // The default branch itself being deleted.
    let mut deleted = payload.clone();
    deleted["deleted"] = json!(true);
    deleted["after"] = json!("0000000000000000000000000000000000000000");
    let file = variant(&deleted);
    let run = dry_run(&dir, &file.path, &push);
    run.assert_status("filtered");
    assert!(!run.ran("dispatch-build"), "{}", run.trace);

    // The ping GitHub sends when the hook is created has no `ref` or `after`: filtered, not failed.
    let ping = variant(&json!({ "zen": "Design for failure.", "hook_id": 12345678 }));
    let run = dry_run(&dir, &ping.path, &headers(&[("X-GitHub-Event", "ping")]));
    run.assert_status("filtered");
}

#[test]
fn github_push_build_follows_the_repository_default_branch() {
    let dir = example("github-push-build");
    let mut payload = payload_of(&dir);
    payload["repository"]["default_branch"] = json!("main");
    payload["ref"] = json!("refs/heads/main");
    let file = variant(&payload);
    let run = dry_run(&dir, &file.path, &example_headers(&dir));
    run.assert_status("succeeded");
    assert_eq!(run.input("dispatch-build")["body"]["ref"], "main");

    // ...and `master` is no longer built once the default branch is `main`.
    payload["ref"] = json!("refs/heads/master");
    let file = variant(&payload);
    let run = dry_run(&dir, &file.path, &example_headers(&dir));
    run.assert_status("filtered");
}

// --- gitlab-push-jenkins ---

#[test]
fn gitlab_push_jenkins_queues_a_parameterized_build_of_the_pushed_commit() {
    let dir = example("gitlab-push-jenkins");
    let payload = payload_of(&dir);
    let project = payload["project"]["path_with_namespace"]
        .as_str()
        .expect("path_with_namespace");
    let sha = payload["checkout_sha"].as_str().expect("checkout_sha");
    // The sample is what the README says: a push to the default branch of mike/diaspora.
    assert_eq!(project, "mike/diaspora");
    assert_eq!(payload["ref"], json!("refs/heads/master"));
    assert_eq!(payload["project"]["default_branch"], json!("master"));
    assert_eq!(
        example_headers(&dir),
        headers(&[("X-Gitlab-Event", "Push Hook")])
    );

    let run = dry_run_example(&dir);
    run.assert_status("succeeded");
    assert_eq!(run.outcome["vars"]["project"], json!(project));
    let request = run.input("build");
    assert_eq!(request["provider"], "jenkins");
    assert_eq!(request["method"], "POST");
    // A folder per group: mike/diaspora is /job/mike/job/diaspora; the build token is masked.
    assert_eq!(
        request["url"],
        "https://jenkins.example.test/job/mike/job/diaspora/buildWithParameters?token=***"
    );
    let sent = &request["headers"];
    assert_eq!(sent["Authorization"], "Basic ***", "{sent}");
    assert_eq!(sent["Content-Type"], "application/x-www-form-urlencoded");
    let run_id = run.outcome["run_id"].as_str().expect("run_id");
    assert_eq!(sent["Idempotency-Key"], json!(format!("{run_id}.build")));
    assert_eq!(
        request["body"],
        json!({
            "GIT_COMMIT": sha,
            "GIT_BRANCH": "master",
            "GITLAB_PROJECT": project,
            "PUSHED_BY": payload["user_username"],
        })
    );
    assert!(
        run.trace.contains("cannot-start (log) skipped"),
        "{}",
        run.trace
    );
    let message = run.input("done")["message"]
        .as_str()
        .expect("log")
        .to_owned();
    assert_eq!(
        message,
        format!(
            // A dry run answers with Jenkins' documented answer: the queue item in Location.
            "queued {project}@master ({}) pushed by jsmith: https://jenkins.example.test/queue/item/1/",
            &sha[..8]
        )
    );
}

#[test]
fn gitlab_push_jenkins_filters_what_it_must_not_build() {
    let dir = example("gitlab-push-jenkins");
    let payload = payload_of(&dir);
    let push = headers(&[("X-Gitlab-Event", "Push Hook")]);

    // Another event's header, or none, is not a push (a copy of the body, without the example's
    // headers file).
    let bare = variant(&payload);
    for headers in [headers(&[("X-Gitlab-Event", "Tag Push Hook")]), Vec::new()] {
        let run = dry_run(&dir, &bare.path, &headers);
        run.assert_status("filtered");
        assert!(!run.ran("build"), "{headers:?}: {}", run.trace);
    }

    // A push to another branch.
    let mut other_branch = payload.clone();
    other_branch["ref"] = json!("refs/heads/feature/login");
    let file = variant(&other_branch);
    let run = dry_run(&dir, &file.path, &push);
    run.assert_status("filtered");
    assert!(!run.ran("build"), "{}", run.trace);

    // The default branch being deleted: GitLab sends no checkout_sha and an all-zero `after`.
    let mut deleted = payload.clone();
    deleted["checkout_sha"] = Json::Null;
    deleted["after"] = json!("0000000000000000000000000000000000000000");
    let file = variant(&deleted);
    let run = dry_run(&dir, &file.path, &push);
    run.assert_status("filtered");
    assert!(!run.ran("build"), "{}", run.trace);

    // A merge request event on the same URL has no `ref`: filtered, not failed.
    let merge_request = variant(&json!({
        "object_kind": "merge_request",
        "project": { "path_with_namespace": "mike/diaspora", "default_branch": "master" }
    }));
    let run = dry_run(
        &dir,
        &merge_request.path,
        &headers(&[("X-Gitlab-Event", "Merge Request Hook")]),
    );
    run.assert_status("filtered");
}

// --- stripe-invoice-crm ---

/// Stripe's integer amount in cents as the decimal string the CRM gets.
fn cents_to_decimal(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[test]
fn stripe_invoice_crm_patches_the_contact_with_typed_json() {
    let dir = example("stripe-invoice-crm");
    let payload = payload_of(&dir);
    let invoice = &payload["data"]["object"];
    let customer = invoice["customer"].as_str().expect("customer");
    let cents = invoice["amount_paid"].as_u64().expect("amount_paid");
    let descriptions: Vec<Json> = invoice["lines"]["data"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|line| line["description"].clone())
        .collect();
    assert_eq!(payload["type"], "invoice.paid");

    let run = dry_run_example(&dir);
    run.assert_status("succeeded");
    let request = run.input("update-contact");
    assert_eq!(request["method"], "PATCH");
    assert_eq!(
        request["url"],
        json!(format!("https://crm.example.test/api/contacts/{customer}"))
    );
    let sent = &request["headers"];
    assert_eq!(sent["Authorization"], "Bearer ***", "{sent}");
    assert_eq!(sent["Idempotency-Key"], payload["id"], "{sent}");

    let body = &request["body"];
    assert_eq!(body["email"], invoice["customer_email"], "{body}");
    assert_eq!(body["stripe_customer_id"], json!(customer));
    let paid = &body["last_payment"];
    assert_eq!(paid["amount"], json!(cents_to_decimal(cents)), "{paid}");
    assert_eq!(paid["amount"], "20.00");
    assert!(paid["amount_minor"].is_u64(), "a number, not text: {paid}");
    assert_eq!(paid["amount_minor"], json!(cents));
    let currency = invoice["currency"]
        .as_str()
        .expect("currency")
        .to_ascii_uppercase();
    assert_eq!(paid["currency"], json!(currency));
    assert_eq!(paid["invoice_id"], invoice["id"]);
    assert_eq!(paid["invoice_number"], invoice["number"]);
    assert_eq!(paid["items"], Json::Array(descriptions), "{paid}");
    assert_eq!(paid["livemode"], payload["livemode"]);
    assert!(paid["livemode"].is_boolean());
    assert_eq!(paid["paid_at"], "2022-03-26T18:40:13Z");

    let message = run.input("done")["message"]
        .as_str()
        .expect("log")
        .to_owned();
    assert!(
        message.contains(&format!("{} {currency}", cents_to_decimal(cents))),
        "{message}"
    );
}

#[test]
fn stripe_invoice_crm_passes_email_lines_and_zero_decimal_amounts() {
    let dir = example("stripe-invoice-crm");
    let mut payload = payload_of(&dir);
    let invoice = &mut payload["data"]["object"];
    invoice["customer_email"] = json!("ada+billing@example.test");
    invoice["customer"] = json!("cus_A/B");
    invoice["amount_paid"] = json!(1999);
    let lines = invoice["lines"]["data"].as_array_mut().expect("lines");
    let mut second = lines[0].clone();
    second["description"] = json!("Seat add-on");
    lines.push(second);
    let file = variant(&payload);
    let run = dry_run(&dir, &file.path, &[]);
    run.assert_status("succeeded");
    let request = run.input("update-contact");
    assert_eq!(
        request["url"],
        "https://crm.example.test/api/contacts/cus_A%2FB"
    );
    assert_eq!(request["body"]["email"], "ada+billing@example.test");
    assert_eq!(request["body"]["last_payment"]["amount"], "19.99");
    assert_eq!(
        request["body"]["last_payment"]["items"],
        json!(["(created by Stripe CLI)", "Seat add-on"])
    );

    payload["data"]["object"]["currency"] = json!("jpy");
    let file = variant(&payload);
    let run = dry_run(&dir, &file.path, &[]);
    run.assert_status("succeeded");
    let paid = &run.input("update-contact")["body"]["last_payment"];
    assert_eq!(paid["amount"], "1999", "yen have no minor unit: {paid}");
    assert_eq!(paid["currency"], "JPY");
}

#[test]
fn stripe_invoice_crm_ignores_other_events() {
    let dir = example("stripe-invoice-crm");
    let mut payload = payload_of(&dir);
    payload["type"] = json!("invoice.payment_failed");
    let file = variant(&payload);
    let run = dry_run(&dir, &file.path, &[]);
    run.assert_status("filtered");
    assert!(run.ran("paid-invoices-only"));
    assert!(!run.ran("update-contact"), "{}", run.trace);

    // Another object type entirely: the filter stops it before anything reads invoice fields.
    let charge = variant(&json!({
        "id": "evt_1", "object": "event", "type": "charge.refunded",
        "data": { "object": { "id": "ch_1", "object": "charge" } }
    }));
    let run = dry_run(&dir, &charge.path, &[]);
    run.assert_status("filtered");
}

// --- shop-order-notify ---

#[test]
fn shop_order_notify_posts_each_line_item() {
    let dir = example("shop-order-notify");
    let order = payload_of(&dir);
    let currency = order["currency"].as_str().expect("currency");
    let items = order["line_items"].as_array().expect("line_items");
    assert!(!items.is_empty());

    let run = dry_run_example(&dir);
    run.assert_status("succeeded");
    let summary = run.input("summary")["output"]
        .as_str()
        .expect("text")
        .to_owned();
    assert!(
        summary.contains(&format!("New order {}", order["name"].as_str().unwrap())),
        "{summary}"
    );
    assert!(
        summary.contains("John Smith (jon@example.com)"),
        "{summary}"
    );
    for item in items {
        let title = item["title"].as_str().expect("title");
        let quantity = item["quantity"].as_u64().expect("quantity");
        let price: f64 = item["price"]
            .as_str()
            .expect("price")
            .parse()
            .expect("a price");
        let line = format!(
            "• {quantity} × {title}: {:.2} {currency}",
            price * quantity as f64
        );
        assert!(summary.contains(&line), "no line {line:?} in:\n{summary}");
    }
    let bullets = summary.lines().filter(|l| l.starts_with("• ")).count();
    assert_eq!(bullets, items.len(), "one line per item:\n{summary}");
    let total = format!(
        "Total: {} {currency}",
        order["total_price"].as_str().unwrap()
    );
    assert!(summary.contains(&total), "no {total:?} in:\n{summary}");

    let request = run.input("post-to-slack");
    assert_eq!(request["method"], "POST");
    // The incoming-webhook URL is the secret: shown masked, never as its value.
    assert_eq!(request["url"], "***");
    assert!(
        !summary.contains(['&', '<', '>']),
        "the sample has no Slack markup"
    );
    assert_eq!(request["body"], json!({ "text": summary }));
}

#[test]
fn shop_order_notify_escapes_slack_markup_and_handles_guests() {
    let dir = example("shop-order-notify");
    let mut order = payload_of(&dir);
    order["line_items"][0]["title"] = json!("Salt & Pepper <Large>");
    order["line_items"][0]["quantity"] = json!(3);
    order.as_object_mut().unwrap().remove("customer");
    let file = variant(&order);
    let run = dry_run(&dir, &file.path, &[]);
    run.assert_status("succeeded");
    let summary = run.input("summary")["output"]
        .as_str()
        .expect("text")
        .to_owned();
    assert!(
        summary.contains("from a guest (jon@example.com)"),
        "{summary}"
    );
    assert!(
        summary.contains("• 3 × Salt & Pepper <Large>: 597.00 USD"),
        "{summary}"
    );
    let text = run.input("post-to-slack")["body"]["text"]
        .as_str()
        .expect("text")
        .to_owned();
    assert!(
        text.contains("• 3 × Salt &amp; Pepper &lt;Large&gt;: 597.00 USD"),
        "{text}"
    );
}

/// `hookflow test` on one example directory: exit code, stdout.
fn test_example(dir: &Path) -> (Option<i32>, String) {
    let output = Command::new(BIN)
        .arg("test")
        .arg(dir)
        .current_dir(manifest_dir())
        .output()
        .expect("hookflow test");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code(), format!("{stdout}{stderr}"))
}

#[test]
fn every_example_has_tests_its_readme_mentions_and_they_pass() {
    for dir in example_dirs() {
        let tests = dir.join("workflow.test.yaml");
        assert!(
            tests.is_file(),
            "{} has no workflow.test.yaml",
            dir.display()
        );
        let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
        assert!(
            readme.contains("workflow.test.yaml") && readme.contains("hookflow test"),
            "{}/README.md does not mention its tests",
            dir.display()
        );
        let (code, output) = test_example(&dir);
        assert_eq!(code, Some(0), "{}:\n{output}", dir.display());
        let cases = output.lines().filter(|l| l.ends_with(" ms)")).count();
        assert!(cases >= 2, "{}: {cases} case(s):\n{output}", dir.display());
        assert!(
            output.contains(&format!("test result: ok. {cases} passed, 0 failed")),
            "{output}"
        );
    }
}

#[test]
fn breaking_an_example_workflow_makes_its_test_fail() {
    // A copy of stripe-invoice-crm whose request body misnames one field.
    let dir = tempfile::tempdir().expect("tempdir");
    let source = example("stripe-invoice-crm");
    for name in ["workflow.yaml", "workflow.test.yaml", "payload.json"] {
        std::fs::copy(source.join(name), dir.path().join(name)).expect("copy");
    }
    let (code, output) = test_example(dir.path());
    assert_eq!(code, Some(0), "the unchanged copy passes:\n{output}");

    let workflow = dir.path().join("workflow.yaml");
    let text = std::fs::read_to_string(&workflow).expect("read");
    let broken = text.replace("stripe_customer_id: \"{{", "customer_id: \"{{");
    assert_ne!(broken, text, "the field to break is in the workflow");
    std::fs::write(&workflow, broken).expect("write");
    let (code, output) = test_example(dir.path());
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(
            "test a paid invoice patches the customer's contact with typed values ... FAILED"
        ),
        "{output}"
    );
    // The failure names the expectation's place and the missing key, expected against actual.
    let tests = std::fs::read_to_string(dir.path().join("workflow.test.yaml")).expect("read");
    let line = 1 + tests
        .lines()
        .position(|l| l.trim_start().starts_with("stripe_customer_id:"))
        .expect("the expectation");
    assert!(
        output.contains(&format!(
            "workflow.test.yaml:{line}:15: steps.update-contact.input.body.stripe_customer_id"
        )),
        "{output}"
    );
    assert!(output.contains("  - \"cus_00000000000000\""), "{output}");
    assert!(output.contains("  + no such key (keys: "), "{output}");
    assert!(
        output.contains("test result: FAILED. 2 passed, 1 failed"),
        "{output}"
    );
}
