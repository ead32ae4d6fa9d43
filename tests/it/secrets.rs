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
