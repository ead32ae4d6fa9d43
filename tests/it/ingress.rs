//! The webhook door of a real server: refusals with the right status and reason, the event
//! committed before its answer, idempotency keys, rate limits and hostile bodies.

use serde_json::{Value as Json, json};

use crate::support::{Receiver, TestServer, list_runs};

#[tokio::test]
async fn refusals_are_the_right_4xx_with_a_reason_and_store_nothing() {
    let workflow = r#"
on:
  webhook:
    path: /hooks/small
    methods: [POST, PUT]
    max_body: 64
steps:
  - log: "{{ event.body }}"
"#;
    let server = TestServer::start(&[("small.yaml", workflow)]).await;
    let url = |p: &str| format!("{}{p}", server.base);

    let response = server.post_json("/hooks/unknown", &json!({})).await;
    assert_eq!(response.status(), 404);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("/hooks/unknown")
    );

    let response = server
        .client
        .get(url("/hooks/small"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST, PUT")
    );

    let response = server
        .post("/hooks/small", "application/json", b"{\"a\": ".to_vec())
        .await;
    assert_eq!(response.status(), 400);
    let reason: Json = response.json().await.expect("json");
    assert!(
        reason["error"]
            .as_str()
            .expect("error")
            .contains("invalid JSON at line 1"),
        "{reason}"
    );

    let response = server
        .post("/hooks/small", "application/xml", b"<a><b></a>".to_vec())
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.expect("text").contains("invalid XML"));

    let response = server
        .post("/hooks/small", "text/plain", vec![b'x'; 65])
        .await;
    assert_eq!(response.status(), 413);

    // Without a Content-Length the limit still holds while a chunked body streams in.
    let status = chunked_post(&server.base, "/hooks/small", &[&[b'y'; 40], &[b'y'; 40]]).await;
    assert_eq!(status, 413);

    // None of the refused requests left a run behind; an accepted one does.
    let runs = list_runs(&server).await;
    assert!(runs.is_empty(), "{runs:?}");
    let ok = server
        .post("/hooks/small", "text/plain", vec![b'x'; 64])
        .await;
    assert_eq!(ok.status(), 202);
    assert_eq!(list_runs(&server).await.len(), 1);
    server.stop().await;
}

/// POST a chunked body (no Content-Length) over a raw connection; returns the status code.
async fn chunked_post(base: &str, path: &str, chunks: &[&[u8]]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in chunks {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test]
async fn an_accepted_event_is_stored_before_the_answer_and_a_custom_idempotency_key_wins() {
    let receiver = Receiver::start().await;
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/order }} }}
steps:
  - name: slow
    http: {{ url: "{url}/slow", timeout: 5s }}
  - name: keyed
    http:
      url: "{url}/keyed"
      headers: {{ Idempotency-Key: "order-{{{{ event.body.id }}}}" }}
"#,
        url = receiver.url("")
    );
    let server = TestServer::start(&[("order.yaml", &workflow)]).await;
    let runs = server
        .accepted("/hooks/order", "application/json", br#"{"id": 7}"#.to_vec())
        .await;
    // Readable from the store the moment the 202 arrived.
    let listed = list_runs(&server).await;
    assert!(
        listed.iter().any(|r| r["id"] == runs[0].as_str()),
        "{listed:?}"
    );
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(2).await;
    let keyed = got.iter().find(|r| r.uri == "/keyed").expect("keyed");
    assert_eq!(keyed.header("idempotency-key"), Some("order-7"));
    let slow = got.iter().find(|r| r.uri == "/slow").expect("slow");
    assert_eq!(slow.method, "GET");
    assert_eq!(
        slow.header("idempotency-key"),
        Some(format!("{}.slow", runs[0]).as_str())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_rate_limited_route_answers_429_with_retry_after_and_recovers() {
    let workflow = r#"
on:
  webhook:
    path: /hooks/limited
    rate_limit: { rate: 2/s, burst: 2 }
steps:
  - log: "{{ event.body.n }}"
"#;
    let server = TestServer::start(&[("limited.yaml", workflow)]).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for n in 0..4 {
        let response = server.post_json("/hooks/limited", &json!({ "n": n })).await;
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..2], &[202, 202], "{statuses:?}");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Refused requests are not stored.
    let runs = list_runs(&server).await;
    assert_eq!(runs.len(), statuses.iter().filter(|s| **s == 202).count());
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let response = server.post_json("/hooks/limited", &json!({ "n": 9 })).await;
    assert_eq!(response.status(), 202, "a token came back");
    server.stop().await;
}

#[tokio::test]
async fn hostile_bodies_are_refused_with_400_quickly() {
    let workflow = r#"
on: { webhook: { path: /hooks/any } }
steps:
  - log: "{{ event.raw | length }}"
"#;
    let server = TestServer::start(&[("any.yaml", workflow)]).await;
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol9;</lolz>"#;
    let external = r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#;
    for (content_type, body, reason) in [
        ("application/json", deep.clone(), "nested deeper"),
        ("application/xml", laughs.to_owned(), "entity declarations"),
        ("text/xml", external.to_owned(), "entity declarations"),
    ] {
        let started = std::time::Instant::now();
        let response = server
            .post("/hooks/any", content_type, body.into_bytes())
            .await;
        assert_eq!(response.status(), 400, "{content_type}");
        let text = response.text().await.expect("text");
        assert!(text.contains(reason), "{text}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
    assert!(list_runs(&server).await.is_empty(), "nothing was stored");
    server.stop().await;
}

/// A sender's redelivery (GitHub's "Redeliver" reuses `X-GitHub-Delivery`) of an event whose
/// run failed starts it again; once a run of it succeeded, a redelivery is a duplicate.
#[tokio::test]
async fn a_redelivery_of_a_failed_event_starts_it_again() {
    let receiver = Receiver::start().await;
    receiver.reply_times("/build", 1, 503, &[], "down for maintenance");
    receiver.reply("/build", 201, "application/json", "{}");
    let workflow = format!(
        r#"
on:
  webhook:
    path: /hooks/redeliver
    dedupe: "{{{{ headers['x-github-delivery'] }}}}"
steps:
  - name: build
    http: {{ method: POST, url: "{}" }}
"#,
        receiver.url("/build")
    );
    let server = TestServer::start(&[("redeliver.yaml", &workflow)]).await;
    let deliver = || async {
        let response = crate::support::client()
            .post(format!("{}/hooks/redeliver", server.base))
            .header("content-type", "application/json")
            .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .body(r#"{"ref":"refs/heads/main"}"#)
            .send()
            .await
            .expect("post");
        let status = response.status().as_u16();
        (status, response.json::<Json>().await.expect("json"))
    };
    let (status, first) = deliver().await;
    assert_eq!(status, 202, "{first}");
    let first_run = first["run_ids"][0].as_str().expect("run id").to_owned();
    assert_eq!(
        server.finished_run(&first_run).await["run"]["status"],
        "failed"
    );

    let (status, second) = deliver().await;
    assert_eq!(status, 202, "the failed event starts again: {second}");
    let second_run = second["run_ids"][0].as_str().expect("run id").to_owned();
    assert_ne!(second_run, first_run);
    assert_eq!(
        server.finished_run(&second_run).await["run"]["status"],
        "succeeded"
    );

    let (status, third) = deliver().await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(third["duplicate_of"], json!([second_run]), "{third}");
    assert_eq!(
        receiver.received().len(),
        2,
        "one request per run that started"
    );
    server.stop().await;
}

/// A `multipart/form-data` upload, sent by curl's `-F`: the text fields are `event.body`, the
/// files `event.files` (name, filename, content type, size, base64 bytes); a broken form is
/// refused 400, one over `max_body` 413, and neither is stored.
// curl runs as a blocking child process: the server needs a thread of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_gives_fields_and_files() {
    let receiver = Receiver::start().await;
    receiver.reply("/uploads", 200, "application/json", "{}");
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/upload, max_body: 4KiB }} }}
steps:
  - name: forward
    http:
      url: "{}"
      json:
        title: "{{{{ event.body.title }}}}"
        tags: "{{{{ event.body.tag }}}}"
        files: "{{{{ event.files | map(attribute='filename') | list }}}}"
        types: "{{{{ event.files | map(attribute='content_type') | list }}}}"
        size: "{{{{ event.files[0].size }}}}"
        text: "{{{{ event.files[0].base64 | b64decode }}}}"
"#,
        receiver.url("/uploads")
    );
    let server = TestServer::start(&[("upload.yaml", &workflow)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let notes = dir.path().join("release-notes.txt");
    std::fs::write(&notes, "line 1\nline 2\n").expect("write");
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, r#"{"assets": 2}"#).expect("write");
    let curl = |extra: &[String]| {
        let output = std::process::Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
            .args(extra)
            .arg(format!("{}/hooks/upload", server.base))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').expect("status line");
        (status.to_owned(), body.to_owned())
    };
    let (status, answer) = curl(&[
        "-F".into(),
        "title=Release 1.2".into(),
        "-F".into(),
        "tag=v1.2".into(),
        "-F".into(),
        "tag=latest".into(),
        "-F".into(),
        format!("notes=@{};type=text/plain", notes.display()),
        "-F".into(),
        format!("manifest=@{}", manifest.display()),
    ]);
    assert_eq!(status, "202", "{answer}");
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].json(),
        json!({
            "title": "Release 1.2",
            "tags": ["v1.2", "latest"],
            "files": ["release-notes.txt", "manifest.json"],
            "types": ["text/plain", "application/octet-stream"],
            "size": 14,
            "text": "line 1\nline 2\n",
        })
    );

    let broken = curl(&[
        "-H".into(),
        "content-type: multipart/form-data; boundary=abc".into(),
        "--data-binary".into(),
        "--abc\r\nContent-Type: text/plain\r\n\r\nno name\r\n--abc--\r\n".into(),
    ]);
    assert_eq!(broken.0, "400", "{}", broken.1);
    assert!(
        broken
            .1
            .contains("invalid multipart body: part 1 has no name"),
        "{}",
        broken.1
    );
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 8192]).expect("write");
    let too_large = curl(&["-F".into(), format!("blob=@{}", big.display())]);
    assert_eq!(too_large.0, "413", "{}", too_large.1);
    assert_eq!(
        list_runs(&server).await.len(),
        1,
        "only the good upload was stored"
    );
    server.stop().await;
}
