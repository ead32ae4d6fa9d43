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
