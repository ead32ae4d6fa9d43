//! HTTPS on the webhook listener: a client trusting the served certificate gets its 202; after
//! the files are replaced and the server reloads, new connections get the new certificate; a
//! reload with unreadable files keeps the one in use.

use std::path::{Path, PathBuf};

use crate::support::TestServer;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A client that trusts only `cert` (no system roots), with no pooled connections, so each
/// request makes a new TLS handshake.
fn trusting(cert: &str) -> reqwest::Client {
    hookflow::effects::http::install_crypto_provider();
    let pem = std::fs::read(fixture(cert)).expect("certificate");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

async fn post(client: &reqwest::Client, url: &str) -> Result<u16, reqwest::Error> {
    client
        .post(url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn https_is_served_and_a_reload_swaps_the_certificate() {
    let workflow =
        "name: secure\non:\n  webhook:\n    path: /hooks/secure\nsteps:\n  - log: \"in\"\n";
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    std::fs::copy(fixture("first.crt"), &cert).unwrap();
    std::fs::copy(fixture("first.key"), &key).unwrap();
    let tls = hookflow::settings::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
    };
    let server = TestServer::start_with(&[("secure.yaml", workflow)], |s| s.tls = Some(tls)).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/hooks/secure");
    let by_address = format!("https://127.0.0.1:{port}/hooks/secure");
    let (first, second) = (trusting("first.crt"), trusting("second.crt"));

    assert_eq!(post(&first, &url).await.expect("https"), 202);
    assert_eq!(post(&first, &by_address).await.expect("https"), 202);
    assert!(
        post(&second, &url).await.is_err(),
        "an untrusted certificate was accepted"
    );
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = format!("http://127.0.0.1:{port}/hooks/secure");
    assert!(post(&crate::support::client(), &plain).await.is_err());

    std::fs::copy(fixture("second.crt"), &cert).unwrap();
    std::fs::copy(fixture("second.key"), &key).unwrap();
    let reloader = server.running.as_ref().unwrap().reloader();
    reloader.reload().await.expect("reload");
    assert_eq!(post(&second, &url).await.expect("the new certificate"), 202);
    assert!(
        post(&first, &url).await.is_err(),
        "the old certificate is still served"
    );

    // Unreadable files: the reload keeps the certificate in use.
    std::fs::write(&cert, "not a certificate").unwrap();
    reloader.reload().await.expect("the workflows still reload");
    assert_eq!(post(&second, &url).await.expect("still the second"), 202);
    server.stop().await;
}

#[tokio::test]
async fn the_real_server_serves_https_from_flags_and_sighup_renews_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(
        dir.path().join("workflows/secure.yaml"),
        "name: secure\non:\n  webhook:\n    path: /hooks/secure\nsteps:\n  - log: \"in\"\n",
    )
    .unwrap();
    std::fs::copy(fixture("first.crt"), dir.path().join("tls.crt")).unwrap();
    std::fs::copy(fixture("first.key"), dir.path().join("tls.key")).unwrap();
    let server = crate::support::ServeProcess::start_with(
        dir.path(),
        &["--tls-cert", "tls.crt", "--tls-key", "tls.key"],
    );
    assert!(
        server
            .startup
            .iter()
            .any(|l| l.contains("scheme=\"https\"") || l.contains("scheme=https")),
        "{:#?}",
        server.startup
    );
    let url = format!(
        "{}/hooks/secure",
        server
            .webhook
            .replace("http://127.0.0.1", "https://localhost")
    );
    let (first, second) = (trusting("first.crt"), trusting("second.crt"));
    assert_eq!(post(&first, &url).await.expect("https"), 202);

    std::fs::copy(fixture("second.crt"), dir.path().join("tls.crt")).unwrap();
    std::fs::copy(fixture("second.key"), dir.path().join("tls.key")).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while post(&second, &url).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(post(&first, &url).await.is_err());
    let (_, log) = server.terminate();
    assert!(
        log.iter().any(|l| l.contains("TLS certificate reloaded")),
        "{log:#?}"
    );
}

/// Serve a caller whose `http` step posts to `target` over HTTPS, trusting only the roots in
/// `roots` (the system's trust store, pointed elsewhere by `SSL_CERT_FILE`); answer the
/// finished run of one webhook.
async fn call_over_https(target: &str, roots: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    let workflow = format!(
        "name: caller\non:\n  webhook:\n    path: /hooks/call\nsteps:\n  - name: call\n    http: {{ url: \"{target}\", json: {{ n: 1 }} }}\n"
    );
    std::fs::write(dir.path().join("workflows/caller.yaml"), workflow).unwrap();
    let roots = fixture(roots).display().to_string();
    let server =
        crate::support::ServeProcess::start_with_env(dir.path(), &[], &[("SSL_CERT_FILE", &roots)]);
    let client = crate::support::client();
    let accepted: serde_json::Value = client
        .post(format!("{}/hooks/call", server.webhook))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("webhook")
        .json()
        .await
        .expect("json");
    let run_id = accepted["run_ids"][0].as_str().expect("run id").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let detail: serde_json::Value = client
            .get(format!("{}/api/runs/{run_id}", server.admin))
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("json");
        if matches!(
            detail["run"]["status"].as_str(),
            Some("succeeded" | "failed")
        ) {
            server.terminate();
            return detail;
        }
        assert!(std::time::Instant::now() < deadline, "{detail}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Outgoing HTTPS checks the receiver's certificate against the system's roots, which are read
/// when the first certificate is checked: a trusted receiver is called, an untrusted one fails
/// the step with the reason.
#[tokio::test]
async fn outgoing_https_verifies_the_receiver_against_the_system_roots() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    std::fs::copy(fixture("first.crt"), &cert).unwrap();
    std::fs::copy(fixture("first.key"), &key).unwrap();
    let tls = hookflow::settings::TlsFiles { cert, key };
    let receiving =
        "name: receiving\non:\n  webhook:\n    path: /hooks/in\nsteps:\n  - log: \"in\"\n";
    let receiver = TestServer::start_with(&[("in.yaml", receiving)], |s| s.tls = Some(tls)).await;
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    let target = format!("https://localhost:{port}/hooks/in");

    let trusted = call_over_https(&target, "first.crt").await;
    assert_eq!(trusted["run"]["status"], "succeeded", "{trusted}");
    assert_eq!(
        crate::support::step(&trusted, "call")["output"]["status"],
        202
    );

    let untrusted = call_over_https(&target, "second.crt").await;
    assert_eq!(untrusted["run"]["status"], "failed", "{untrusted}");
    let error = crate::support::step(&untrusted, "call")["error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(error.contains("certificate"), "{untrusted}");
    receiver.stop().await;
}
