//! `email` steps end to end: payloads POSTed to a real server, messages received by a real SMTP
//! server on loopback (or written to the outbox) and read back with a MIME parser.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hookflow::effects::mail::{self, Address, Email, LettreMailer, MailError, Mailer};
use hookflow::settings::EmailSettings;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde_json::{Value as Json, json};

use crate::smtp_server::SmtpServer;
use crate::support::{TestServer, fixture, fixture_json, set_env, step};

const ORDER_FIXTURE: &str = "shopify/orders.create.json";
const ORDER_PATH: &str = "/hooks/shopify/orders";

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/shop-order-email")
}

/// The shipped example, served as it is.
fn example_workflow() -> String {
    let path = example_dir().join("workflow.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    MessageParser::default()
        .parse(raw)
        .expect("a parseable MIME message")
}

fn header_line<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}: ");
    raw.lines().take_while(|l| !l.is_empty()).find(|l| {
        l.to_ascii_lowercase()
            .starts_with(&prefix.to_ascii_lowercase())
    })
}

fn content_type<'x>(part: &impl MimeHeaders<'x>) -> String {
    let ct = part.content_type().expect("a Content-Type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
}

/// What the shop example must produce for the order: headers, both parts with every item, and
/// the CSV attachment. `bcc_header`: an outbox file keeps Bcc, a sent message never has it.
fn assert_order_email(raw: &[u8], order: &Json, run_id: &str, bcc_header: bool) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let message = parse(raw);
    let from = message.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), Some("Example Shop"));
    assert_eq!(from.address(), Some("orders@shop.example.test"));
    let to: Vec<&str> = message
        .to()
        .expect("To")
        .iter()
        .filter_map(|a| a.address())
        .collect();
    assert_eq!(to, [order["email"].as_str().unwrap()]);
    let reply_to = message
        .reply_to()
        .and_then(|a| a.first())
        .expect("Reply-To");
    assert_eq!(reply_to.address(), Some("support@shop.example.test"));
    assert_eq!(
        message
            .bcc()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        bcc_header.then_some("orders-archive@shop.example.test"),
        "{text}"
    );
    assert_eq!(
        message.message_id(),
        Some(format!("{run_id}.confirm@hookflow").as_str())
    );
    // The subject is not ASCII: it travels as an RFC 2047 encoded word and decodes back.
    let name = order["name"].as_str().unwrap();
    assert_eq!(
        message.subject(),
        Some(format!("Your order {name} is confirmed ✓").as_str())
    );
    let subject_line = header_line(&text, "Subject").expect("a Subject line");
    assert!(subject_line.contains("=?utf-8?"), "{subject_line}");
    assert!(!subject_line.contains('✓'), "{subject_line}");
    assert_eq!(
        message.header_raw("X-Shop-Order-Id").map(str::trim),
        Some(order["id"].to_string().as_str())
    );

    // multipart/mixed around multipart/alternative (text, html), then the attachment.
    assert_eq!(
        content_type(message.root_part()),
        "multipart/mixed",
        "{text}"
    );
    let PartType::Multipart(children) = &message.root_part().body else {
        panic!("the root is not multipart: {text}");
    };
    let alternative = message.part(children[0]).expect("first child");
    assert_eq!(content_type(alternative), "multipart/alternative");
    let PartType::Multipart(bodies) = &alternative.body else {
        panic!("alternative has no parts");
    };
    let kinds: Vec<String> = bodies
        .iter()
        .map(|id| content_type(message.part(*id).expect("part")))
        .collect();
    assert_eq!(kinds, ["text/plain", "text/html"]);
    let plain = message
        .part(bodies[0])
        .unwrap()
        .text_contents()
        .expect("text");
    let html = message
        .part(bodies[1])
        .unwrap()
        .text_contents()
        .expect("html");

    let currency = order["currency"].as_str().unwrap();
    let items = order["line_items"].as_array().expect("line_items");
    assert!(!items.is_empty());
    for item in items {
        let title = item["title"].as_str().unwrap();
        let quantity = item["quantity"].as_u64().unwrap();
        let price: f64 = item["price"].as_str().unwrap().parse().unwrap();
        let line = format!(
            "- {quantity} × {title}: {:.2} {currency}",
            price * quantity as f64
        );
        assert!(plain.contains(&line), "no {line:?} in:\n{plain}");
        assert!(html.contains(&format!("<td>{title}</td>")), "{html}");
    }
    assert_eq!(plain.matches("\n- ").count(), items.len(), "{plain}");
    assert_eq!(html.matches("<tr>").count(), items.len(), "{html}");
    let total = format!(
        "Total: {} {currency}",
        order["total_price"].as_str().unwrap()
    );
    assert!(plain.contains(&total), "{plain}");
    assert!(plain.starts_with("Hello John,"), "{plain}");
    assert!(html.contains("<p>Hello John,</p>"), "{html}");

    assert_eq!(message.attachment_count(), 1);
    let attachment = message.attachment(0).expect("attachment");
    assert_eq!(
        attachment.attachment_name(),
        Some(format!("order-{}.csv", order["order_number"]).as_str())
    );
    assert_eq!(content_type(attachment), "text/csv");
    let mut csv = String::from("quantity,sku,title,price,currency\n");
    for item in items {
        csv.push_str(&format!(
            "{},{},\"{}\",{},{currency}\n",
            item["quantity"],
            item["sku"].as_str().unwrap(),
            item["title"].as_str().unwrap(),
            item["price"].as_str().unwrap()
        ));
    }
    // MIME carries text with CRLF line ends; the content is otherwise byte for byte the template's.
    let received = String::from_utf8(attachment.contents().to_vec()).expect("UTF-8 CSV");
    assert_eq!(received.replace("\r\n", "\n"), csv);
}

#[tokio::test]
async fn the_shop_example_emails_the_order_to_a_real_smtp_server() {
    let smtp = SmtpServer::start();
    let url = smtp.url();
    let workflow = example_workflow();
    let server = TestServer::start_with(&[("shop-order-email.yaml", &workflow)], |settings| {
        settings.email.smtp = Some(url);
    })
    .await;
    let order = fixture_json(ORDER_FIXTURE);
    let run_ids = server
        .accepted(ORDER_PATH, "application/json", fixture(ORDER_FIXTURE))
        .await;
    let run_id = &run_ids[0];
    let run = server.finished_run(run_id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let output = &step(&run, "confirm")["output"];
    assert_eq!(output["delivered"], "smtp", "{output}");
    assert_eq!(
        output["message_id"],
        json!(format!("<{run_id}.confirm@hookflow>"))
    );
    assert_eq!(output["recipients"], 2, "{output}");
    assert!(
        output["reply"].as_str().unwrap().starts_with("250"),
        "{output}"
    );

    let got = smtp.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let mail = &got[0];
    assert_eq!(mail.mail_from, "orders@shop.example.test");
    let mut recipients = mail.recipients.clone();
    recipients.sort();
    assert_eq!(
        recipients,
        ["jon@example.com", "orders-archive@shop.example.test"]
    );
    assert_order_email(&mail.data, &order, run_id, false);
    // Nothing went to the outbox when SMTP is configured.
    assert!(!server.dir.path().join("outbox").exists());
}

#[tokio::test]
async fn without_smtp_the_shop_example_writes_a_valid_eml_to_the_outbox() {
    let workflow = example_workflow();
    let server = TestServer::start(&[("shop-order-email.yaml", &workflow)]).await;
    let outbox = server.dir.path().join("outbox");
    assert!(
        !outbox.exists(),
        "the outbox is created on the first message"
    );
    let order = fixture_json(ORDER_FIXTURE);
    let run_ids = server
        .accepted(ORDER_PATH, "application/json", fixture(ORDER_FIXTURE))
        .await;
    let run_id = &run_ids[0];
    let run = server.finished_run(run_id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let output = &step(&run, "confirm")["output"];
    assert_eq!(output["delivered"], "outbox", "{output}");
    assert_eq!(
        output["message_id"],
        json!(format!("<{run_id}.confirm@hookflow>"))
    );

    let files: Vec<PathBuf> = std::fs::read_dir(&outbox)
        .expect("the outbox exists")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "one .eml and no temporary file: {files:?}");
    let path = &files[0];
    assert_eq!(output["path"], json!(path.display().to_string()));
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(
        name.ends_with(&format!("-{run_id}.confirm@hookflow.eml")),
        "{name}"
    );
    let raw = std::fs::read(path).expect("read the .eml");
    assert_order_email(&raw, &order, run_id, true);
}

#[tokio::test]
async fn addresses_from_templates_a_utf8_subject_and_binary_attachments_arrive_intact() {
    let smtp = SmtpServer::start();
    let url = smtp.url();
    let workflow = r#"
name: notify
on:
  webhook:
    path: /hooks/notify
steps:
  - name: mail
    email:
      to: "{{ event.body.recipients }}"
      cc: "Ops Team <ops@example.test>, \"Smith, Jo\" <jo@example.test>"
      bcc: ["{{ event.body.auditor }}", audit2@example.test]
      subject: "{{ event.body.subject }}"
      text: "Grüße aus hookflow"
      headers:
        X-Ticket: "{{ event.body.ticket }}"
      attachments:
        - name: pixel.bin
          content_type: application/octet-stream
          content: "{{ event.body.blob }}"
          base64: true
        - name: meta.json
          content_type: application/json
          content: "{{ event.body.meta }}"
"#;
    let server = TestServer::start_with(&[("notify.yaml", workflow)], |settings| {
        settings.email.smtp = Some(url);
        settings.email.from = Some("Hookflow Bot <bot@example.test>".into());
    })
    .await;
    let blob: Vec<u8> = (0u8..=255)
        .rev()
        .chain([0, 0, 13, 10, 46, 13, 10])
        .collect();
    use base64::Engine as _;
    let subject = "Grüße — Bestellung ✓ 🚀 (überfällig)";
    let body = json!({
        "recipients": ["ada@example.test", "Bob Builder <bob@example.test>"],
        "auditor": "audit1@example.test",
        "subject": subject,
        "ticket": 4711,
        "blob": base64::engine::general_purpose::STANDARD.encode(&blob),
        "meta": { "ok": true, "items": [1, 2] },
    });
    let run_ids = server
        .accepted(
            "/hooks/notify",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    let run = server.finished_run(&run_ids[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let input = &step(&run, "mail")["input"];
    assert_eq!(
        input["from"],
        Json::Null,
        "the server default is applied when sending"
    );
    assert_eq!(input["attachments"][0]["size"], json!(blob.len()));

    let got = smtp.wait_for(1).await;
    let mail = &got[0];
    assert_eq!(mail.mail_from, "bot@example.test");
    let mut recipients = mail.recipients.clone();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            "ada@example.test",
            "audit1@example.test",
            "audit2@example.test",
            "bob@example.test",
            "jo@example.test",
            "ops@example.test"
        ]
    );
    let raw = String::from_utf8_lossy(&mail.data).into_owned();
    assert!(header_line(&raw, "Bcc").is_none(), "{raw}");
    assert!(
        !raw.contains("audit1@example.test"),
        "Bcc addresses never reach the message"
    );
    let message = parse(&mail.data);
    assert_eq!(message.subject(), Some(subject));
    let from = message.from().and_then(|a| a.first()).unwrap();
    assert_eq!(
        (from.name(), from.address()),
        (Some("Hookflow Bot"), Some("bot@example.test"))
    );
    let to: Vec<(Option<&str>, Option<&str>)> = message
        .to()
        .unwrap()
        .iter()
        .map(|a| (a.name(), a.address()))
        .collect();
    assert_eq!(
        to,
        [
            (None, Some("ada@example.test")),
            (Some("Bob Builder"), Some("bob@example.test"))
        ]
    );
    let cc: Vec<(Option<&str>, Option<&str>)> = message
        .cc()
        .unwrap()
        .iter()
        .map(|a| (a.name(), a.address()))
        .collect();
    assert_eq!(
        cc,
        [
            (Some("Ops Team"), Some("ops@example.test")),
            (Some("Smith, Jo"), Some("jo@example.test"))
        ]
    );
    assert_eq!(message.header_raw("X-Ticket").map(str::trim), Some("4711"));
    assert_eq!(message.body_text(0).as_deref(), Some("Grüße aus hookflow"));
    assert_eq!(message.attachment_count(), 2);
    let pixel = message.attachment(0).unwrap();
    assert_eq!(pixel.attachment_name(), Some("pixel.bin"));
    assert_eq!(
        pixel.contents(),
        blob.as_slice(),
        "binary bytes survive exactly"
    );
    let meta = message.attachment(1).unwrap();
    assert_eq!(content_type(meta), "application/json");
    let parsed: Json = serde_json::from_slice(meta.contents()).expect("JSON attachment");
    assert_eq!(parsed, body["meta"]);
}

#[tokio::test]
async fn a_rendered_bad_address_fails_the_step_and_sends_nothing() {
    let smtp = SmtpServer::start();
    let url = smtp.url();
    let workflow = r#"
name: bad-address
on:
  webhook:
    path: /hooks/bad
steps:
  - name: mail
    email:
      from: shop@example.test
      to: ok@example.test
      cc: "{{ event.body.cc }}"
      subject: hello
      text: hello
"#;
    let server = TestServer::start_with(&[("bad.yaml", workflow)], |settings| {
        settings.email.smtp = Some(url);
    })
    .await;
    let run_ids = server
        .accepted(
            "/hooks/bad",
            "application/json",
            br#"{"cc": ["fine@example.test", "Ada at example"]}"#.to_vec(),
        )
        .await;
    let run = server.finished_run(&run_ids[0]).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let mail = step(&run, "mail");
    assert_eq!(mail["status"], "failed");
    let error = mail["error"].as_str().expect("an error");
    assert!(
        error.contains("`cc`: 'Ada at example' is not an email address"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(smtp.connections(), 0, "nothing was sent");
    assert!(smtp.received().is_empty());
}

#[tokio::test]
async fn a_5xx_rejection_fails_the_run_with_the_servers_reply() {
    let smtp = SmtpServer::start();
    smtp.reply_to_recipients(550, "5.1.1 mailbox unavailable");
    let url = smtp.url();
    let workflow = r#"
name: rejected
on:
  webhook:
    path: /hooks/rejected
steps:
  - name: mail
    email:
      from: shop@example.test
      to: nobody@example.test
      subject: hello
      text: hello
"#;
    let server = TestServer::start_with(&[("rejected.yaml", workflow)], |settings| {
        settings.email.smtp = Some(url);
    })
    .await;
    let run_ids = server
        .accepted("/hooks/rejected", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&run_ids[0]).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let error = step(&run, "mail")["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(error.contains("rejected the message"), "{error}");
    assert!(error.contains("550"), "{error}");
    assert!(error.contains("mailbox unavailable"), "{error}");
    assert!(smtp.received().is_empty());
}

fn sample_email(id: &str) -> Email {
    let one = |s: &str| Address::parse_list(s).unwrap().remove(0);
    Email {
        message_id: format!("<{id}@hookflow>"),
        from: Some(one("shop@example.test")),
        to: vec![one("ada@example.test")],
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: Vec::new(),
        subject: "hello".into(),
        text: Some("hello".into()),
        html: None,
        headers: Vec::new(),
        attachments: Vec::new(),
    }
}

fn smtp_mailer(url: String) -> LettreMailer {
    LettreMailer::from_settings(&EmailSettings {
        smtp: Some(url),
        from: None,
        outbox: PathBuf::from("unused-outbox"),
        timeout: Duration::from_secs(5),
    })
    .expect("mailer")
}

#[tokio::test]
async fn smtp_4xx_and_connection_failures_are_transient_and_5xx_is_permanent() {
    let smtp = SmtpServer::start();
    let mailer = smtp_mailer(smtp.url());

    smtp.reply_to_recipients(451, "4.3.0 try again later");
    let err = mailer.send(sample_email("deferred")).await.unwrap_err();
    assert!(matches!(err, MailError::Deferred { .. }), "{err:?}");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("451"), "{err}");

    smtp.reply_to_recipients(554, "5.7.1 relaying denied");
    let err = mailer.send(sample_email("rejected")).await.unwrap_err();
    assert!(matches!(err, MailError::Rejected { .. }), "{err:?}");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("relaying denied"), "{err}");

    smtp.reply_to_recipients(250, "OK");
    let delivered = mailer.send(sample_email("accepted")).await.expect("sent");
    assert!(
        matches!(delivered, mail::Delivery::Smtp { recipients: 1, .. }),
        "{delivered:?}"
    );
    assert_eq!(smtp.received().len(), 1);

    // A port nobody listens on: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mailer = smtp_mailer(format!("smtp://127.0.0.1:{port}?tls=none"));
    let err = mailer.send(sample_email("refused")).await.unwrap_err();
    assert!(matches!(err, MailError::Connection { .. }), "{err:?}");
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn smtp_credentials_from_the_environment_log_in_and_never_reach_a_record() {
    let password = "pa55-w0rd-from-env";
    set_env("HOOKFLOW_IT_EMAIL_SMTP_PASSWORD", password);
    let smtp = SmtpServer::start_with_login("mailer@example.test", password);
    let url = format!(
        "smtp://mailer%40example.test:${{HOOKFLOW_IT_EMAIL_SMTP_PASSWORD}}@{}?tls=none",
        smtp.addr
    );
    let workflow = r#"
name: login
on:
  webhook:
    path: /hooks/login
steps:
  - name: mail
    email:
      from: shop@example.test
      to: ada@example.test
      subject: hello
      text: hello
"#;
    let server = TestServer::start_with(&[("login.yaml", workflow)], |settings| {
        settings.email.smtp = Some(url);
    })
    .await;
    let run_ids = server
        .accepted("/hooks/login", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&run_ids[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(
        smtp.logins(),
        [("mailer@example.test".to_owned(), password.to_owned())]
    );
    assert!(!run.to_string().contains(password), "{run}");
    let listing = server
        .client
        .get(format!("{}/api/runs", server.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listing.contains(password), "{listing}");
}

#[tokio::test]
async fn consecutive_messages_share_one_pooled_smtp_connection() {
    let smtp = SmtpServer::start();
    let url = smtp.url();
    let workflow = r#"
name: pooled
on:
  webhook:
    path: /hooks/pooled
steps:
  - name: mail
    email:
      from: shop@example.test
      to: ada@example.test
      subject: "message {{ event.body.n }}"
      text: hello
"#;
    let server = TestServer::start_with(&[("pooled.yaml", workflow)], |settings| {
        settings.email.smtp = Some(url);
    })
    .await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let run_ids = server
            .accepted(
                "/hooks/pooled",
                "application/json",
                format!("{{\"n\": {n}}}").into_bytes(),
            )
            .await;
        let run = server.finished_run(&run_ids[0]).await;
        assert_eq!(run["run"]["status"], "succeeded", "{run}");
        ids.push(step(&run, "mail")["output"]["message_id"].clone());
    }
    assert_eq!(smtp.wait_for(3).await.len(), 3);
    assert_eq!(
        smtp.connections(),
        1,
        "the pool kept the first connection open"
    );
    ids.dedup();
    assert_eq!(ids.len(), 3, "each run has its own Message-ID: {ids:?}");
}

fn compile_errors(yaml: &str) -> Vec<(usize, String)> {
    let file = hookflow::diag::SourceFile::new("bad-email.yaml", yaml);
    let (workflow, diagnostics) =
        hookflow::workflow::compile_file(file, &hookflow::workflow::CompileOptions::default());
    assert!(workflow.is_none(), "the workflow compiled");
    diagnostics
        .sorted()
        .into_iter()
        .map(|d| {
            (
                d.span.line,
                format!("{} {}", d.message, d.hint.unwrap_or_default()),
            )
        })
        .collect()
}

#[test]
fn validate_reports_every_problem_of_an_email_step_with_its_line() {
    let errors = compile_errors(
        r#"steps:
  - name: mail
    email:
      from: "a@example.test, b@example.test"
      to: [ok@example.test, "not an address"]
      bc: x@example.test
      subject: hi
      headers:
        Subject: nope
        "X Bad": nope
      attachments:
        - name: a.bin
          content_type: binary
          content: "!!!"
          base64: true
        - content: missing name
"#,
    );
    let expect = [
        (4, "`email` has no body"),
        (4, "`from` takes one address"),
        (5, "'not an address' is not an email address"),
        (6, "unknown key 'bc' in `email`"),
        (9, "the header 'Subject' is set by the email step itself"),
        (10, "'X Bad' is not a header name"),
        (13, "'binary' is not a MIME type"),
        (14, "`content` is not valid base64"),
        (16, "an attachment is missing the required key 'name'"),
    ];
    for (line, text) in expect {
        assert!(
            errors.iter().any(|(l, m)| *l == line && m.contains(text)),
            "no error {text:?} on line {line}; got {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");

    let errors = compile_errors(
        "steps:\n  - email:\n      from: shop@example.test\n      subject: hi\n      text: hi\n      cc: \"\"\n",
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].1.contains("`email` has no recipient"),
        "{errors:#?}"
    );
}

fn hookflow(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookflow"));
    command.current_dir(dir);
    command
}

#[test]
fn hookflow_run_writes_to_dot_outbox_and_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = example_dir().join("workflow.yaml");
    let payload = example_dir().join("payload.json");
    let run = |extra: &[&str]| {
        let output = hookflow(dir.path())
            .arg("run")
            .arg(&workflow)
            .arg("--payload")
            .arg(&payload)
            .args(extra)
            .output()
            .expect("run hookflow");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stdout}\n{stderr}");
        let outcome: Json = serde_json::from_str(&stdout).expect("outcome JSON");
        assert_eq!(outcome["status"], "succeeded", "{stderr}");
        (outcome, stderr)
    };
    let (_, trace) = run(&["--dry-run"]);
    assert!(trace.contains("confirm (email)"), "{trace}");
    assert!(
        trace.contains("\"subject\": \"Your order #9999 is confirmed ✓\""),
        "{trace}"
    );
    assert!(
        !dir.path().join("outbox").exists(),
        "a dry run sends nothing"
    );

    let (outcome, trace) = run(&[]);
    let run_id = outcome["run_id"].as_str().expect("run id");
    let files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("outbox"))
        .expect("./outbox was created")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(trace.contains("\"delivered\": \"outbox\""), "{trace}");
    let raw = std::fs::read(&files[0]).unwrap();
    assert_order_email(&raw, &fixture_json(ORDER_FIXTURE), run_id, true);
}

#[test]
fn the_example_greets_guests_and_skips_orders_without_an_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dry_run = |order: &Json| {
        let payload = dir.path().join("order.json");
        std::fs::write(&payload, serde_json::to_vec(order).unwrap()).unwrap();
        let output = hookflow(dir.path())
            .arg("run")
            .arg(example_dir().join("workflow.yaml"))
            .arg("--payload")
            .arg(&payload)
            .arg("--dry-run")
            .output()
            .expect("run hookflow");
        let outcome: Json = serde_json::from_slice(&output.stdout).expect("outcome JSON");
        (
            outcome,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let mut guest = fixture_json(ORDER_FIXTURE);
    guest.as_object_mut().unwrap().remove("customer");
    let (outcome, trace) = dry_run(&guest);
    assert_eq!(outcome["status"], "succeeded", "{trace}");
    assert!(trace.contains(r#""text": "Hello there,\n"#), "{trace}");

    for email in [Json::Null, json!(""), json!("  ")] {
        let mut order = fixture_json(ORDER_FIXTURE);
        order["email"] = email.clone();
        let (outcome, trace) = dry_run(&order);
        assert_eq!(outcome["status"], "filtered", "{email}: {trace}");
        assert!(!trace.contains("confirm (email)"), "{trace}");
    }
    assert!(!dir.path().join("outbox").exists());
}

#[test]
fn the_example_payload_is_the_published_shopify_fixture() {
    let ours = std::fs::read(example_dir().join("payload.json")).expect("example payload");
    assert!(
        ours == fixture(ORDER_FIXTURE),
        "payload.json differs from the fixture"
    );
}

/// An `email` step without `from`, on a server without a sender, is an error when the
/// workflows load (validate, run, serve), not a failure of every run; `--email-from` or
/// `HOOKFLOW_EMAIL_FROM` gives the sender.
#[test]
fn an_email_without_a_sender_is_an_error_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("mail.yaml"),
        "on: { webhook: { path: /hooks/mail } }\nsteps:\n  - name: tell\n    email: { to: ops@example.test, subject: hi, text: hello }\n",
    )
    .expect("write");
    let hookflow = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"));
        command
            .args(args)
            .current_dir(dir.path())
            .env_remove("HOOKFLOW_EMAIL_FROM")
            .env_remove("HOOKFLOW_CONFIG");
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().expect("hookflow");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), text)
    };
    let (code, output) = hookflow(&["validate"], &[]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("workflows/mail.yaml:4:12: error: `email` has no sender: give it `from`"),
        "{output}"
    );
    let (code, output) = hookflow(&["run", "mail", "--dry-run"], &[]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("has no sender"), "{output}");
    let (code, output) = hookflow(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("has no sender"), "{output}");

    let (code, output) = hookflow(&["validate", "--email-from", "Ops <ops@example.test>"], &[]);
    assert_eq!(code, Some(0), "{output}");
    let (code, output) = hookflow(
        &["validate"],
        &[("HOOKFLOW_EMAIL_FROM", "ops@example.test")],
    );
    assert_eq!(code, Some(0), "{output}");
    std::fs::write(
        dir.path().join("hookflow.yaml"),
        "email:\n  from: ops@example.test\n",
    )
    .expect("write");
    let (code, output) = hookflow(&["run", "mail", "--dry-run"], &[]);
    assert_eq!(code, Some(0), "{output}");
}
