//! The egress policy: with `deny` on, `http`, `ci` and `email` steps cannot reach loopback,
//! private, link-local or metadata addresses (written in the URL, resolved from a name, or a
//! redirect's target), and the step fails for good with the reason; `allow` opens them again.
//! Nothing here connects anywhere but loopback: the other addresses are refused before any
//! connection is tried.

use serde_json::{Value as Json, json};

use crate::support::{Receiver, TestServer, step};
use hookflow::net::{AddressClass, EgressPolicy};

/// Posts to the target named in the payload: the URL's host comes from the event, which
/// `validate` warns about and the egress policy guards.
fn forward(name: &str, follow: bool) -> (String, String) {
    (
        format!("{name}.yaml"),
        format!(
            "name: {name}\non:\n  webhook:\n    path: /hooks/{name}\nsteps:\n  - name: call\n    retry: {{ attempts: 3, initial: 1s }}\n    http:\n      method: POST\n      url: \"{{{{ event.body.url }}}}\"\n      json: {{ hello: world }}\n      follow_redirects: {follow}\n"
        ),
    )
}

async fn start(configure: impl FnOnce(&mut hookflow::settings::ServeSettings)) -> TestServer {
    let (a, forward_text) = forward("forward", false);
    let (b, follow_text) = forward("follow", true);
    TestServer::start_with(&[(&a, &forward_text), (&b, &follow_text)], configure).await
}

fn closed() -> EgressPolicy {
    EgressPolicy {
        deny: vec![
            AddressClass::Private,
            AddressClass::Loopback,
            AddressClass::LinkLocal,
            AddressClass::Metadata,
        ],
        ..EgressPolicy::default()
    }
}

async fn call(server: &TestServer, payload: Json) -> Json {
    let path = if payload["follow"] == true {
        "/hooks/follow"
    } else {
        "/hooks/forward"
    };
    let ids = server
        .accepted(
            path,
            "application/json",
            serde_json::to_vec(&payload).unwrap(),
        )
        .await;
    server.finished_run(&ids[0]).await
}

fn assert_denied(run: &Json, reason: &str) {
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let error = step(run, "call")["error"].as_str().unwrap_or_default();
    assert!(error.contains(reason), "expected '{reason}' in: {run}");
    // Refused for good: no retry was scheduled although the step allows three attempts.
    assert_eq!(step(run, "call")["attempts"], 1, "{run}");
}

#[tokio::test]
async fn a_closed_egress_refuses_loopback_private_link_local_and_metadata_targets() {
    let receiver = Receiver::start().await;
    let server = start(|s| s.egress = closed()).await;
    let port = receiver.addr.port();

    let run = call(&server, json!({ "url": receiver.url("/direct") })).await;
    assert_denied(&run, "egress policy denies 127.0.0.1 (loopback)");
    // A name that resolves to loopback is judged on the address it resolves to.
    let run = call(
        &server,
        json!({ "url": format!("http://localhost:{port}/by-name") }),
    )
    .await;
    assert_denied(&run, "(loopback)");
    let run = call(
        &server,
        json!({ "url": "http://169.254.169.254/latest/meta-data/" }),
    )
    .await;
    assert_denied(&run, "egress policy denies 169.254.169.254 (metadata)");
    let run = call(&server, json!({ "url": "http://10.0.0.1/internal" })).await;
    assert_denied(&run, "egress policy denies 10.0.0.1 (private)");
    let run = call(&server, json!({ "url": "http://[::ffff:10.0.0.1]/mapped" })).await;
    assert_denied(&run, "egress policy denies 10.0.0.1 (private)");
    assert!(
        receiver.received().is_empty(),
        "the receiver was reached: {:?}",
        receiver.received()
    );
    server.stop().await;
}

#[tokio::test]
async fn allowed_addresses_are_reached_and_a_followed_redirect_is_checked_too() {
    let receiver = Receiver::start().await;
    receiver.reply_with_headers(
        "/to-metadata",
        302,
        "text/plain",
        "moved",
        &[("location", "http://169.254.169.254/latest/meta-data/")],
    );
    receiver.reply_with_headers(
        "/to-self",
        302,
        "text/plain",
        "moved",
        &[("location", "/landed")],
    );
    let server = start(|s| {
        let mut policy = closed();
        policy.allow("127.0.0.1");
        policy.allow("localhost");
        s.egress = policy;
    })
    .await;
    let port = receiver.addr.port();

    let run = call(&server, json!({ "url": receiver.url("/direct") })).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let run = call(
        &server,
        json!({ "url": format!("http://localhost:{port}/by-name") }),
    )
    .await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    // Not followed unless asked: the 302 itself is the answer.
    let run = call(&server, json!({ "url": receiver.url("/to-self") })).await;
    assert_eq!(step(&run, "call")["output"]["status"], 302, "{run}");
    let run = call(
        &server,
        json!({ "url": receiver.url("/to-self"), "follow": true }),
    )
    .await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "call")["output"]["status"], 200, "{run}");
    let run = call(
        &server,
        json!({ "url": receiver.url("/to-metadata"), "follow": true }),
    )
    .await;
    assert_denied(&run, "egress policy denies 169.254.169.254 (metadata)");

    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        paths,
        [
            "/direct",
            "/by-name",
            "/to-self",
            "/to-self",
            "/landed",
            "/to-metadata"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn ci_and_email_steps_are_held_to_the_policy_too() {
    let receiver = Receiver::start().await;
    let workflows = [
        (
            "ci.yaml",
            format!(
                "name: ci-local\non:\n  webhook:\n    path: /hooks/ci\nsteps:\n  - name: call\n    ci:\n      jenkins:\n        base_url: {}\n        job: build\n        token: t0k3n-value\n",
                receiver.url("")
            ),
        ),
        (
            "mail.yaml",
            "name: mail-local\non:\n  webhook:\n    path: /hooks/mail\nsteps:\n  - name: call\n    email:\n      from: hookflow@example.test\n      to: ops@example.test\n      subject: hi\n      text: hello\n".to_owned(),
        ),
    ];
    let borrowed: Vec<(&str, &str)> = workflows.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let server = TestServer::start_with(&borrowed, |s| {
        s.egress = closed();
        // Nothing listens there: the policy refuses before a connection is tried.
        s.email.smtp = Some("smtp://127.0.0.1:9?tls=none".to_owned());
    })
    .await;
    for path in ["/hooks/ci", "/hooks/mail"] {
        let ids = server
            .accepted(path, "application/json", b"{}".to_vec())
            .await;
        let run = server.finished_run(&ids[0]).await;
        assert_denied(&run, "egress policy denies 127.0.0.1 (loopback)");
    }
    assert!(receiver.received().is_empty());
    server.stop().await;
}

#[test]
fn validate_warns_when_a_url_host_comes_from_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let (name, text) = forward("forward", false);
    let pinned = "name: pinned\non:\n  webhook:\n    path: /hooks/pinned\nsteps:\n  - http:\n      url: \"https://api.example.test/orders/{{ event.body.id }}\"\n";
    std::fs::write(dir.path().join(&name), text).unwrap();
    std::fs::write(dir.path().join("pinned.yaml"), pinned).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("validate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // A warning, not an error: the workflow is still valid.
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(": warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(
        warnings[0]
            .contains("forward.yaml:10:12: warning: the host of `url` comes from the payload"),
        "{stdout}"
    );
}

/// Other spellings of a denied address: the URL parser's numeric IPv4 forms (decimal, hex,
/// octal, shortened), the unspecified addresses (a connection to them reaches this host), IPv4
/// written as IPv6, and IPv6 link-local, unique-local and metadata addresses.
#[tokio::test]
async fn denied_addresses_are_denied_however_they_are_written() {
    let receiver = Receiver::start().await;
    let server = start(|s| s.egress = closed()).await;
    let port = receiver.addr.port();
    for (url, reason) in [
        (format!("http://2130706433:{port}/"), "127.0.0.1 (loopback)"),
        (format!("http://0x7f.0.0.1:{port}/"), "127.0.0.1 (loopback)"),
        (format!("http://0177.0.0.1:{port}/"), "127.0.0.1 (loopback)"),
        (format!("http://127.1:{port}/"), "127.0.0.1 (loopback)"),
        (format!("http://0:{port}/"), "0.0.0.0 (loopback)"),
        (format!("http://0.0.0.0:{port}/"), "0.0.0.0 (loopback)"),
        (format!("http://[::]:{port}/"), ":: (loopback)"),
        (format!("http://[::1]:{port}/"), "::1 (loopback)"),
        (
            format!("http://[::ffff:7f00:1]:{port}/"),
            "127.0.0.1 (loopback)",
        ),
        (
            "http://0xa9fea9fe/".to_owned(),
            "169.254.169.254 (metadata)",
        ),
        ("http://[fe80::1]/".to_owned(), "fe80::1 (link_local)"),
        (
            "http://[fd12:3456::1]/".to_owned(),
            "fd12:3456::1 (private)",
        ),
        (
            "http://[fd00:ec2::254]/".to_owned(),
            "fd00:ec2::254 (metadata)",
        ),
    ] {
        let run = call(&server, json!({ "url": url })).await;
        assert_denied(&run, &format!("egress policy denies {reason}"));
    }
    assert!(
        receiver.received().is_empty(),
        "the receiver was reached: {:?}",
        receiver.received()
    );
    server.stop().await;
}
