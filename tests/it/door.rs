//! Bodies checked at the door of a real server: `on.webhook.schema` refusing a body with 422
//! and its violations before anything is stored (async and sync callers, after `verify`), the
//! record and the metric of the refusal, `xml: typed` reading Recurly's typed XML as values,
//! `validate` locating a broken schema, and `hookflow test` asserting on a refusal.

use std::path::Path;
use std::process::Command;

use serde_json::{Value as Json, json};

use crate::support::{TestServer, fixture, list_runs, set_env};

const ORDERS: &str = r#"
name: orders
on:
  webhook:
    path: /hooks/orders
    schema:
      type: object
      required: [id, line_items]
      properties:
        id: { type: integer }
        line_items:
          type: array
          minItems: 1
          items:
            type: object
            required: [sku, price]
            properties:
              sku: { type: string }
              price: { type: number, minimum: 0 }
steps:
  - log: "order {{ event.body.id }}"
"#;

/// The value of one sample line of `/metrics` (0 when the line is absent).
async fn metric(server: &TestServer, key: &str) -> f64 {
    let text = server
        .client
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_body_that_breaks_the_schema_is_refused_with_422_and_its_violations_and_stores_nothing() {
    let server = TestServer::start(&[("orders.yaml", ORDERS)]).await;
    let bad = json!({"id": "A-1", "line_items": [{"sku": "tea", "price": "4.20"}, {"price": -1}]});
    let response = server.post_json("/hooks/orders", &bad).await;
    assert_eq!(response.status(), 422);
    let answer: Json = response.json().await.expect("json");
    assert_eq!(
        answer,
        json!({
            "error": "the body does not match the webhook's schema",
            "violations": [
                {"path": "/id", "message": "want integer, but got string"},
                {"path": "/line_items/0/price", "message": "want number, but got string"},
                {"path": "/line_items/1", "message": "missing properties 'sku'"},
                {"path": "/line_items/1/price", "message": "must be >=0, but got -1"},
            ]
        })
    );

    // Nothing was stored, and the operator sees why, without a piece of the body.
    assert!(list_runs(&server).await.is_empty());
    let rejected = server.admin_json("/api/rejected?limit=1").await;
    let record = &rejected["rejected"][0];
    assert_eq!(record["reason"], "invalid_body", "{rejected}");
    assert_eq!(record["status"], 422);
    assert_eq!(record["workflows"], json!(["orders"]));
    let detail = record["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with("the body does not match the schema (inline): 4 violation(s) of #/properties/id/type, #/properties/line_items/items/properties/price/type"),
        "{detail}"
    );
    assert!(
        !detail.contains("A-1") && !detail.contains("4.20"),
        "{detail}"
    );
    let key = r#"hookflow_rejected_requests_total{reason="invalid_body"}"#;
    assert_eq!(metric(&server, key).await, 1.0);
    let key =
        r#"hookflow_http_requests_total{listener="webhook",route="/hooks/orders",status="422"}"#;
    assert_eq!(metric(&server, key).await, 1.0);

    // A body that is not even there breaks it too; one that matches starts its run.
    let response = server.post("/hooks/orders", "text/plain", Vec::new()).await;
    assert_eq!(response.status(), 422);
    let answer: Json = response.json().await.expect("json");
    assert_eq!(
        answer["violations"],
        json!([{"path": "", "message": "want object, but got null"}])
    );
    let good = json!({"id": 7, "line_items": [{"sku": "tea", "price": 4.2}]});
    let ids = server
        .accepted(
            "/hooks/orders",
            "application/json",
            good.to_string().into_bytes(),
        )
        .await;
    let run = server.finished_run(&ids[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(list_runs(&server).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_sync_caller_gets_the_same_422_and_a_signature_is_checked_first() {
    set_env("DOOR_IT_TOKEN", "door-token");
    let workflow = r#"
name: quote
on:
  webhook:
    path: /hooks/quote
    respond: sync
    verify:
      token: { value: "{{ secrets.DOOR_IT_TOKEN }}", header: x-token }
    schema: quote.schema.json
secrets: [DOOR_IT_TOKEN]
steps:
  - respond:
      body: { total: "{{ event.body.qty * event.body.unit_price }}" }
"#;
    let schema = r#"{
  "type": "object",
  "required": ["qty", "unit_price"],
  "properties": {
    "qty": { "type": "integer", "minimum": 1 },
    "unit_price": { "type": "number" }
  },
  "additionalProperties": false
}"#;
    let server =
        TestServer::start(&[("quote.yaml", workflow), ("quote.schema.json", schema)]).await;
    let bad = serde_json::to_vec(&json!({"qty": 0, "coupon": "x"})).expect("json");

    // Unsigned: 401 before the body is looked at.
    let response = server
        .post("/hooks/quote", "application/json", bad.clone())
        .await;
    assert_eq!(response.status(), 401);

    let token = [("x-token", "door-token")];
    let response = server
        .post_with("/hooks/quote", "application/json", bad, &token)
        .await;
    assert_eq!(response.status(), 422);
    let answer: Json = response.json().await.expect("json");
    let paths: Vec<&str> = answer["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| v["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["", "/qty", ""], "{answer}");
    let messages = answer["violations"].to_string();
    assert!(
        messages.contains("missing properties 'unit_price'"),
        "{messages}"
    );
    assert!(
        messages.contains("additionalProperties 'coupon' not allowed"),
        "{messages}"
    );
    let rejected = server.admin_json("/api/rejected?limit=2").await;
    assert_eq!(rejected["rejected"][0]["reason"], "invalid_body");
    assert_eq!(rejected["rejected"][1]["reason"], "missing_header");
    assert!(
        rejected["rejected"][0]["detail"]
            .as_str()
            .expect("detail")
            .contains("(quote.schema.json)"),
        "{rejected}"
    );
    assert!(list_runs(&server).await.is_empty());

    let good = serde_json::to_vec(&json!({"qty": 3, "unit_price": 2.5})).expect("json");
    let response = server
        .post_with("/hooks/quote", "application/json", good, &token)
        .await;
    assert_eq!(response.status(), 200);
    let answer: Json = response.json().await.expect("json");
    assert_eq!(answer, json!({"total": 7.5}));
    server.stop().await;
}

const RECURLY: &str = r#"
name: recurly-payments
on:
  webhook:
    path: /hooks/recurly
    respond: sync
    xml: typed
    schema:
      type: object
      required: [successful_payment_notification]
      properties:
        successful_payment_notification:
          properties:
            transaction:
              required: [amount_in_cents, test]
              properties:
                amount_in_cents: { type: integer }
                test: { type: boolean }
steps:
  - name: answer
    respond:
      body:
        dollars: "{{ event.body.successful_payment_notification.transaction.amount_in_cents / 100 }}"
        is_test: "{{ event.body.successful_payment_notification.transaction.test }}"
        username: "{{ event.body.successful_payment_notification.account.username is none }}"
"#;

#[tokio::test]
async fn typed_xml_reads_recurly_amounts_as_numbers_through_the_real_server() {
    let plain = RECURLY
        .replace("name: recurly-payments", "name: recurly-plain")
        .replace("path: /hooks/recurly", "path: /hooks/recurly-plain")
        .replace("xml: typed", "xml: plain");
    let server = TestServer::start(&[("recurly.yaml", RECURLY), ("plain.yaml", &plain)]).await;
    let payment = fixture("recurly/successful_payment_notification.xml");

    let response = server
        .post("/hooks/recurly", "application/xml", payment.clone())
        .await;
    assert_eq!(response.status(), 200);
    let answer: Json = response.json().await.expect("json");
    assert_eq!(
        answer,
        json!({"dollars": 10.0, "is_test": true, "username": true})
    );

    // Read as written, the same payload has text where the schema wants numbers.
    let response = server
        .post("/hooks/recurly-plain", "application/xml", payment)
        .await;
    assert_eq!(response.status(), 422);
    let answer: Json = response.json().await.expect("json");
    assert_eq!(
        answer["violations"][0],
        json!({
            "path": "/successful_payment_notification/transaction/amount_in_cents",
            "message": "want integer, but got object"
        }),
        "{answer}"
    );
    server.stop().await;
}

fn hookflow_in(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .current_dir(dir)
        .env_remove("HOOKFLOW_CONFIG")
        .output()
        .expect("hookflow");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

#[test]
fn validate_locates_a_broken_schema_in_the_workflow_or_in_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = dir.path().join("workflows");
    std::fs::create_dir(&wf).expect("mkdir");
    write(
        &wf,
        "inline.yaml",
        "on:\n  webhook:\n    path: /a\n    schema:\n      properties:\n        id: { type: intger }\nsteps:\n  - log: hi\n",
    );
    write(
        &wf,
        "from-file.yaml",
        "on:\n  webhook:\n    path: /b\n    schema: b.schema.yaml\nsteps:\n  - log: hi\n",
    );
    // A YAML schema beside the workflows is not read as a workflow itself.
    write(
        &wf,
        "b.schema.yaml",
        "type: object\nproperties:\n  total:\n    minimum: ten\n",
    );
    write(
        &wf,
        "remote.yaml",
        "on:\n  webhook:\n    path: /c\n    schema: { $ref: 'https://example.com/order.json' }\nsteps:\n  - log: hi\n",
    );
    write(
        &wf,
        "missing.yaml",
        "on:\n  webhook:\n    path: /d\n    schema: nowhere.json\n    xml: typd\nsteps:\n  - log: hi\n",
    );
    let (code, output) = hookflow_in(dir.path(), &["validate", "workflows"]);
    assert_eq!(code, Some(1), "{output}");
    for expected in [
        "workflows/inline.yaml:6:21: error: not a valid JSON Schema at /properties/id/type: value must be one of",
        "workflows/b.schema.yaml:4:14: error: not a valid JSON Schema at /properties/total/minimum: want number, but got string",
        "workflows/remote.yaml:4:21: error: the schema refers to https://example.com/order.json, outside itself",
        "workflows/missing.yaml:4:13: error: cannot read the schema file workflows/nowhere.json",
        "workflows/missing.yaml:5:10: error: unknown `xml` mode 'typd'",
        "failed: 5 error(s)",
    ] {
        assert!(output.contains(expected), "{expected}\nin:\n{output}");
    }
}

#[test]
fn workflows_sharing_a_path_must_check_and_parse_bodies_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = |name: &str, extra: &str| {
        format!("name: {name}\non:\n  webhook:\n    path: /shared\n{extra}steps:\n  - log: hi\n")
    };
    write(
        dir.path(),
        "a.yaml",
        &shared("a", "    schema: { type: object }\n"),
    );
    write(dir.path(), "b.yaml", &shared("b", ""));
    write(
        dir.path(),
        "c.yaml",
        &shared("c", "    schema: { type: object }\n    xml: typed\n"),
    );
    let (code, output) = hookflow_in(dir.path(), &["validate", "."]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("workflow 'a' also binds '/shared' with a different `schema`; workflows sharing a path must check bodies alike"),
        "{output}"
    );
    assert!(
        output.contains("workflow 'a' also binds '/shared' with a different `xml` mode"),
        "{output}"
    );
}

const ORDER_TESTS: &str = r#"
workflow: orders.yaml
cases:
  - name: a good order runs
    webhook: { body: { id: 1, line_items: [{ sku: tea, price: 1 }] } }
    expect: { status: succeeded }
  - name: a price in text is refused
    webhook: { body: { id: 1, line_items: [{ sku: tea, price: "1" }] } }
    expect:
      refused:
        status: 422
        violations:
          - { path: /line_items/0/price, message: { $contains: number } }
  - name: any refusal will do
    webhook: { body: { line_items: [] } }
    expect: { refused: true }
  - name: a refusal nobody expected
    webhook: { body: { id: "x", line_items: [{ sku: tea, price: 1 }] } }
    expect: { status: succeeded }
  - name: a refusal that did not come
    webhook: { body: { id: 2, line_items: [{ sku: tea, price: 1 }] } }
    expect: { refused: true }
  - name: the wrong violation
    webhook: { body: { id: 3, line_items: [{ price: 1 }] } }
    expect:
      refused:
        violations: [{ path: /id }]
"#;

#[test]
fn hookflow_test_asserts_on_a_refusal_and_fails_when_it_should() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "orders.yaml", ORDERS);
    write(dir.path(), "orders.test.yaml", ORDER_TESTS);
    let (code, output) = hookflow_in(dir.path(), &["test", "."]);
    assert_eq!(code, Some(1), "{output}");
    for line in [
        "test a good order runs ... ok",
        "test a price in text is refused ... ok",
        "test any refusal will do ... ok",
        "test a refusal nobody expected ... FAILED",
        "test a refusal that did not come ... FAILED",
        "test the wrong violation ... FAILED",
        "3 passed, 3 failed",
    ] {
        assert!(output.contains(line), "{line}\nin:\n{output}");
    }
    // The unexpected refusal shows the violations, the missing one what ran instead.
    let unexpected = "orders.test.yaml:17:5: webhook body\n  - a body the webhook's `schema` accepts (or `expect: { refused: ... }`)\n  + refused with 422:\n  + /id: want integer, but got string\n";
    assert!(output.contains(unexpected), "{output}");
    assert!(
        output.contains(
            "orders.test.yaml:22:24: refused\n  - the body refused by the webhook's `schema`\n  + the body was accepted and the run ended succeeded\n"
        ),
        "{output}"
    );
    assert!(
        output.contains("orders.test.yaml:27:22: refused.violations[0]"),
        "{output}"
    );
    assert!(
        output.contains("  + /line_items/0: missing properties 'sku'"),
        "{output}"
    );

    // `refused` with expectations of a run is a mistake in the test file.
    write(
        dir.path(),
        "orders.test.yaml",
        "workflow: orders.yaml\ncases:\n  - name: both\n    expect: { refused: true, status: failed }\n",
    );
    let (code, output) = hookflow_in(dir.path(), &["test", "."]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("orders.test.yaml:4:13: error: `refused` means no run starts"),
        "{output}"
    );
}

/// `validate --payload` warns about a sample the webhook's schema would refuse, and passes one
/// it accepts.
#[test]
fn validate_warns_about_a_sample_the_schema_would_refuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("workflows")).expect("mkdir");
    std::fs::write(
        dir.path().join("workflows/orders.yaml"),
        "name: orders\non:\n  webhook:\n    path: /hooks/orders\n    schema:\n      type: object\n      required: [id]\n      properties: { id: { type: integer } }\nsteps:\n  - log: \"{{ event.body.id }}\"\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("text-id.json"), r#"{"id": "12"}"#).expect("write");
    std::fs::write(dir.path().join("number-id.json"), r#"{"id": 12}"#).expect("write");
    let (code, output) = hookflow_in(
        dir.path(),
        &[
            "validate",
            "--payload",
            "text-id.json",
            "--payload",
            "number-id.json",
        ],
    );
    assert_eq!(code, Some(0), "warnings only: {output}");
    assert!(
        output.contains(
            "warning: sample text-id.json would be refused (422) by the webhook's schema: /id:"
        ),
        "{output}"
    );
    assert!(
        !output.contains("sample number-id.json would be refused"),
        "{output}"
    );
    assert!(output.contains("1 warning(s)"), "{output}");
}
