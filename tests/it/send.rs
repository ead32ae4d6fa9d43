//! `hookflow send` with the real binary against a real `hookflow serve`: published payloads signed
//! the way GitHub, Shopify, Stripe, GitLab, Slack and Twilio sign them are accepted and run; a
//! second send is a new delivery, a repeated `--delivery-id` a duplicate; a wrong secret is
//! refused with 401, an unset one named before anything is sent.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{ServeProcess, fixture_path};

pub(crate) const GH_SECRET: &str = "send-gh-secret-0123";
pub(crate) const GITLAB_TOKEN: &str = "send-gitlab-token-4567";
const STRIPE_SECRET: &str = "whsec_send_stripe_89ab";
const SLACK_SECRET: &str = "send-slack-secret-cdef";
const SHOPIFY_SECRET: &str = "send-shopify-secret-0246";
const TWILIO_TOKEN: &str = "send-twilio-token-1357";

/// One workflow per provider, each logging what it received once its filter passed.
fn provider_workflows() -> Vec<(&'static str, String)> {
    let workflow = |name: &str, path: &str, secrets: &str, verify: &str, filter: &str| {
        format!(
            "name: {name}\non:\n  webhook:\n    path: {path}\n    verify:\n{verify}\nsecrets: [{secrets}]\nsteps:\n  - name: check\n    filter: \"{filter}\"\n  - name: note\n    log: \"received\"\n"
        )
    };
    vec![
        ("gh.yaml", workflow("gh", "/hooks/gh", "SEND_GH_SECRET",
            "      github: { secret: \"{{ secrets.SEND_GH_SECRET }}\" }",
            "event.headers['x-github-event'] == 'push' and event.body.ref == 'refs/heads/master'")),
        ("gitlab.yaml", workflow("gitlab", "/hooks/gitlab", "SEND_GITLAB_TOKEN",
            "      gitlab: { token: \"{{ secrets.SEND_GITLAB_TOKEN }}\" }",
            "event.headers['x-gitlab-event'] == 'Push Hook' and event.headers['x-gitlab-token'] | default('') == '***'")),
        ("stripe.yaml", workflow("stripe", "/hooks/stripe", "SEND_STRIPE_SECRET",
            "      stripe: { secret: \"{{ secrets.SEND_STRIPE_SECRET }}\" }",
            "event.body.type == 'invoice.paid'")),
        ("slack.yaml", workflow("slack", "/hooks/slack", "SEND_SLACK_SECRET",
            "      slack: { secret: \"{{ secrets.SEND_SLACK_SECRET }}\" }",
            "event.body.command == '/webhook-collect'")),
        ("shop.yaml", workflow("shop", "/hooks/shop", "SEND_SHOPIFY_SECRET",
            "      shopify: { secret: \"{{ secrets.SEND_SHOPIFY_SECRET }}\" }",
            "event.headers['x-shopify-topic'] == 'orders/create' and event.body.id > 0")),
        ("sms.yaml", workflow("sms", "/hooks/sms", "SEND_TWILIO_TOKEN, SEND_TWILIO_URL",
            "      twilio: { secret: \"{{ secrets.SEND_TWILIO_TOKEN }}\", url: \"{{ secrets.SEND_TWILIO_URL }}\" }",
            "event.body.Body == 'twilio-go testing!'")),
        ("plain.yaml", "name: plain\non: { webhook: { path: /hooks/plain } }\nsteps:\n  - name: note\n    log: \"{{ event.body.ref }}\"\n".to_owned()),
        ("tenant.yaml", "name: tenant\non: { webhook: { path: \"/hooks/{tenant}/orders\" } }\nsteps:\n  - name: note\n    log: \"{{ event.params.tenant }}\"\n".to_owned()),
    ]
}

/// An environment variable of a `send`.
type Env<'a> = (&'a str, &'a str);

/// The secrets `serve` reads: the environment's, and the Twilio ones from a secrets folder
/// (written once the server's address, which Twilio signs, is known).
const SERVER_ENV: &[(&str, &str)] = &[
    ("SEND_GH_SECRET", GH_SECRET),
    ("SEND_GITLAB_TOKEN", GITLAB_TOKEN),
    ("SEND_STRIPE_SECRET", STRIPE_SECRET),
    ("SEND_SLACK_SECRET", SLACK_SECRET),
    ("SEND_SHOPIFY_SECRET", SHOPIFY_SECRET),
];

/// A server of [`provider_workflows`] in a fresh folder.
pub(crate) fn serve(dir: &Path) -> ServeProcess {
    let workflows = dir.join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    for (file, yaml) in provider_workflows() {
        std::fs::write(workflows.join(file), yaml).expect("write workflow");
    }
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(secrets.join("SEND_TWILIO_TOKEN"), TWILIO_TOKEN).expect("write secret");
    let server = ServeProcess::start_with_env(
        dir,
        &["--secrets-dir", &secrets.display().to_string()],
        SERVER_ENV,
    );
    let url = format!("{}/hooks/sms", server.webhook);
    std::fs::write(secrets.join("SEND_TWILIO_URL"), url).expect("write secret");
    server
}

/// `hookflow send` in `dir` to `server`, with only the environment given (none inherited that
/// could hold a secret).
pub(crate) fn send(dir: &Path, to: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .arg("send")
        .args(args)
        .args(["--to", to])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("hookflow send")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The server's answer, which `send` prints on stdout.
fn answer(output: &Output) -> Json {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {} / {}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

/// The run as the admin API shows it once it ended.
pub(crate) async fn finished(admin: &str, run_id: &str) -> Json {
    let client = crate::support::client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run: Json = client
            .get(format!("{admin}/api/runs/{run_id}"))
            .send()
            .await
            .expect("get run")
            .json()
            .await
            .expect("json");
        let status = run["run"]["status"].as_str().unwrap_or_default().to_owned();
        if ["succeeded", "failed", "filtered"].contains(&status.as_str()) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {run_id} did not end: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each provider's published payload, signed by `send` with the secret the server has, is
/// accepted and its run passes a filter on what the provider sends (event headers, the body).
#[tokio::test]
async fn send_signs_like_each_provider_and_every_run_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path());
    let secrets = dir.path().join("secrets").display().to_string();
    let cases: [(&str, &str, &[Env]); 6] = [
        ("gh", "github/push.json", &[("SEND_GH_SECRET", GH_SECRET)]),
        (
            "gitlab",
            "gitlab/push.json",
            &[("SEND_GITLAB_TOKEN", GITLAB_TOKEN)],
        ),
        (
            "stripe",
            "stripe/invoice.paid.json",
            &[("SEND_STRIPE_SECRET", STRIPE_SECRET)],
        ),
        (
            "slack",
            "slack/slash_command.txt",
            &[("SEND_SLACK_SECRET", SLACK_SECRET)],
        ),
        (
            "shop",
            "shopify/orders.create.json",
            &[("SEND_SHOPIFY_SECRET", SHOPIFY_SECRET)],
        ),
        // Twilio's token and URL come from the secrets folder, as the server's do.
        (
            "sms",
            "twilio/sms.incoming.txt",
            &[("HOOKFLOW_SECRETS_DIR", secrets.as_str())],
        ),
    ];
    for (workflow, payload, env) in cases {
        let path = fixture_path(payload).display().to_string();
        let output = send(dir.path(), &server.webhook, &[workflow, &path], env);
        let stderr = text(&output.stderr);
        assert!(
            output.status.success(),
            "{workflow}: {stderr} {}",
            text(&output.stdout)
        );
        assert!(stderr.contains("202 Accepted"), "{workflow}: {stderr}");
        let answer = answer(&output);
        let run_id = answer["run_ids"][0].as_str().expect("a run id");
        let run = finished(&server.admin, run_id).await;
        assert_eq!(run["run"]["status"], "succeeded", "{workflow}: {run}");
        // The body arrived byte for byte: the signature over it verified.
        let raw = run["event"]["raw"].as_str().expect("raw");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("base64");
        assert_eq!(bytes, crate::support::fixture(payload), "{workflow}");
    }
}

#[tokio::test]
async fn a_second_send_is_a_new_delivery_and_a_repeated_delivery_id_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path());
    let env = [("SEND_GH_SECRET", GH_SECRET)];
    // The example's headers file, whose delivery id must not make every send the same delivery.
    let body = dir.path().join("push.json");
    std::fs::copy(fixture_path("github/push.json"), &body).expect("copy");
    std::fs::write(
        dir.path().join("push.headers.json"),
        r#"{"X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "X-Hub-Signature-256": "sha256=0000"}"#,
    )
    .expect("write headers");
    let body = body.display().to_string();
    let first = send(dir.path(), &server.webhook, &["gh", &body], &env);
    let second = send(dir.path(), &server.webhook, &["gh", &body], &env);
    for output in [&first, &second] {
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(
            text(&output.stderr).contains("x-hub-signature-256")
                || text(&output.stderr).contains("X-Hub-Signature-256"),
            "the stale signature is said to be left out: {}",
            text(&output.stderr)
        );
    }
    let (a, b) = (answer(&first), answer(&second));
    assert!(
        a["run_ids"][0].is_string() && b["run_ids"][0].is_string(),
        "{a} {b}"
    );
    assert_ne!(a["run_ids"], b["run_ids"]);
    let run = finished(&server.admin, a["run_ids"][0].as_str().unwrap()).await;
    let delivery = run["event"]["headers"]["x-github-delivery"]
        .as_str()
        .expect("delivery");
    assert_ne!(delivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958");

    let again = ["gh", body.as_str(), "--delivery-id", "send-test-delivery-1"];
    let third = send(dir.path(), &server.webhook, &again, &env);
    let fourth = send(dir.path(), &server.webhook, &again, &env);
    assert!(third.status.success() && fourth.status.success());
    let created = answer(&third)["run_ids"][0].clone();
    assert!(created.is_string(), "{}", text(&third.stdout));
    let duplicate = answer(&fourth);
    assert_eq!(duplicate["duplicate_of"][0], created, "{duplicate}");
    assert!(duplicate.get("run_ids").is_none(), "{duplicate}");
    assert!(
        text(&fourth.stderr).contains("200 OK"),
        "{}",
        text(&fourth.stderr)
    );
    assert!(
        text(&fourth.stderr).contains("nothing ran again"),
        "{}",
        text(&fourth.stderr)
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_an_unset_one_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path());
    let payload = fixture_path("github/push.json").display().to_string();
    let wrong = send(
        dir.path(),
        &server.webhook,
        &["gh", &payload],
        &[("SEND_GH_SECRET", "not-the-servers-secret")],
    );
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong.stderr));
    assert!(
        text(&wrong.stderr).contains("401 Unauthorized"),
        "{}",
        text(&wrong.stderr)
    );

    let unset = send(dir.path(), &server.webhook, &["gh", &payload], &[]);
    assert_eq!(unset.status.code(), Some(2));
    let stderr = text(&unset.stderr);
    assert!(
        stderr.contains(
            "the secret SEND_GH_SECRET of workflow 'gh' (its `github` verify) is not set or empty"
        ) && stderr.contains("environment variable SEND_GH_SECRET")
            && stderr.contains("--secrets-dir"),
        "{stderr}"
    );
    // Nothing reached the server: its only refusal is the wrong secret's.
    let rejected: Json = crate::support::client()
        .get(format!("{}/api/rejected", server.admin))
        .send()
        .await
        .expect("rejected")
        .json()
        .await
        .expect("json");
    let refused = rejected["rejected"].as_array().map_or(0, Vec::len);
    assert_eq!(refused, 1, "{rejected}");
}

#[tokio::test]
async fn unsigned_sends_paths_with_parameters_and_an_unreachable_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path());
    let payload = fixture_path("github/push.json").display().to_string();
    let plain = send(dir.path(), &server.webhook, &["plain", &payload], &[]);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    assert!(text(&plain.stderr).contains("verifies no signature: the request is sent unsigned"));
    let run_id = answer(&plain)["run_ids"][0]
        .as_str()
        .expect("run")
        .to_owned();
    assert_eq!(
        finished(&server.admin, &run_id).await["run"]["status"],
        "succeeded"
    );

    let no_path = send(dir.path(), &server.webhook, &["tenant", &payload], &[]);
    assert_eq!(no_path.status.code(), Some(2));
    assert!(
        text(&no_path.stderr).contains(
            "/hooks/{tenant}/orders has parameters: give the path to send to with --path"
        ),
        "{}",
        text(&no_path.stderr)
    );
    let with_path = send(
        dir.path(),
        &server.webhook,
        &["tenant", &payload, "--path", "/hooks/acme/orders"],
        &[],
    );
    assert!(with_path.status.success(), "{}", text(&with_path.stderr));
    let run_id = answer(&with_path)["run_ids"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let run = finished(&server.admin, &run_id).await;
    assert_eq!(run["event"]["params"]["tenant"], "acme", "{run}");

    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let unreachable = send(dir.path(), &address, &["plain", &payload], &[]);
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        text(&unreachable.stderr)
            .contains(&format!("cannot reach the server at {address}/hooks/plain")),
        "{}",
        text(&unreachable.stderr)
    );
}
