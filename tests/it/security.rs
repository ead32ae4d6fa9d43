//! Security at the door: `verify.ip_allow` with trusted proxies, and the record of refused
//! requests the admin API lists.

use serde_json::Value as Json;

use crate::support::{TestServer, set_env};

fn ip_workflow(name: &str, path: &str, blocks: &str) -> (String, String) {
    (
        format!("{name}.yaml"),
        format!(
            "name: {name}\non:\n  webhook:\n    path: {path}\n    verify:\n      ip_allow: {blocks}\nsteps:\n  - log: \"in\"\n"
        ),
    )
}

async fn status_with(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> u16 {
    server
        .post_with(path, "application/json", b"{}".to_vec(), headers)
        .await
        .status()
        .as_u16()
}

async fn rejected(server: &TestServer, query: &str, token: Option<&str>) -> (u16, Json) {
    let mut request = server
        .client
        .get(format!("{}/api/rejected{query}", server.admin));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Json::Null))
}

#[tokio::test]
async fn ip_allow_admits_listed_sources_and_ignores_forwarded_for_from_untrusted_peers() {
    let (a, loopback) = ip_workflow("ip-loopback", "/hooks/ip/loopback", "[127.0.0.0/8]");
    let (b, private) = ip_workflow(
        "ip-private",
        "/hooks/ip/private",
        "[\"10.0.0.0/8\", \"192.0.2.7\"]",
    );
    let server = TestServer::start(&[(&a, &loopback), (&b, &private)]).await;
    assert_eq!(status_with(&server, "/hooks/ip/loopback", &[]).await, 202);
    assert_eq!(status_with(&server, "/hooks/ip/private", &[]).await, 401);
    // Anyone can write X-Forwarded-For: without trusted proxies it changes nothing.
    let spoofed = [("x-forwarded-for", "10.1.2.3")];
    assert_eq!(
        status_with(&server, "/hooks/ip/private", &spoofed).await,
        401
    );
    assert_eq!(
        status_with(&server, "/hooks/ip/loopback", &spoofed).await,
        202
    );
    let (_, list) = rejected(&server, "", None).await;
    let first = &list["rejected"][0];
    assert_eq!(first["reason"], "ip_not_allowed", "{list}");
    assert_eq!(first["source"], "127.0.0.1", "{list}");
    assert_eq!(first["status"], 401, "{list}");
    assert_eq!(first["route"], "/hooks/ip/private", "{list}");
    assert_eq!(
        first["workflows"],
        serde_json::json!(["ip-private"]),
        "{list}"
    );
    server.stop().await;
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let (a, loopback) = ip_workflow("ip-loopback", "/hooks/ip/loopback", "[127.0.0.0/8]");
    let (b, private) = ip_workflow("ip-private", "/hooks/ip/private", "[10.0.0.0/8]");
    let server = TestServer::start_with(&[(&a, &loopback), (&b, &private)], |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let from_private = [("x-forwarded-for", "10.1.2.3")];
    assert_eq!(
        status_with(&server, "/hooks/ip/private", &from_private).await,
        202
    );
    // Now the client is 10.1.2.3, not the loopback proxy.
    assert_eq!(
        status_with(&server, "/hooks/ip/loopback", &from_private).await,
        401
    );
    // The client wrote the leftmost entry; the proxy appended the real one.
    let spoofed = [("x-forwarded-for", "10.9.9.9, 203.0.113.9")];
    assert_eq!(
        status_with(&server, "/hooks/ip/private", &spoofed).await,
        401
    );
    // Without the header the peer (the proxy itself) is the source.
    assert_eq!(status_with(&server, "/hooks/ip/loopback", &[]).await, 202);
    let (_, list) = rejected(&server, "", None).await;
    let sources: Vec<&str> = list["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["203.0.113.9", "10.1.2.3"], "{list}");
    server.stop().await;
}

#[tokio::test]
async fn refused_requests_are_recorded_with_their_reason_and_never_the_secret() {
    let secret = "rejected-record-secret-7d1f";
    set_env("REJECTED_IT_SECRET", secret);
    let signed = "name: signed\non:\n  webhook:\n    path: /hooks/signed\n    max_body: 64\n    rate_limit: { rate: 1/m, burst: 6 }\n    verify:\n      github:\n        secret: \"{{ secrets.REJECTED_IT_SECRET }}\"\nsecrets: [REJECTED_IT_SECRET]\nsteps:\n  - log: \"in\"\n";
    let server = TestServer::start_with(&[("signed.yaml", signed)], |s| {
        s.admin_token = Some("admin-token-for-rejected".into());
    })
    .await;
    let body = br#"{"planted":"body-marker-5c2a"}"#.to_vec();
    let post = |headers: &'static [(&'static str, &'static str)], body: Vec<u8>| {
        let server = &server;
        async move {
            server
                .post_with("/hooks/signed", "application/json", body, headers)
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(&[], body.clone()).await, 401);
    assert_eq!(
        post(&[("x-hub-signature-256", "sha256=00ff")], body.clone()).await,
        401
    );
    assert_eq!(post(&[], vec![b'x'; 65]).await, 413);
    let nowhere = server
        .post("/hooks/nowhere", "application/json", b"{}".to_vec())
        .await;
    assert_eq!(nowhere.status(), 404);
    // Burst of 6, of which 3 went: the 7th request is over the limit.
    for _ in 0..3 {
        assert_eq!(post(&[], body.clone()).await, 401);
    }
    assert_eq!(post(&[], body.clone()).await, 429);

    let (status, _) = rejected(&server, "", None).await;
    assert_eq!(status, 401, "the list is behind the admin token");
    let (status, list) = rejected(&server, "", Some("admin-token-for-rejected")).await;
    assert_eq!(status, 200, "{list}");
    let reasons: Vec<&str> = list["rejected"]
        .as_array()
        .expect("rejected list")
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "rate_limited",
            "missing_header",
            "missing_header",
            "missing_header",
            "no_route",
            "body_too_large",
            "bad_signature",
            "missing_header",
        ],
        "{list}"
    );
    let first = &list["rejected"][0];
    assert_eq!(first["status"], 429);
    assert_eq!(first["path"], "/hooks/signed");
    assert_eq!(first["method"], "POST");
    assert_eq!(first["source"], "127.0.0.1");
    assert!(
        first["at"].as_str().is_some_and(|t| t.contains('T')),
        "{first}"
    );
    assert_eq!(
        list["rejected"][7]["detail"],
        "github: the header x-hub-signature-256 is missing"
    );
    let text = list.to_string();
    assert!(!text.contains(secret), "the secret leaked: {text}");
    assert!(
        !text.contains("body-marker-5c2a"),
        "the body leaked: {text}"
    );

    let (_, two) = rejected(&server, "?limit=2", Some("admin-token-for-rejected")).await;
    assert_eq!(two["rejected"].as_array().unwrap().len(), 2, "{two}");
    assert_eq!(two["rejected"][0], list["rejected"][0]);
    server.stop().await;
}

#[tokio::test]
async fn a_signed_http_step_passes_our_own_standard_webhooks_verify_on_every_attempt() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    set_env("SIGN_IT_SECRET", secret);
    let receiver = crate::support::Receiver::start().await;
    receiver.reply_times("/signed", 1, 503, &[], "busy");
    let workflow = format!(
        "name: forward-signed\non:\n  webhook:\n    path: /hooks/forward-signed\nsecrets: [SIGN_IT_SECRET]\nsteps:\n  - name: forward\n    retry: {{ attempts: 2, initial: 200ms }}\n    http:\n      url: {}\n      json: \"{{{{ event.body }}}}\"\n      sign:\n        standard_webhooks:\n          secret: \"{{{{ secrets.SIGN_IT_SECRET }}}}\"\n",
        receiver.url("/signed")
    );
    let server = TestServer::start(&[("forward.yaml", &workflow)]).await;
    let ids = server
        .accepted(
            "/hooks/forward-signed",
            "application/json",
            br#"{"order": 42}"#.to_vec(),
        )
        .await;
    let run = server.finished_run(&ids[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(2).await;
    let preset = hookflow::verify::Preset::new(hookflow::verify::Scheme::StandardWebhooks);
    let now = chrono::Utc::now().timestamp();
    for request in &got {
        assert_eq!(
            hookflow::verify::check(
                &preset,
                &request.headers,
                &request.body,
                now,
                &[secret.to_owned()]
            ),
            Ok(()),
            "{request:?}"
        );
        // A receiver keyed with another secret refuses it.
        assert!(
            hookflow::verify::check(
                &preset,
                &request.headers,
                &request.body,
                now,
                &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned()]
            )
            .is_err()
        );
    }
    // The retry is the same message to the receiver.
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        ids[0],
        format!("{}.forward", run["run"]["id"].as_str().unwrap())
    );
    assert!(!run.to_string().contains(secret), "{run}");
    server.stop().await;
}

/// Read what the server sends until it closes the connection (or the deadline passes, which
/// fails the test): a client cut off sees the end of the stream.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the server kept the slow connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_do_not_hold_the_server() {
    use tokio::io::AsyncWriteExt;
    let workflow = "name: slow\non:\n  webhook:\n    path: /hooks/slow\nsteps:\n  - log: \"in\"\n";
    let server = TestServer::start_with(&[("slow.yaml", workflow)], |s| {
        s.header_timeout = std::time::Duration::from_secs(1);
        s.body_timeout = std::time::Duration::from_secs(1);
        s.max_header_size = 16 * 1024;
    })
    .await;
    let address = server.base.trim_start_matches("http://").to_owned();

    // Headers that never end.
    let mut slow_headers = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow_headers
        .write_all(b"POST /hooks/slow HTTP/1.1\r\nHost: x\r\nX-Drip: 1\r\n")
        .await
        .unwrap();
    // A body that never comes in full.
    let mut slow_body = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow_body
        .write_all(b"POST /hooks/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();
    // Meanwhile others are served.
    let answer = server
        .post("/hooks/slow", "application/json", b"{}".to_vec())
        .await;
    assert_eq!(answer.status(), 202);

    let cut = read_until_closed(&mut slow_headers).await;
    assert!(
        cut.is_empty() || cut.starts_with("HTTP/1.1 408"),
        "unexpected answer to slow headers: {cut}"
    );
    let cut = read_until_closed(&mut slow_body).await;
    assert!(cut.starts_with("HTTP/1.1 408"), "{cut}");

    // Headers over max_header_size.
    let mut big = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /hooks/slow HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        "a".repeat(32 * 1024)
    );
    // The server may stop reading early; what it answers is what counts.
    let _ = big.write_all(request.as_bytes()).await;
    let refused = read_until_closed(&mut big).await;
    assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");

    let (_, list) = rejected(&server, "", None).await;
    assert_eq!(list["rejected"][0]["reason"], "body_unreadable", "{list}");
    assert_eq!(list["rejected"][0]["status"], 408, "{list}");
    // Still serving.
    let answer = server
        .post("/hooks/slow", "application/json", b"{}".to_vec())
        .await;
    assert_eq!(answer.status(), 202);
    server.stop().await;
}

/// The credentials a sender proves itself with (GitLab's token header, Basic auth, a shared
/// token in a header or the query string) are the workflow's secrets: once checked they are
/// masked in the stored event, so neither the admin API, `runs show`, the SQLite files nor a
/// template reading `event.headers` or `event.query` holds them.
#[tokio::test]
async fn credentials_a_request_is_verified_with_are_not_stored_with_its_event() {
    let gitlab = "gitlab-cred-token-41c9";
    let password = "basic-cred-pass-83de";
    let query = "query-cred-token-5a07";
    let header = "header-cred-token-9f21";
    set_env("CREDS_IT_GITLAB", gitlab);
    set_env("CREDS_IT_PASSWORD", password);
    set_env("CREDS_IT_QUERY", query);
    set_env("CREDS_IT_HEADER", header);
    let workflow = |name: &str, verify: &str, secret: &str| {
        (
            format!("{name}.yaml"),
            format!(
                "name: {name}\nsecrets: [{secret}]\non:\n  webhook:\n    path: /hooks/{name}\n    verify:\n{verify}\nsteps:\n  - name: seen\n    log: \"{{{{ event.headers | tojson }}}} {{{{ event.query | tojson }}}}\"\n"
            ),
        )
    };
    let workflows = [
        workflow(
            "creds-gitlab",
            "      gitlab:\n        token: \"{{ secrets.CREDS_IT_GITLAB }}\"",
            "CREDS_IT_GITLAB",
        ),
        workflow(
            "creds-basic",
            "      basic:\n        username: hook\n        password: \"{{ secrets.CREDS_IT_PASSWORD }}\"",
            "CREDS_IT_PASSWORD",
        ),
        workflow(
            "creds-query",
            "      token:\n        query: key\n        value: \"{{ secrets.CREDS_IT_QUERY }}\"",
            "CREDS_IT_QUERY",
        ),
        workflow(
            "creds-header",
            "      token:\n        header: X-Hook-Token\n        value: \"{{ secrets.CREDS_IT_HEADER }}\"",
            "CREDS_IT_HEADER",
        ),
    ];
    let files: Vec<(&str, &str)> = workflows
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let server = TestServer::start(&files).await;
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("hook:{password}"));
    let authorization = format!("Basic {basic}");
    let sent: [(&str, Vec<(&str, &str)>); 4] = [
        ("/hooks/creds-gitlab", vec![("x-gitlab-token", gitlab)]),
        (
            "/hooks/creds-basic",
            vec![("authorization", authorization.as_str())],
        ),
        (&format!("/hooks/creds-query?key={query}&other=1"), vec![]),
        ("/hooks/creds-header", vec![("x-hook-token", header)]),
    ];
    let mut runs = Vec::new();
    for (path, headers) in &sent {
        let response = server
            .post_with(path, "application/json", b"{}".to_vec(), headers)
            .await;
        assert_eq!(response.status(), 202, "{path}");
        let answer: Json = response.json().await.unwrap();
        let id = answer["run_ids"][0].as_str().unwrap().to_owned();
        runs.push(server.finished_run(&id).await);
    }
    // Still there, masked: a workflow can see that the header was sent.
    assert_eq!(runs[0]["event"]["headers"]["x-gitlab-token"], "***");
    assert_eq!(runs[1]["event"]["headers"]["authorization"], "***");
    assert_eq!(runs[2]["event"]["query"]["key"], "***");
    assert_eq!(runs[2]["event"]["query"]["other"], "1");
    assert_eq!(runs[3]["event"]["headers"]["x-hook-token"], "***");
    let planted = [gitlab, password, query, header, basic.as_str()];
    for run in &runs {
        let text = run.to_string();
        for value in planted {
            assert!(!text.contains(value), "{value} is in the run: {text}");
        }
    }
    // Refused with the right token in the query: the record has the path, not the query.
    let refused = server
        .client
        .get(format!("{}/hooks/creds-query?key={query}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 405);
    let (_, list) = rejected(&server, "", None).await;
    assert_eq!(list["rejected"][0]["path"], "/hooks/creds-query", "{list}");
    assert!(!list.to_string().contains(query), "{list}");
    let dir = server.stop().await;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("hookflow.db") {
            let bytes = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            for value in planted {
                assert!(!bytes.contains(value), "{value} is in {name}");
            }
        }
    }
}

/// Behind a trusted proxy that is itself inside `ip_allow`, the client must not pass for the
/// proxy: not by writing a byte that is not ASCII into its own `X-Forwarded-For` (the whole
/// header was once dropped, leaving the proxy as the source), not when the proxy adds a port to
/// the entry, and not when the proxy writes `unknown`.
#[tokio::test]
async fn a_client_behind_a_trusted_proxy_cannot_pass_for_the_proxy() {
    let (a, loopback) = ip_workflow("ip-proxy-net", "/hooks/ip/proxy-net", "[127.0.0.0/8]");
    let server = TestServer::start_with(&[(&a, &loopback)], |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let send = |value: &'static [u8]| {
        let server = &server;
        async move {
            server
                .client
                .post(format!("{}/hooks/ip/proxy-net", server.base))
                .header("content-type", "application/json")
                .header(
                    "x-forwarded-for",
                    reqwest::header::HeaderValue::from_bytes(value).unwrap(),
                )
                .body("{}")
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    // The proxy's own entry, after what the client wrote.
    assert_eq!(send(b"\xff\xfe, 203.0.113.9").await, 401);
    assert_eq!(send(b"203.0.113.9:41234").await, 401);
    assert_eq!(send(b"[2001:db8::9]:443").await, 401);
    assert_eq!(send(b"unknown").await, 401);
    // A local client through the proxy still passes.
    assert_eq!(send(b"\xff, 127.0.0.5:5000").await, 202);
    let (_, list) = rejected(&server, "", None).await;
    let sources: Vec<&Json> = list["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["source"])
        .collect();
    assert_eq!(
        sources,
        [
            &Json::Null,
            &Json::from("2001:db8::9"),
            &Json::from("203.0.113.9"),
            &Json::from("203.0.113.9"),
        ],
        "{list}"
    );
    server.stop().await;
}

/// A workflow that also writes `webhook-timestamp` or `webhook-signature` itself does not send
/// them twice: the signed request carries one of each, the ones that verify.
#[tokio::test]
async fn a_signed_http_step_sends_one_signature_whatever_its_headers_say() {
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    set_env("SIGN_DUP_IT_SECRET", secret);
    let receiver = crate::support::Receiver::start().await;
    let workflow = format!(
        "name: forward-dup\non:\n  webhook:\n    path: /hooks/forward-dup\nsecrets: [SIGN_DUP_IT_SECRET]\nsteps:\n  - name: forward\n    http:\n      url: {}\n      headers:\n        Webhook-Timestamp: \"1\"\n        webhook-signature: \"v1,bogus\"\n      json: \"{{{{ event.body }}}}\"\n      sign:\n        standard_webhooks:\n          secret: \"{{{{ secrets.SIGN_DUP_IT_SECRET }}}}\"\n",
        receiver.url("/signed")
    );
    let server = TestServer::start(&[("forward.yaml", &workflow)]).await;
    let ids = server
        .accepted("/hooks/forward-dup", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&ids[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(1).await;
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(got[0].headers.get_all(name).iter().count(), 1, "{name}");
    }
    let preset = hookflow::verify::Preset::new(hookflow::verify::Scheme::StandardWebhooks);
    assert_eq!(
        hookflow::verify::check(
            &preset,
            &got[0].headers,
            &got[0].body,
            chrono::Utc::now().timestamp(),
            &[secret.to_owned()]
        ),
        Ok(())
    );
    server.stop().await;
}

/// A captured Standard Webhooks delivery sent again within the tolerance is a duplicate; adding
/// a second `webhook-id` header (the check read the first, the dedupe key joined both) once made
/// it a new delivery that ran again.
#[tokio::test]
async fn a_replayed_delivery_cannot_dodge_dedupe_with_a_repeated_header() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    set_env("REPLAY_IT_SECRET", secret);
    let workflow = "name: replayed\nsecrets: [REPLAY_IT_SECRET]\non:\n  webhook:\n    path: /hooks/replayed\n    verify:\n      standard_webhooks:\n        secret: \"{{ secrets.REPLAY_IT_SECRET }}\"\nsteps:\n  - log: \"in\"\n";
    let server = TestServer::start(&[("replayed.yaml", workflow)]).await;
    let body = br#"{"order": 7}"#;
    let ts = chrono::Utc::now().timestamp();
    let signature =
        hookflow::verify::standard_webhooks_signature(secret, "msg_replay_1", ts, body).unwrap();
    let ts = ts.to_string();
    let send = |extra_id: Option<&'static str>| {
        let (server, ts, signature) = (&server, ts.clone(), signature.clone());
        async move {
            let mut request = server
                .client
                .post(format!("{}/hooks/replayed", server.base))
                .header("content-type", "application/json")
                .header("webhook-id", "msg_replay_1")
                .header("webhook-timestamp", ts)
                .header("webhook-signature", signature);
            if let Some(id) = extra_id {
                request = request.header("webhook-id", id);
            }
            let response = request.body(body.to_vec()).send().await.expect("request");
            response.status().as_u16()
        }
    };
    assert_eq!(send(None).await, 202);
    assert_eq!(
        send(None).await,
        200,
        "the same delivery again is a duplicate"
    );
    assert_eq!(send(Some("msg_fresh")).await, 401);
    let (_, list) = rejected(&server, "", None).await;
    assert_eq!(
        list["rejected"][0]["reason"], "malformed_signature",
        "{list}"
    );
    assert_eq!(
        list["rejected"][0]["detail"],
        "standard_webhooks: the header webhook-id is sent more than once"
    );
    server.stop().await;
}

/// A kept-alive connection that sends nothing after its answer is closed within
/// `header_timeout` too: idle connections cannot be hoarded one request at a time.
#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let workflow = "name: idle\non:\n  webhook:\n    path: /hooks/idle\nsteps:\n  - log: \"in\"\n";
    let server = TestServer::start_with(&[("idle.yaml", workflow)], |s| {
        s.header_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"POST /hooks/idle HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = stream.read(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer[..read]).into_owned();
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let started = std::time::Instant::now();
    let rest = read_until_closed(&mut stream).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    server.stop().await;
}

/// A client that pipelines requests and never reads the answers stalls its connection in a
/// write, where no header or body deadline applies: a stop must not wait for it forever.
#[tokio::test]
async fn a_client_that_never_reads_does_not_hold_up_a_stop() {
    use tokio::io::AsyncWriteExt;
    let workflow =
        "name: unread\non:\n  webhook:\n    path: /hooks/unread\nsteps:\n  - log: \"in\"\n";
    let server = TestServer::start_with(&[("unread.yaml", workflow)], |s| {
        s.header_timeout = std::time::Duration::from_secs(1);
        s.body_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let address: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    // Answers pile up unread until both sides' buffers are full and the server's write waits.
    let request = format!(
        "GET /nowhere/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "p".repeat(1000)
    );
    let writer = tokio::spawn(async move {
        for _ in 0..20_000 {
            if stream.write_all(request.as_bytes()).await.is_err() {
                break;
            }
        }
        stream
    });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let started = std::time::Instant::now();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), server.stop()).await;
    assert!(stopped.is_ok(), "the stop waited for the unread connection");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    writer.abort();
}

/// A request whose request line and headers, up to and including the empty line that ends them,
/// take exactly `size` bytes; its body is `{}`.
fn request_with_header_block(size: usize) -> Vec<u8> {
    let head = "POST /hooks/limit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Pad: ";
    let tail = "\r\n\r\n";
    let pad = size - head.len() - tail.len();
    format!("{head}{}{tail}{{}}", "p".repeat(pad)).into_bytes()
}

/// Send raw bytes on a fresh connection and return the status line of the answer.
async fn raw_status(address: &str, request: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may stop reading early; what it answers is what counts.
    let _ = stream.write_all(request).await;
    let answer = read_until_closed_or_answered(&mut stream).await;
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Read until the first answer's head has arrived, or the connection closes.
async fn read_until_closed_or_answered(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no answer within 20 s"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// `max_header_size` (64 KiB by default) bounds the whole header block exactly: a 112 KiB block
/// was once accepted, because only hyper's read buffer was bounded and a read may overfill it.
#[tokio::test]
async fn the_header_limit_is_exact_at_the_documented_size() {
    use crate::support::ServeProcess;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(
        dir.path().join("workflows/limit.yaml"),
        "name: limit\non:\n  webhook:\n    path: /hooks/limit\nsteps:\n  - log: \"in\"\n",
    )
    .unwrap();
    let server = ServeProcess::start(dir.path());
    let address = server.webhook.trim_start_matches("http://").to_owned();
    let limit = hookflow::settings::DEFAULT_MAX_HEADER_SIZE;
    assert_eq!(limit, 64 * 1024);
    for (size, expected) in [
        (limit, "HTTP/1.1 202"),
        (limit + 1, "HTTP/1.1 431"),
        (114_688, "HTTP/1.1 431"),
    ] {
        let request = request_with_header_block(size);
        let status = raw_status(&address, &request).await;
        assert!(
            status.starts_with(expected),
            "a {size}-byte header block: {status}"
        );
    }
    // A smaller configured limit holds exactly too.
    drop(server);
    std::fs::write(dir.path().join("hookflow.yaml"), "max_header_size: 16KiB\n").unwrap();
    let server = ServeProcess::start(dir.path());
    let address = server.webhook.trim_start_matches("http://").to_owned();
    for (size, expected) in [(16 * 1024, "HTTP/1.1 202"), (16 * 1024 + 1, "HTTP/1.1 431")] {
        let status = raw_status(&address, &request_with_header_block(size)).await;
        assert!(
            status.starts_with(expected),
            "a {size}-byte header block under 16KiB: {status}"
        );
    }
}

/// `verify.basic` takes the `Basic` scheme in any case, as HTTP auth schemes are
/// case-insensitive; the credentials themselves are not.
#[tokio::test]
async fn the_basic_scheme_is_case_insensitive() {
    set_env("BASIC_CASE_IT_PASSWORD", "basic-case-pass-2c1");
    let workflow = "name: basic-case\nsecrets: [BASIC_CASE_IT_PASSWORD]\non:\n  webhook:\n    path: /hooks/basic-case\n    verify:\n      basic:\n        username: hook\n        password: \"{{ secrets.BASIC_CASE_IT_PASSWORD }}\"\nsteps:\n  - log: \"in\"\n";
    let server = TestServer::start(&[("basic-case.yaml", workflow)]).await;
    use base64::Engine as _;
    let encode = |pair: &str| base64::engine::general_purpose::STANDARD.encode(pair);
    let good = encode("hook:basic-case-pass-2c1");
    for scheme in ["Basic", "basic", "BASIC"] {
        let authorization = format!("{scheme} {good}");
        let status = status_with(
            &server,
            "/hooks/basic-case",
            &[("authorization", &authorization)],
        )
        .await;
        assert_eq!(status, 202, "{authorization}");
    }
    let wrong = format!("basic {}", encode("hook:Basic-case-pass-2c1"));
    let status = status_with(&server, "/hooks/basic-case", &[("authorization", &wrong)]).await;
    assert_eq!(status, 401);
    server.stop().await;
}
