//! Secrets from a directory of files, one per secret, read by a real server.

use crate::support::{Receiver, TestServer};

#[tokio::test]
async fn secrets_can_come_from_a_directory_of_files() {
    let receiver = Receiver::start().await;
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/filed }} }}
secrets: [E2E_FILED_TOKEN]
steps:
  - http:
      url: "{url}"
      auth: {{ bearer: "{{{{ secrets.E2E_FILED_TOKEN }}}}" }}
"#,
        url = receiver.url("/filed")
    );
    let secrets = tempfile::tempdir().expect("tempdir");
    std::fs::write(secrets.path().join("E2E_FILED_TOKEN"), "token-from-file\n").expect("write");
    let dir = secrets.path().to_path_buf();
    let server = TestServer::start_with(&[("filed.yaml", &workflow)], move |s| {
        s.secrets = hookflow::secrets::SecretSource::new(Some(dir));
    })
    .await;
    let runs = server
        .accepted("/hooks/filed", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer token-from-file")
    );
    assert!(
        !run.to_string().contains("token-from-file"),
        "masked in the record"
    );
    server.stop().await;
}

/// An unset secret that `verify` needs is named with where to set it — the environment or the
/// secrets folder — at start and when a request is refused for it; `hookflow run` says it does
/// not check `verify`.
#[tokio::test]
async fn an_unset_verify_secret_says_where_to_set_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(dir.path().join("workflows")).expect("mkdir");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    let workflow = r#"
name: orders
on:
  webhook:
    path: /hooks/orders
    verify:
      shopify: { secret: "{{ secrets.UNSET_SHOPIFY_SECRET }}" }
secrets: [UNSET_SHOPIFY_SECRET]
steps:
  - log: "{{ event.body.id }}"
"#;
    std::fs::write(dir.path().join("workflows/orders.yaml"), workflow).expect("write");
    let secrets_arg = secrets.display().to_string();
    let server =
        crate::support::ServeProcess::start_with(dir.path(), &["--secrets-dir", &secrets_arg]);
    let response = crate::support::client()
        .post(format!("{}/hooks/orders", server.webhook))
        .header("content-type", "application/json")
        .header("x-shopify-hmac-sha256", "bm9wZQ==")
        .body(r#"{"id": 1}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);
    let fix = format!(
        "set UNSET_SHOPIFY_SECRET in the environment, or write it to {}",
        secrets.join("UNSET_SHOPIFY_SECRET").display()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut logs = server.startup.clone();
    while std::time::Instant::now() < deadline
        && logs.iter().filter(|l: &&String| l.contains(&fix)).count() < 2
    {
        logs.extend(server.logs());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let said: Vec<&String> = logs.iter().filter(|l| l.contains(&fix)).collect();
    assert!(
        said.iter()
            .any(|l| l.contains("declared secret is not set")),
        "the start-up warning: {logs:#?}"
    );
    assert!(
        said.iter().any(|l| l.contains("refusing the request")),
        "the refusal: {logs:#?}"
    );
    assert!(
        !logs.iter().any(|l| l.contains("is defined")),
        "template advice: {logs:#?}"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["run", "orders", "--dry-run"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    let trace = String::from_utf8_lossy(&output.stderr);
    assert!(
        trace.contains("note: verify (shopify) is not checked by `hookflow run`"),
        "{trace}"
    );
}
