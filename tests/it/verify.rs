//! `on.webhook.verify`: real fixtures signed by an independent implementation (tests/sign.py, a
//! copy of the reference signer) are accepted and run; a wrong signature, a missing header or a
//! stale timestamp is answered 401 and stores nothing.

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use crate::support::{TestServer, fixture, fixture_path, set_env};

/// The headers `sign.py` computes for `scheme` over the fixture's exact bytes.
fn sign(scheme: &str, secrets: &[&str], fixture: &str, extra: &[&str]) -> Vec<(String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sign.py");
    let mut command = Command::new("python3");
    command.arg(&script).args(["sign", scheme]);
    for secret in secrets {
        command.args(["--secret", secret]);
    }
    command
        .arg("--body-file")
        .arg(fixture_path(fixture))
        .args(["--format", "json"])
        .args(extra);
    let output = command.output().expect("python3 tests/sign.py");
    assert!(
        output.status.success(),
        "sign.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let headers: serde_json::Map<String, Json> =
        serde_json::from_slice(&output.stdout).expect("sign.py json");
    headers
        .into_iter()
        .map(|(k, v)| (k, v.as_str().expect("header value").to_owned()))
        .collect()
}

fn workflow(name: &str, path: &str, secrets: &[&str], verify: &str) -> String {
    format!(
        "name: {name}\non:\n  webhook:\n    path: {path}\n    verify:\n{verify}\nsecrets: [{}]\nsteps:\n  - name: note\n    log: \"received\"\n",
        secrets.join(", ")
    )
}

async fn post(
    server: &TestServer,
    path: &str,
    fixture_name: &str,
    headers: &[(String, String)],
) -> (u16, Json) {
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = server
        .post_with(path, "application/json", fixture(fixture_name), &borrowed)
        .await;
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Json::Null))
}

async fn runs(server: &TestServer) -> Vec<Json> {
    let answer: Json = server
        .client
        .get(format!("{}/api/runs", server.admin))
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("admin json");
    answer["runs"].as_array().expect("runs").clone()
}

async fn assert_unauthorized(server: &TestServer, answer: (u16, Json)) {
    assert_eq!(answer.0, 401, "{}", answer.1);
    assert_eq!(answer.1, serde_json::json!({ "error": "unauthorized" }));
    assert!(
        runs(server).await.is_empty(),
        "a refused request stored a run"
    );
}

async fn assert_runs(server: &TestServer, answer: (u16, Json)) {
    assert_eq!(answer.0, 202, "{}", answer.1);
    let run_id = answer.1["run_ids"][0].as_str().expect("run id").to_owned();
    let run = server.finished_run(&run_id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
}

fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

#[tokio::test]
async fn github_signed_push_runs_and_forgeries_are_refused() {
    set_env("VERIFY_IT_GITHUB", "gh-secret-1");
    let yaml = workflow(
        "gh",
        "/hooks/gh",
        &["VERIFY_IT_GITHUB"],
        "      github:\n        secret: \"{{ secrets.VERIFY_IT_GITHUB }}\"",
    );
    let server = TestServer::start(&[("gh.yaml", &yaml)]).await;
    let file = "github/push.json";

    let wrong = sign("github", &["other-secret"], file, &[]);
    assert_unauthorized(&server, post(&server, "/hooks/gh", file, &wrong).await).await;
    assert_unauthorized(&server, post(&server, "/hooks/gh", file, &[]).await).await;
    // The SHA-1 header alone is not enough without `legacy_sha1`.
    let good = sign("github", &["gh-secret-1"], file, &[]);
    let sha1_only: Vec<_> = good
        .iter()
        .filter(|(k, _)| k == "X-Hub-Signature")
        .cloned()
        .collect();
    assert_unauthorized(&server, post(&server, "/hooks/gh", file, &sha1_only).await).await;

    assert_runs(&server, post(&server, "/hooks/gh", file, &good).await).await;
    server.stop().await;
}

#[tokio::test]
async fn github_delivery_id_is_the_default_dedupe_key() {
    set_env("VERIFY_IT_GITHUB_DEDUPE", "gh-secret-2");
    let yaml = workflow(
        "gh-dedupe",
        "/hooks/gh-dedupe",
        &["VERIFY_IT_GITHUB_DEDUPE"],
        "      github:\n        secret: \"{{ secrets.VERIFY_IT_GITHUB_DEDUPE }}\"",
    );
    let server = TestServer::start(&[("gh.yaml", &yaml)]).await;
    let file = "github/push.json";
    let mut headers = sign("github", &["gh-secret-2"], file, &[]);
    headers.push((
        "X-GitHub-Delivery".to_owned(),
        "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
    ));
    let first = post(&server, "/hooks/gh-dedupe", file, &headers).await;
    assert_eq!(first.0, 202, "{}", first.1);
    let second = post(&server, "/hooks/gh-dedupe", file, &headers).await;
    assert_eq!(second.0, 200, "{}", second.1);
    assert_eq!(second.1["duplicate_of"], first.1["run_ids"], "{}", second.1);
    server.stop().await;
}

#[tokio::test]
async fn stripe_signed_invoice_runs_and_stale_or_forged_ones_are_refused() {
    set_env("VERIFY_IT_STRIPE", "whsec_it_stripe_secret");
    let yaml = workflow(
        "stripe",
        "/hooks/stripe",
        &["VERIFY_IT_STRIPE"],
        "      stripe:\n        secret: \"{{ secrets.VERIFY_IT_STRIPE }}\"\n        tolerance: 300s",
    );
    let server = TestServer::start(&[("stripe.yaml", &yaml)]).await;
    let file = "stripe/invoice.paid.json";

    let stale = (chrono::Utc::now().timestamp() - 301).to_string();
    let old = sign(
        "stripe",
        &["whsec_it_stripe_secret"],
        file,
        &["--timestamp", &stale],
    );
    assert_unauthorized(&server, post(&server, "/hooks/stripe", file, &old).await).await;
    let forged = sign("stripe", &["whsec_other"], file, &["--timestamp", &now()]);
    assert_unauthorized(&server, post(&server, "/hooks/stripe", file, &forged).await).await;
    assert_unauthorized(&server, post(&server, "/hooks/stripe", file, &[]).await).await;

    let good = sign(
        "stripe",
        &["whsec_it_stripe_secret"],
        file,
        &["--timestamp", &now()],
    );
    assert_runs(&server, post(&server, "/hooks/stripe", file, &good).await).await;
    server.stop().await;
}

#[tokio::test]
async fn shopify_rotation_accepts_either_secret() {
    set_env("VERIFY_IT_SHOPIFY_OLD", "shopify-old");
    set_env("VERIFY_IT_SHOPIFY_NEW", "shopify-new");
    let yaml = workflow(
        "shopify",
        "/hooks/shopify",
        &["VERIFY_IT_SHOPIFY_OLD", "VERIFY_IT_SHOPIFY_NEW"],
        "      shopify:\n        secret:\n          - \"{{ secrets.VERIFY_IT_SHOPIFY_OLD }}\"\n          - \"{{ secrets.VERIFY_IT_SHOPIFY_NEW }}\"",
    );
    let server = TestServer::start(&[("shopify.yaml", &yaml)]).await;
    let file = "shopify/orders.create.json";

    let forged = sign("shopify", &["shopify-other"], file, &[]);
    assert_unauthorized(
        &server,
        post(&server, "/hooks/shopify", file, &forged).await,
    )
    .await;

    let second = sign("shopify", &["shopify-new"], file, &[]);
    assert_runs(
        &server,
        post(&server, "/hooks/shopify", file, &second).await,
    )
    .await;
    let first = sign("shopify", &["shopify-old"], file, &[]);
    let answer = post(&server, "/hooks/shopify", file, &first).await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    server.stop().await;
}

#[tokio::test]
async fn an_unset_secret_refuses_every_request() {
    let yaml = workflow(
        "unset",
        "/hooks/unset",
        &["VERIFY_IT_NEVER_SET"],
        "      github:\n        secret: \"{{ secrets.VERIFY_IT_NEVER_SET }}\"",
    );
    let server = TestServer::start(&[("unset.yaml", &yaml)]).await;
    let file = "github/push.json";
    // Signed with the empty key an unset secret would otherwise become.
    let signed = sign("github", &[""], file, &[]);
    assert_unauthorized(&server, post(&server, "/hooks/unset", file, &signed).await).await;
    server.stop().await;
}

#[tokio::test]
async fn twilio_signed_sms_runs_and_a_tampered_one_is_refused() {
    set_env("VERIFY_IT_TWILIO", "twilio-auth-token");
    let yaml = workflow(
        "twilio",
        "/hooks/twilio",
        &["VERIFY_IT_TWILIO"],
        "      twilio:\n        secret: \"{{ secrets.VERIFY_IT_TWILIO }}\"\n        url: https://hooks.example.com/hooks/twilio",
    );
    let server = TestServer::start(&[("twilio.yaml", &yaml)]).await;
    let file = "twilio/sms.incoming.txt";
    // The request's query string is part of the signed URL, added to the configured one.
    let path = "/hooks/twilio?site=eu";
    let signed_url = "https://hooks.example.com/hooks/twilio?site=eu";
    let send = |headers: Vec<(String, String)>, body: Vec<u8>| {
        let server = &server;
        async move {
            let borrowed: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let response = server
                .post_with(path, "application/x-www-form-urlencoded", body, &borrowed)
                .await;
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            (status, serde_json::from_str(&text).unwrap_or(Json::Null))
        }
    };
    let good = sign(
        "twilio",
        &["twilio-auth-token"],
        file,
        &["--url", signed_url],
    );

    let mut tampered = fixture(file);
    let at = tampered
        .iter()
        .position(|b| *b == b'9')
        .expect("a digit to change");
    tampered[at] = b'8';
    assert_unauthorized(&server, send(good.clone(), tampered).await).await;
    // Signed for another URL: the query string matters.
    let other = sign(
        "twilio",
        &["twilio-auth-token"],
        file,
        &["--url", "https://hooks.example.com/hooks/twilio"],
    );
    assert_unauthorized(&server, send(other, fixture(file)).await).await;

    assert_runs(&server, send(good, fixture(file)).await).await;
    server.stop().await;
}

#[test]
fn twilio_needs_its_url() {
    let yaml = workflow(
        "twilio-no-url",
        "/hooks/twilio",
        &["VERIFY_IT_TWILIO"],
        "      twilio:\n        secret: \"{{ secrets.VERIFY_IT_TWILIO }}\"",
    );
    let file = hookflow::diag::SourceFile::new("t.yaml".to_owned(), yaml);
    let (workflow, diagnostics) = hookflow::workflow::compile_file(file, &Default::default());
    assert!(workflow.is_none());
    let text: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
    assert!(text.iter().any(|m| m.contains("url")), "{text:?}");
}

#[tokio::test]
async fn generic_hmac_reproduces_slack_through_its_content_template() {
    set_env("VERIFY_IT_HMAC", "hmac-slack-secret");
    let yaml = workflow(
        "hmac",
        "/hooks/hmac",
        &["VERIFY_IT_HMAC"],
        "      hmac:\n        secret: \"{{ secrets.VERIFY_IT_HMAC }}\"\n        header: X-Slack-Signature\n        prefix: \"v0=\"\n        timestamp_header: X-Slack-Request-Timestamp\n        tolerance: 5m\n        content: \"v0:{{ timestamp }}:{{ body }}\"",
    );
    let server = TestServer::start(&[("hmac.yaml", &yaml)]).await;
    // A JSON body: quotes and `&`-free text must reach the MAC unescaped.
    let file = "github/push.json";
    let stale = sign(
        "slack",
        &["hmac-slack-secret"],
        file,
        &["--timestamp", "1531420618"],
    );
    assert_unauthorized(&server, post(&server, "/hooks/hmac", file, &stale).await).await;
    let forged = sign("slack", &["other"], file, &["--timestamp", &now()]);
    assert_unauthorized(&server, post(&server, "/hooks/hmac", file, &forged).await).await;
    let good = sign(
        "slack",
        &["hmac-slack-secret"],
        file,
        &["--timestamp", &now()],
    );
    assert_runs(&server, post(&server, "/hooks/hmac", file, &good).await).await;
    server.stop().await;
}

#[test]
fn generic_hmac_settings_are_checked_when_compiled() {
    let compile = |settings: &str| {
        let yaml = workflow(
            "hmac-bad",
            "/hooks/hmac",
            &["VERIFY_IT_HMAC"],
            &format!(
                "      hmac:\n        secret: \"{{{{ secrets.VERIFY_IT_HMAC }}}}\"\n{settings}"
            ),
        );
        let file = hookflow::diag::SourceFile::new("h.yaml".to_owned(), yaml);
        let (workflow, diagnostics) = hookflow::workflow::compile_file(file, &Default::default());
        let text: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
        (workflow.is_some(), text)
    };
    let (ok, text) =
        compile("        header: X-Sig\n        algorithm: sha512\n        encoding: base64");
    assert!(ok, "{text:?}");
    for (settings, expected) in [
        ("        algorithm: sha256", "header"),
        ("        header: X-Sig\n        algorithm: md5", "algorithm"),
        (
            "        header: X-Sig\n        encoding: base32",
            "encoding",
        ),
        ("        header: \"bad header\"", "header name"),
        (
            "        header: X-Sig\n        tolerance: 5m",
            "timestamp_header",
        ),
        (
            "        header: X-Sig\n        content: \"{{ body\"",
            "syntax",
        ),
    ] {
        let (ok, text) = compile(settings);
        assert!(!ok, "{settings}");
        assert!(
            text.iter().any(|m| m.contains(expected)),
            "{settings}: {text:?}"
        );
    }
}

#[tokio::test]
async fn basic_and_query_token_presets_guard_their_routes() {
    set_env("VERIFY_IT_BASIC_USER", "hooks");
    set_env("VERIFY_IT_BASIC_PASSWORD", "pa:ss");
    set_env("VERIFY_IT_TOKEN", "tok-123");
    let basic = workflow(
        "basic",
        "/hooks/basic",
        &["VERIFY_IT_BASIC_USER", "VERIFY_IT_BASIC_PASSWORD"],
        "      basic:\n        username: \"{{ secrets.VERIFY_IT_BASIC_USER }}\"\n        password: \"{{ secrets.VERIFY_IT_BASIC_PASSWORD }}\"",
    );
    let token = workflow(
        "token",
        "/hooks/token",
        &["VERIFY_IT_TOKEN"],
        "      token:\n        query: key\n        value: \"{{ secrets.VERIFY_IT_TOKEN }}\"",
    );
    let server = TestServer::start(&[("basic.yaml", &basic), ("token.yaml", &token)]).await;
    let file = "github/push.json";
    let auth = |credentials: &str| {
        use base64::Engine;
        vec![(
            "Authorization".to_owned(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
        )]
    };
    assert_unauthorized(
        &server,
        post(&server, "/hooks/basic", file, &auth("hooks:pass")).await,
    )
    .await;
    assert_unauthorized(
        &server,
        post(&server, "/hooks/basic", file, &auth("hook:pa:ss")).await,
    )
    .await;
    assert_unauthorized(&server, post(&server, "/hooks/basic", file, &[]).await).await;
    assert_unauthorized(
        &server,
        post(&server, "/hooks/token?key=tok-124", file, &[]).await,
    )
    .await;
    assert_unauthorized(&server, post(&server, "/hooks/token", file, &[]).await).await;

    // The refusals first: each checks that no run at all was stored.
    assert_runs(
        &server,
        post(&server, "/hooks/basic", file, &auth("hooks:pa:ss")).await,
    )
    .await;
    assert_runs(
        &server,
        post(&server, "/hooks/token?x=1&key=tok-123", file, &[]).await,
    )
    .await;
    server.stop().await;
}

#[test]
fn token_needs_exactly_one_of_header_and_query() {
    for (settings, expected) in [
        ("        value: x", "`header` or `query`"),
        (
            "        value: x\n        header: X-Token\n        query: key",
            "not both",
        ),
    ] {
        let yaml = workflow(
            "token-bad",
            "/hooks/token",
            &["VERIFY_IT_TOKEN"],
            &format!("      token:\n{settings}"),
        );
        let file = hookflow::diag::SourceFile::new("t.yaml".to_owned(), yaml);
        let (workflow, diagnostics) = hookflow::workflow::compile_file(file, &Default::default());
        assert!(workflow.is_none(), "{settings}");
        let text: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
        assert!(
            text.iter().any(|m| m.contains(expected)),
            "{settings}: {text:?}"
        );
    }
}

#[test]
fn workflows_sharing_a_path_must_verify_alike() {
    let a = workflow(
        "a",
        "/hooks/shared",
        &["VERIFY_IT_A"],
        "      github:\n        secret: \"{{ secrets.VERIFY_IT_A }}\"",
    );
    let b = "name: b\non:\n  webhook:\n    path: /hooks/shared\nsteps:\n  - log: \"b\"\n";
    let sources = vec![
        hookflow::diag::SourceFile::new("a.yaml".to_owned(), a),
        hookflow::diag::SourceFile::new("b.yaml".to_owned(), b.to_owned()),
    ];
    let loaded = hookflow::workflow::load_sources(sources, &Default::default());
    let messages: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("different `verify`")),
        "{messages:?}"
    );
}

#[test]
fn verify_secrets_must_be_declared_and_presets_known() {
    let yaml = "name: bad\non:\n  webhook:\n    path: /hooks/bad\n    verify:\n      github:\n        secret: \"{{ secrets.UNDECLARED }}\"\n      gitlabb:\n        token: x\nsteps:\n  - log: \"x\"\n";
    let file = hookflow::diag::SourceFile::new("bad.yaml".to_owned(), yaml.to_owned());
    let (workflow, diagnostics) = hookflow::workflow::compile_file(file, &Default::default());
    assert!(workflow.is_none());
    let text: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
    assert!(text.iter().any(|m| m.contains("UNDECLARED")), "{text:?}");
    assert!(text.iter().any(|m| m.contains("gitlabb")), "{text:?}");
}

/// `hookflow sign` prints the headers a provider would send: the server accepts a body signed
/// with the right secret and refuses one signed with another.
#[tokio::test]
async fn hookflow_sign_prints_headers_the_server_accepts() {
    set_env("VERIFY_IT_SIGN_CLI", "sign-cli-secret");
    let mut servers = Vec::new();
    for scheme in ["github", "shopify", "stripe", "slack"] {
        let yaml = workflow(
            &format!("signed-{scheme}"),
            &format!("/hooks/signed-{scheme}"),
            &["VERIFY_IT_SIGN_CLI"],
            &format!("      {scheme}:\n        secret: \"{{{{ secrets.VERIFY_IT_SIGN_CLI }}}}\""),
        );
        servers.push((scheme, yaml));
    }
    let files: Vec<(String, &str)> = servers
        .iter()
        .map(|(scheme, yaml)| (format!("{scheme}.yaml"), yaml.as_str()))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, y)| (n.as_str(), *y)).collect();
    let server = TestServer::start(&files).await;
    let signed = |scheme: &str, secret: &str| -> Vec<(String, String)> {
        let output = Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(["sign", "--scheme", scheme, "--secret", secret])
            .arg(fixture_path("github/push.json"))
            .output()
            .expect("hookflow sign");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    };
    for (scheme, _) in &servers {
        let path = format!("/hooks/signed-{scheme}");
        let good = signed(scheme, "sign-cli-secret");
        assert!(!good.is_empty(), "{scheme}: no header printed");
        let (status, answer) = post(&server, &path, "github/push.json", &good).await;
        assert_eq!(status, 202, "{scheme}: {answer}");
        let wrong = signed(scheme, "another-secret");
        let (status, answer) = post(&server, &path, "github/push.json", &wrong).await;
        assert_eq!(status, 401, "{scheme}: {answer}");
    }
    server.stop().await;
}
