//! End to end: real payloads POSTed to a real server, and the exact requests a loopback receiver got.

use serde_json::{Value as Json, json};

use crate::support::{Receiver, TestServer, fixture, fixture_json, set_env, step};

#[tokio::test]
async fn github_push_passes_the_filter_and_triggers_a_typed_json_call() {
    let receiver = Receiver::start().await;
    let workflow = format!(
        r#"
name: github-build
on:
  webhook:
    path: /hooks/github
vars:
  branch: "{{{{ event.body.ref | replace('refs/heads/', '') }}}}"
  commits: {{ jsonpath: "$.commits[*].id" }}
steps:
  - name: default-branch-only
    filter: vars.branch == event.body.repository.default_branch
  - name: summary
    template: "{{{{ event.body.pusher.name }}}} pushed {{{{ event.body.commits | length }}}} commit(s) to {{{{ vars.branch }}}}"
  - name: build
    http:
      url: "{receiver}/builds/{{{{ event.body.repository.name }}}}"
      headers:
        X-Event: "{{{{ event.headers['x-github-event'] }}}}"
      json:
        ref: "{{{{ vars.branch }}}}"
        sha: "{{{{ event.body.after }}}}"
        size: "{{{{ event.body.repository.size }}}}"
        created: "{{{{ event.body.created }}}}"
        message: "{{{{ steps.summary.output }}}}"
        commits: "{{{{ vars.commits }}}}"
"#,
        receiver = receiver.url("")
    );
    let server = TestServer::start(&[("github.yaml", &workflow)]).await;
    let payload = fixture("github/push.json");
    let push: Json = serde_json::from_slice(&payload).expect("json");
    let response = server
        .post_with(
            "/hooks/github",
            "application/json",
            payload,
            &[("X-GitHub-Event", "push")],
        )
        .await;
    assert_eq!(response.status(), 202);
    let answer: Json = response.json().await.expect("json");
    let run_id = answer["run_ids"][0].as_str().expect("run id").to_owned();
    assert!(answer["event_id"].is_string());

    let run = server.finished_run(&run_id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let request = &got[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/builds/Hello-World");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-event"), Some("push"));
    assert_eq!(
        request.header("idempotency-key"),
        Some(format!("{run_id}.build").as_str())
    );
    let pusher = push["pusher"]["name"].as_str().expect("pusher");
    assert_eq!(
        request.json(),
        json!({
            "ref": "master",
            "sha": push["after"],
            "size": push["repository"]["size"],
            "created": true,
            "message": format!("{pusher} pushed 1 commit(s) to master"),
            // A wildcard query gives a list even when it matches one node.
            "commits": [push["commits"][0]["id"]],
        })
    );
    // The recorded step shows the rendered request and the parsed JSON answer.
    let build = step(&run, "build");
    assert_eq!(build["status"], "succeeded");
    assert_eq!(build["input"]["method"], "POST");
    assert_eq!(build["output"]["status"], 200);
    assert_eq!(build["output"]["body"], json!({"ok": true}));
    assert_eq!(run["event"]["headers"]["x-github-event"], "push");
    server.stop().await;
}

#[tokio::test]
async fn a_filter_that_fails_ends_the_run_as_filtered_and_sends_nothing() {
    let receiver = Receiver::start().await;
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/github }} }}
steps:
  - name: branches-only
    filter:
      all:
        - {{ jsonpath: "$.ref", matches: "^refs/heads/" }}
        - {{ jsonpath: "$.deleted", equals: false }}
  - http: {{ url: "{url}", json: {{ x: 1 }} }}
"#,
        url = receiver.url("/never")
    );
    let server = TestServer::start(&[("filter.yaml", &workflow)]).await;
    let runs = server
        .accepted(
            "/hooks/github",
            "application/json",
            fixture("github/push.tag-deleted.json"),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "filtered", "{run}");
    assert_eq!(step(&run, "branches-only")["output"]["passed"], false);
    assert_eq!(run["steps"].as_array().expect("steps").len(), 1);
    // A branch push passes the same rule tree.
    let runs = server
        .accepted(
            "/hooks/github",
            "application/json",
            fixture("github/push.json"),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "only the branch push calls out");
    server.stop().await;
}

#[tokio::test]
async fn stripe_invoice_values_keep_their_types_and_jsonpath_selects_arrays() {
    let receiver = Receiver::start().await;
    set_env("E2E_STRIPE_CRM_TOKEN", "crm-token-4242");
    let workflow = format!(
        r#"
name: stripe-crm
on: {{ webhook: {{ path: /hooks/stripe }} }}
secrets: [E2E_STRIPE_CRM_TOKEN]
vars:
  invoice: "{{{{ event.body.data.object }}}}"
  lines: {{ jsonpath: "$.data.object.lines.data[*].amount" }}
steps:
  - filter: event.body.type == "invoice.paid"
  - name: crm
    http:
      method: PATCH
      url: "{url}/contacts/{{{{ vars.invoice.customer }}}}"
      auth: {{ bearer: "{{{{ secrets.E2E_STRIPE_CRM_TOKEN }}}}" }}
      query: {{ source: stripe, livemode: "{{{{ event.body.livemode }}}}" }}
      json:
        paid_cents: "{{{{ vars.invoice.amount_paid }}}}"
        paid: "{{{{ '%.2f' | format(vars.invoice.amount_paid / 100) }}}}"
        currency: "{{{{ vars.invoice.currency | upper }}}}"
        line_amounts: "{{{{ vars.lines }}}}"
        first_line: {{ jsonpath: "$.data.object.lines.data[0].description" }}
        paid_flag: "{{{{ vars.invoice.paid }}}}"
"#,
        url = receiver.url("/crm")
    );
    let server = TestServer::start(&[("stripe.yaml", &workflow)]).await;
    let invoice = fixture_json("stripe/invoice.paid.json");
    let object = &invoice["data"]["object"];
    let runs = server
        .accepted(
            "/hooks/stripe",
            "application/json",
            fixture("stripe/invoice.paid.json"),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(1).await;
    let request = &got[0];
    assert_eq!(request.method, "PATCH");
    assert_eq!(
        request.uri,
        format!(
            "/crm/contacts/{}?source=stripe&livemode=false",
            object["customer"].as_str().expect("customer")
        )
    );
    assert_eq!(
        request.header("authorization"),
        Some("Bearer crm-token-4242")
    );
    let amount = object["amount_paid"].as_i64().expect("amount");
    let line_amounts: Vec<Json> = object["lines"]["data"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["amount"].clone())
        .collect();
    assert_eq!(
        request.json(),
        json!({
            "paid_cents": amount,
            "paid": format!("{:.2}", amount as f64 / 100.0),
            "currency": object["currency"].as_str().expect("currency").to_uppercase(),
            "line_amounts": line_amounts,
            "first_line": object["lines"]["data"][0]["description"],
            "paid_flag": true,
        })
    );
    // The secret reached the receiver but not the record.
    let recorded = step(&run, "crm")["input"].to_string();
    assert!(!recorded.contains("crm-token-4242"), "{recorded}");
    assert!(recorded.contains("Bearer ***"), "{recorded}");
    server.stop().await;
}

#[tokio::test]
async fn shopify_order_fans_out_to_every_workflow_on_the_path() {
    let receiver = Receiver::start().await;
    let notify = format!(
        r#"
name: order-notify
on: {{ webhook: {{ path: "/hooks/shopify/{{shop}}/orders" }} }}
steps:
  - name: lines
    template: |
      Order {{{{ event.body.name }}}} from {{{{ event.params.shop }}}}
      {{% for item in event.body.line_items %}}
      - {{{{ item.quantity }}}} x {{{{ item.title }}}} @ {{{{ item.price }}}}
      {{% endfor %}}
  - http:
      url: "{url}"
      json: {{ text: "{{{{ steps.lines.output }}}}", total: "{{{{ event.body.total_price }}}}" }}
"#,
        url = receiver.url("/notify")
    );
    let audit = format!(
        r#"
name: order-audit
on: {{ webhook: {{ path: "/hooks/shopify/{{shop}}/orders" }} }}
steps:
  - http: {{ url: "{url}", body: "{{{{ event.body.id }}}}" }}
"#,
        url = receiver.url("/audit")
    );
    let server = TestServer::start(&[("notify.yaml", &notify), ("audit.yaml", &audit)]).await;
    let order = fixture_json("shopify/orders.create.json");
    let runs = server
        .accepted(
            "/hooks/shopify/acme-store/orders",
            "application/json",
            fixture("shopify/orders.create.json"),
        )
        .await;
    assert_eq!(runs.len(), 2, "one run per bound workflow");
    for run_id in &runs {
        let run = server.finished_run(run_id).await;
        assert_eq!(run["run"]["status"], "succeeded", "{run}");
    }
    let got = receiver.wait_for(2).await;
    let notify = got
        .iter()
        .find(|r| r.uri == "/notify")
        .expect("notify call");
    let audit = got.iter().find(|r| r.uri == "/audit").expect("audit call");
    let text = notify.json()["text"].as_str().expect("text").to_owned();
    assert!(text.starts_with(&format!(
        "Order {} from acme-store\n",
        order["name"].as_str().expect("name")
    )));
    for item in order["line_items"].as_array().expect("items") {
        let line = format!(
            "- {} x {} @ {}",
            item["quantity"],
            item["title"].as_str().expect("title"),
            item["price"].as_str().expect("price")
        );
        assert!(text.contains(&line), "missing {line:?} in {text:?}");
    }
    assert_eq!(notify.json()["total"], order["total_price"]);
    assert_eq!(
        audit.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        String::from_utf8_lossy(&audit.body),
        order["id"].to_string(),
        "the big integer id renders exactly"
    );
    server.stop().await;
}

#[tokio::test]
async fn twilio_form_body_is_parsed_and_forwarded_as_a_form() {
    let receiver = Receiver::start().await;
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/sms }} }}
steps:
  - http:
      url: "{url}"
      form:
        from: "{{{{ event.body.From }}}}"
        text: "{{{{ event.body.Body }}}}"
        sid: "{{{{ event.body.MessageSid }}}}"
"#,
        url = receiver.url("/sms")
    );
    let server = TestServer::start(&[("sms.yaml", &workflow)]).await;
    let raw = fixture("twilio/sms.incoming.txt");
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&raw).expect("form");
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .expect("field")
    };
    let runs = server
        .accepted(
            "/hooks/sms",
            "application/x-www-form-urlencoded",
            raw.clone(),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let sent: Vec<(String, String)> = serde_urlencoded::from_bytes(&got[0].body).expect("form");
    assert_eq!(
        sent,
        vec![
            ("from".to_owned(), field("From")),
            ("text".to_owned(), field("Body")),
            ("sid".to_owned(), field("MessageSid")),
        ]
    );
    assert_eq!(field("Body"), "twilio-go testing!");
    // The raw bytes are kept as received.
    assert_eq!(run["event"]["raw"], Json::String(base64_encode(&raw)));
    server.stop().await;
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn recurly_xml_becomes_a_tree_templates_can_read() {
    let receiver = Receiver::start().await;
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/recurly }} }}
vars:
  payment: "{{{{ event.body.successful_payment_notification }}}}"
steps:
  - http:
      url: "{url}"
      query:
        account: "{{{{ vars.payment.account.account_code }}}}"
        email: "{{{{ vars.payment.account.email }}}}"
        cents: "{{{{ vars.payment.transaction.amount_in_cents['#text'] }}}}"
        kind: "{{{{ vars.payment.transaction.amount_in_cents['@type'] }}}}"
"#,
        url = receiver.url("/payments")
    );
    let server = TestServer::start(&[("recurly.yaml", &workflow)]).await;
    let runs = server
        .accepted(
            "/hooks/recurly",
            "application/xml",
            fixture("recurly/successful_payment_notification.xml"),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].uri,
        "/payments?account=1&email=verena%40example.com&cents=1000&kind=integer"
    );
    server.stop().await;
}

#[tokio::test]
async fn if_skips_continue_on_error_goes_on_and_a_failure_fails_the_run() {
    let receiver = Receiver::start().await;
    receiver.reply(
        "/broken",
        503,
        "application/json",
        r#"{"message":"down for maintenance"}"#,
    );
    receiver.reply(
        "/rejects",
        422,
        "application/json",
        r#"{"message":"Validation Failed"}"#,
    );
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/flow }} }}
steps:
  - name: never
    if: event.body.flag == "never"
    log: "not logged"
  - name: flaky
    continue_on_error: true
    http: {{ method: POST, url: "{base}/broken", json: {{ n: 1 }} }}
  - name: report
    if: steps.flaky.failed and steps.never.skipped
    http:
      url: "{base}/report"
      json:
        status: "{{{{ steps.flaky.status }}}}"
        why: "{{{{ steps.flaky.body.message }}}}"
  - name: strict
    http: {{ url: "{base}/rejects", json: {{ n: 2 }} }}
  - name: after
    log: "never reached"
"#,
        base = receiver.url("")
    );
    let server = TestServer::start(&[("flow.yaml", &workflow)]).await;
    let runs = server
        .accepted(
            "/hooks/flow",
            "application/json",
            br#"{"flag": "x"}"#.to_vec(),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let error = run["run"]["error"].as_str().expect("error");
    assert!(error.starts_with("step 'strict' failed:"), "{error}");
    assert!(
        error.contains("422") && error.contains("Validation Failed"),
        "{error}"
    );
    assert_eq!(step(&run, "never")["status"], "skipped");
    assert_eq!(step(&run, "flaky")["status"], "failed");
    assert_eq!(step(&run, "report")["status"], "succeeded");
    assert_eq!(step(&run, "strict")["output"]["status"], 422);
    assert!(
        run["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["name"] != "after"),
        "nothing runs after a failure"
    );
    let got = receiver.wait_for(3).await;
    let report = got.iter().find(|r| r.uri == "/report").expect("report");
    assert_eq!(
        report.json(),
        json!({"status": 503, "why": "down for maintenance"})
    );
    server.stop().await;
}

#[tokio::test]
async fn sync_webhooks_answer_with_the_respond_step() {
    let workflow = r#"
on:
  webhook:
    path: /hooks/slack/{team}
    respond: sync
steps:
  - name: answer
    respond:
      status: 201
      headers: { X-Handled-By: hookflow }
      body:
        team: "{{ event.params.team }}"
        echo: "{{ event.body.text | upper }}"
        count: "{{ event.body.n + 1 }}"
"#;
    let text_workflow = r#"
on: { webhook: { path: /hooks/text, respond: sync } }
steps:
  - respond: { body: "plain {{ event.query.q }}" }
"#;
    let failing = r#"
on: { webhook: { path: /hooks/fails, respond: sync } }
steps:
  - template: "{{ event.body.missing.field }}"
"#;
    let server = TestServer::start(&[
        ("sync.yaml", workflow),
        ("text.yaml", text_workflow),
        ("fails.yaml", failing),
    ])
    .await;
    let response = server
        .post_json("/hooks/slack/T123", &json!({"text": "hi", "n": 41}))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response
            .headers()
            .get("x-handled-by")
            .and_then(|v| v.to_str().ok()),
        Some("hookflow")
    );
    assert_eq!(
        response.json::<Json>().await.expect("json"),
        json!({"team": "T123", "echo": "HI", "count": 42})
    );
    let response = server
        .client
        .post(format!("{}/hooks/text?q=yes", server.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.text().await.expect("text"), "plain yes");
    let response = server.post_json("/hooks/fails", &json!({})).await;
    assert_eq!(response.status(), 500);
    let answer: Json = response.json().await.expect("json");
    assert_eq!(answer["status"], "failed");
    let run = server
        .finished_run(answer["run_id"].as_str().expect("id"))
        .await;
    let error = run["run"]["error"].as_str().expect("error");
    assert!(error.contains("undefined"), "{error}");
    server.stop().await;
}

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

async fn list_runs(server: &TestServer) -> Vec<Json> {
    let answer: Json = server
        .client
        .get(format!("{}/api/runs", server.admin))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    answer["runs"].as_array().expect("runs").clone()
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
async fn a_step_timeout_fails_the_step() {
    let workflow = r#"
on: { webhook: { path: /hooks/t } }
steps:
  - name: stuck
    timeout: 200ms
    http: { url: "http://127.0.0.1:9/never", timeout: 10s }
"#;
    // Port 9 (discard) is closed on loopback: the connection is refused at once, so use a
    // listener that accepts and never answers instead.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let workflow = workflow.replace("127.0.0.1:9", &addr.to_string());
    let server = TestServer::start(&[("t.yaml", &workflow)]).await;
    let runs = server
        .accepted("/hooks/t", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed");
    assert_eq!(step(&run, "stuck")["error"], "timed out after 200ms");
    server.stop().await;
}

#[tokio::test]
async fn a_secret_passed_through_set_reaches_the_target_and_no_record() {
    let receiver = Receiver::start().await;
    set_env("E2E_SET_SECRET", "set-secret-9876");
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/secret, respond: sync }} }}
secrets: [E2E_SET_SECRET]
vars:
  header: "Token {{{{ secrets.E2E_SET_SECRET }}}}"
steps:
  - name: keep
    set: {{ token: "{{{{ secrets.E2E_SET_SECRET }}}}" }}
  - name: call
    http:
      url: "{url}"
      auth: {{ bearer: "{{{{ vars.token }}}}" }}
      headers: {{ X-Api: "{{{{ vars.header }}}}" }}
  - respond: {{ body: {{ echoed: "{{{{ vars.token }}}}" }} }}
"#,
        url = receiver.url("/api")
    );
    let server = TestServer::start(&[("secret.yaml", &workflow)]).await;
    let response = server.post_json("/hooks/secret", &json!({})).await;
    assert_eq!(response.status(), 200);
    // The workflow chose to answer with the secret: the caller gets it, the record does not.
    let answer: Json = response.json().await.expect("json");
    assert_eq!(answer, json!({"echoed": "set-secret-9876"}));
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer set-secret-9876")
    );
    assert_eq!(got[0].header("x-api"), Some("Token set-secret-9876"));
    let runs = list_runs(&server).await;
    let run = server
        .finished_run(runs[0]["id"].as_str().expect("id"))
        .await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let recorded = run.to_string();
    assert!(!recorded.contains("set-secret-9876"), "{recorded}");
    assert_eq!(step(&run, "keep")["output"]["token"], "***");
    assert_eq!(run["run"]["response"]["body"]["echoed"], "***");
    server.stop().await;
}

#[tokio::test]
async fn a_run_answers_once_and_a_second_respond_step_fails() {
    let workflow = r#"
on: { webhook: { path: /hooks/twice, respond: sync } }
steps:
  - respond: { status: 201, body: first }
  - name: again
    continue_on_error: true
    respond: { status: 202, body: second }
"#;
    let server = TestServer::start(&[("twice.yaml", workflow)]).await;
    let response = server.post_json("/hooks/twice", &json!({})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().await.expect("text"), "first");
    let runs = list_runs(&server).await;
    let run = server
        .finished_run(runs[0]["id"].as_str().expect("id"))
        .await;
    assert_eq!(run["run"]["response"]["status"], 201, "{run}");
    let again = step(&run, "again");
    assert_eq!(again["status"], "failed");
    assert!(
        again["error"]
            .as_str()
            .expect("error")
            .contains("already answered"),
        "{again}"
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

#[tokio::test]
async fn the_admin_api_wants_its_token_and_refuses_the_network_without_one() {
    let workflow = "on: { webhook: { path: /hooks/a } }\nsteps:\n  - log: hi\n";
    let server = TestServer::start_with(&[("a.yaml", workflow)], |s| {
        s.admin_token = Some("admin-token-123".into());
    })
    .await;
    let api = format!("{}/api/runs", server.admin);
    let response = server.client.get(&api).send().await.expect("request");
    assert_eq!(response.status(), 401);
    let response = server
        .client
        .get(&api)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let response = server
        .client
        .get(&api)
        .bearer_auth("admin-token-123")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let health = server
        .client
        .get(format!("{}/healthz", server.admin))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200, "probes need no token");
    let dir = server.stop().await;

    // Bound beyond loopback without a token: the server does not start.
    let mut settings = crate::support::settings_for(dir.path());
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let refused = hookflow::serve::start(&settings, webhook, admin).await;
    let Err(err) = refused else {
        panic!("the admin API was served to the network without a token");
    };
    assert!(err.to_string().contains("--admin-token"), "{err}");
    // --admin-insecure is an explicit choice.
    settings.admin_insecure = true;
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let running = hookflow::serve::start(&settings, webhook, admin)
        .await
        .expect("starts when asked to");
    running.shutdown().await;
}

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
