//! `email`: one message with templated addresses, subject, text and/or HTML, headers and
//! attachments, sent through `effects::mail` (SMTP, or an `.eml` file in the outbox).

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value as Json, json};

use crate::effects::Effects;
use crate::effects::mail::{self, Address, Delivery, Email};
use crate::lang::compile::Compiler;
use crate::lang::yaml::{Node, NodeValue};
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate, json_kind};

/// The keys of an `email` step.
pub const KEYS: &[&str] = &[
    "to",
    "cc",
    "bcc",
    "from",
    "reply_to",
    "subject",
    "text",
    "html",
    "headers",
    "attachments",
];
/// The keys of one entry of `attachments`.
pub const ATTACHMENT_KEYS: &[&str] = &["name", "content_type", "content", "base64"];
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

// Attachments arrive from payloads wrapped or unwrapped, padded or not; whitespace is never data.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug)]
pub struct EmailStep {
    from: Addresses,
    to: Addresses,
    cc: Addresses,
    bcc: Addresses,
    reply_to: Addresses,
    subject: ValueTemplate,
    text: Option<ValueTemplate>,
    html: Option<ValueTemplate>,
    headers: Vec<(String, ValueTemplate)>,
    attachments: Vec<AttachmentTemplate>,
}

/// An address field: each item renders to text (one address or several separated by commas),
/// a list of such texts, or null (none).
#[derive(Debug)]
struct Addresses {
    key: &'static str,
    items: Vec<ValueTemplate>,
}

impl Addresses {
    fn none(key: &'static str) -> Self {
        Self {
            key,
            items: Vec::new(),
        }
    }

    /// Whether rendering can only give no address (absent, or literally empty).
    fn surely_empty(&self) -> bool {
        self.items.iter().all(|item| match item {
            ValueTemplate::Literal(value) => literal_addresses(value).is_some_and(|n| n == 0),
            _ => false,
        })
    }

    fn render(&self, scope: &Scope<'_>) -> Result<Vec<Address>, StepError> {
        let mut out = Vec::new();
        for item in &self.items {
            let value = item.render(scope)?;
            collect_addresses(self.key, &value, &mut out)?;
        }
        Ok(out)
    }
}

#[derive(Debug)]
struct AttachmentTemplate {
    name: ValueTemplate,
    content_type: ValueTemplate,
    content: ValueTemplate,
    base64: bool,
}

/// The message as rendered, before it is sent.
#[derive(Debug, Clone)]
pub struct RenderedEmail {
    pub email: Email,
}

impl RenderedEmail {
    pub fn to_json(&self) -> Json {
        let email = &self.email;
        let list = |addresses: &[Address]| -> Json {
            addresses
                .iter()
                .map(|a| Json::String(a.to_string()))
                .collect()
        };
        let headers: serde_json::Map<String, Json> = email
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        // Attachment bodies can be large and binary: the record keeps their size.
        let attachments: Vec<Json> = email
            .attachments
            .iter()
            .map(|a| json!({ "name": a.name, "content_type": a.content_type, "size": a.content.len() }))
            .collect();
        json!({
            "message_id": email.message_id,
            "from": email.from.as_ref().map(ToString::to_string),
            "to": list(&email.to),
            "cc": list(&email.cc),
            "bcc": list(&email.bcc),
            "reply_to": list(&email.reply_to),
            "subject": email.subject,
            "text": email.text,
            "html": email.html,
            "headers": headers,
            "attachments": attachments,
        })
    }
}

impl EmailStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(node, "`email`", KEYS, &["subject"])?;
        let mut ok = true;
        let mut addresses = |c: &mut Compiler, key: &'static str| match fields.get(key) {
            None => Addresses::none(key),
            Some(n) => compile_addresses(c, n, key).unwrap_or_else(|| {
                ok = false;
                Addresses::none(key)
            }),
        };
        let from = addresses(c, "from");
        let to = addresses(c, "to");
        let cc = addresses(c, "cc");
        let bcc = addresses(c, "bcc");
        let reply_to = addresses(c, "reply_to");
        if ok && to.surely_empty() && cc.surely_empty() && bcc.surely_empty() {
            c.error(
                node.span.clone(),
                "`email` has no recipient: give `to`, `cc` or `bcc` at least one address",
            );
            ok = false;
        }
        let literal_senders: Option<usize> = from
            .items
            .iter()
            .map(|item| match item {
                ValueTemplate::Literal(value) => literal_addresses(value),
                _ => None,
            })
            .sum();
        if !fields.has("from") && c.options.default_sender == Some(false) {
            c.error(
                node.span.clone(),
                "`email` has no sender: give it `from`, or give the server one (`email.from` in hookflow.yaml, `--email-from` or HOOKFLOW_EMAIL_FROM)",
            );
            ok = false;
        }
        if literal_senders.is_some_and(|n| n > 1)
            && let Some(n) = fields.get("from")
        {
            c.error(n.span.clone(), "`from` takes one address");
            ok = false;
        }
        let subject = fields.get("subject").and_then(|n| c.text(n, "`subject`"));
        ok &= subject.is_some() || !fields.has("subject");
        let mut text_of = |c: &mut Compiler, key: &str, what: &str| match fields.get(key) {
            None => None,
            Some(n) => {
                let compiled = c.text(n, what);
                ok &= compiled.is_some();
                compiled
            }
        };
        let text = text_of(c, "text", "`text`");
        let html = text_of(c, "html", "`html`");
        if !fields.has("text") && !fields.has("html") {
            c.error(
                node.span.clone(),
                "`email` has no body: give it `text`, `html`, or both",
            );
            ok = false;
        }
        let headers = match fields.get("headers") {
            None => Some(Vec::new()),
            Some(n) => compile_headers(c, n),
        };
        let attachments = match fields.get("attachments") {
            None => Some(Vec::new()),
            Some(n) => compile_attachments(c, n),
        };
        let (Some(subject), Some(headers), Some(attachments), true) =
            (subject, headers, attachments, ok)
        else {
            return None;
        };
        Some(Self {
            from,
            to,
            cc,
            bcc,
            reply_to,
            subject,
            text,
            html,
            headers,
            attachments,
        })
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedEmail, StepError> {
        let from = match self.from.render(scope)?.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => {
                return Err(StepError::permanent(format!(
                    "`from` takes one address, got {}",
                    many.len()
                )));
            }
        };
        let to = self.to.render(scope)?;
        let cc = self.cc.render(scope)?;
        let bcc = self.bcc.render(scope)?;
        if to.is_empty() && cc.is_empty() && bcc.is_empty() {
            return Err(StepError::permanent(
                "no recipient: `to`, `cc` and `bcc` rendered no address",
            ));
        }
        let reply_to = self.reply_to.render(scope)?;
        let subject = one_line(&self.subject.render_string(scope)?);
        let text = match &self.text {
            Some(t) => Some(t.render_string(scope)?),
            None => None,
        };
        let html = match &self.html {
            Some(t) => Some(t.render_string(scope)?),
            None => None,
        };
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let value = scalar_text(&value.render(scope)?);
            if value.contains(['\r', '\n']) {
                return Err(StepError::permanent(format!(
                    "header '{name}': a value cannot contain a line break"
                )));
            }
            headers.push((name.clone(), value));
        }
        let mut attachments = Vec::new();
        for (index, attachment) in self.attachments.iter().enumerate() {
            attachments.push(attachment.render(scope, index + 1)?);
        }
        Ok(RenderedEmail {
            email: Email {
                message_id: message_id(id),
                from,
                to,
                cc,
                bcc,
                reply_to,
                subject,
                text,
                html,
                headers,
                attachments,
            },
        })
    }
}

impl AttachmentTemplate {
    fn render(&self, scope: &Scope<'_>, position: usize) -> Result<mail::Attachment, StepError> {
        let fail =
            |message: String| StepError::permanent(format!("attachment {position}: {message}"));
        let name = self.name.render_string(scope)?;
        if let Some(problem) = attachment_name_problem(&name) {
            return Err(fail(problem));
        }
        let content_type = self.content_type.render_string(scope)?;
        if let Some(problem) = mail::content_type_problem(&content_type) {
            return Err(fail(problem));
        }
        let value = self.content.render(scope)?;
        let content = if self.base64 {
            match &value {
                Json::String(text) => decode_base64(text).map_err(fail)?,
                other => {
                    return Err(fail(format!(
                        "`content` with `base64: true` must be text, got {}",
                        json_kind(other)
                    )));
                }
            }
        } else {
            match value {
                Json::String(text) => text.into_bytes(),
                Json::Null => Vec::new(),
                // Data attaches as readable JSON: `content: "{{ event.body }}"` attaches the payload.
                other => serde_json::to_vec_pretty(&other)
                    .map_err(|e| fail(format!("`content` cannot be encoded: {e}")))?,
            }
        };
        Ok(mail::Attachment {
            name,
            content_type,
            content,
        })
    }
}

/// `<run id.step name@hookflow>`: the same for every attempt of one step, so a message sent
/// again after a crash or a retry can be recognised as the same one.
fn message_id(id: &StepIdentity<'_>) -> String {
    let clean = |text: &str| -> String {
        let mapped: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        // A dot-atom has no empty atom: no leading, trailing or doubled dot.
        mapped
            .split('.')
            .filter(|atom| !atom.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    };
    format!("<{}.{}@hookflow>", clean(id.run_id), clean(id.step_name))
}

fn compile_addresses(c: &mut Compiler, node: &Node, key: &'static str) -> Option<Addresses> {
    let nodes: Vec<&Node> = match &node.value {
        NodeValue::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut items = Vec::new();
    let mut ok = true;
    for item in nodes {
        let is_jsonpath = item
            .as_map()
            .is_some_and(|entries| entries.len() == 1 && entries[0].0.name == "jsonpath");
        if matches!(item.value, NodeValue::Map(_) | NodeValue::Seq(_)) && !is_jsonpath {
            c.error(
                item.span.clone(),
                format!(
                    "`{key}` takes addresses: text, a list of text, or a template giving them; found {}",
                    item.kind_name()
                ),
            );
            ok = false;
            continue;
        }
        let Some(compiled) = c.value(item) else {
            ok = false;
            continue;
        };
        if let ValueTemplate::Literal(value) = &compiled {
            let mut found = Vec::new();
            if let Err(err) = collect_addresses(key, value, &mut found) {
                c.error(item.span.clone(), err.message);
                ok = false;
                continue;
            }
        }
        items.push(compiled);
    }
    ok.then_some(Addresses { key, items })
}

/// How many addresses a literal holds, or `None` when it is not valid.
fn literal_addresses(value: &Json) -> Option<usize> {
    let mut found = Vec::new();
    collect_addresses("", value, &mut found).ok()?;
    Some(found.len())
}

fn collect_addresses(key: &str, value: &Json, out: &mut Vec<Address>) -> Result<(), StepError> {
    match value {
        Json::Null => Ok(()),
        Json::String(text) => {
            let parsed = Address::parse_list(text)
                .map_err(|err| StepError::permanent(format!("`{key}`: {err}")))?;
            out.extend(parsed);
            Ok(())
        }
        Json::Array(items) => items
            .iter()
            .try_for_each(|item| collect_addresses(key, item, out)),
        other => Err(StepError::permanent(format!(
            "`{key}` takes addresses (text, or a list of text), got {}",
            json_kind(other)
        ))),
    }
}

fn compile_headers(c: &mut Compiler, node: &Node) -> Option<Vec<(String, ValueTemplate)>> {
    let entries = c.mapping(node, "`headers`")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (key, value) in entries {
        if let Some(problem) = mail::header_name_problem(&key.name) {
            c.error(key.span.clone(), problem);
            ok = false;
        }
        match c.value(value) {
            Some(v) => out.push((key.name.clone(), v)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn compile_attachments(c: &mut Compiler, node: &Node) -> Option<Vec<AttachmentTemplate>> {
    let Some(items) = node.as_seq() else {
        c.error(
            node.span.clone(),
            format!(
                "`attachments` must be a list of mappings (name, content, ...), found {}",
                node.kind_name()
            ),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match compile_attachment(c, item) {
            Some(a) => out.push(a),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn compile_attachment(c: &mut Compiler, node: &Node) -> Option<AttachmentTemplate> {
    let fields = c.fields(node, "an attachment", ATTACHMENT_KEYS, &["name", "content"])?;
    let name = fields.get("name").and_then(|n| {
        let compiled = c.text(n, "`name`")?;
        if let ValueTemplate::Literal(Json::String(text)) = &compiled
            && let Some(problem) = attachment_name_problem(text)
        {
            c.error(n.span.clone(), problem);
            return None;
        }
        Some(compiled)
    });
    let content_type = match fields.get("content_type") {
        None => Some(ValueTemplate::Literal(Json::String(
            DEFAULT_CONTENT_TYPE.to_owned(),
        ))),
        Some(n) => c.text(n, "`content_type`").and_then(|compiled| {
            if let ValueTemplate::Literal(Json::String(text)) = &compiled
                && let Some(problem) = mail::content_type_problem(text)
            {
                c.error(n.span.clone(), problem);
                return None;
            }
            Some(compiled)
        }),
    };
    let base64 = match fields.get("base64") {
        None => Some(false),
        Some(n) => c.bool(n, "`base64`"),
    };
    let content = fields.get("content").and_then(|n| {
        let compiled = c.value(n)?;
        if base64 == Some(true)
            && let ValueTemplate::Literal(Json::String(text)) = &compiled
            && let Err(problem) = decode_base64(text)
        {
            c.error(n.span.clone(), problem);
            return None;
        }
        Some(compiled)
    });
    Some(AttachmentTemplate {
        name: name?,
        content_type: content_type?,
        content: content?,
        base64: base64?,
    })
}

fn attachment_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        Some("`name` is empty".to_owned())
    } else if name.contains(['\r', '\n']) {
        Some("`name` cannot contain a line break".to_owned())
    } else {
        None
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    BASE64_LENIENT
        .decode(&compact)
        .map_err(|e| format!("`content` is not valid base64: {e}"))
}

/// Line breaks would end a header: a subject is one line, whatever the template produced.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn scalar_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// Send the message; the output says where it went.
pub async fn execute(rendered: RenderedEmail, effects: &Effects) -> Result<Json, StepError> {
    let message_id = rendered.email.message_id.clone();
    match effects.mail.send(rendered.email).await {
        Ok(Delivery::Smtp { reply, recipients }) => Ok(json!({
            "message_id": message_id,
            "delivered": "smtp",
            "recipients": recipients,
            "reply": reply,
        })),
        Ok(Delivery::Outbox { path }) => Ok(json!({
            "message_id": message_id,
            "delivered": "outbox",
            "path": path.display().to_string(),
        })),
        Err(err) => Err(StepError {
            message: err.to_string(),
            output: None,
            transient: err.is_transient(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_dot_atoms() {
        let id = StepIdentity {
            run_id: "0190a1b2-c3d4",
            step_name: "confirm",
            traceparent: None,
        };
        assert_eq!(message_id(&id), "<0190a1b2-c3d4.confirm@hookflow>");
        assert_eq!(message_id(&id), message_id(&id));
        let odd = StepIdentity {
            run_id: "r1",
            step_name: ".a..b c.",
            traceparent: None,
        };
        assert_eq!(message_id(&odd), "<r1.a.b-c@hookflow>");
    }

    #[test]
    fn address_values_text_lists_and_null() {
        let mut out = Vec::new();
        collect_addresses(
            "to",
            &json!([
                "ada@example.test, Bob <bob@example.test>",
                null,
                ["c@example.test"]
            ]),
            &mut out,
        )
        .unwrap();
        let shown: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "ada@example.test",
                "Bob <bob@example.test>",
                "c@example.test"
            ]
        );
        let err =
            collect_addresses("cc", &json!(["ok@example.test", "nope"]), &mut out).unwrap_err();
        assert!(
            err.message
                .starts_with("`cc`: 'nope' is not an email address"),
            "{}",
            err.message
        );
        assert!(!err.transient);
        let err =
            collect_addresses("bcc", &json!({ "email": "x@example.test" }), &mut out).unwrap_err();
        assert!(err.message.contains("got an object"), "{}", err.message);
        assert_eq!(literal_addresses(&json!("")), Some(0));
        assert_eq!(literal_addresses(&json!("a@x.test, b@x.test")), Some(2));
        assert_eq!(literal_addresses(&json!(3)), None);
    }

    #[test]
    fn base64_content_ignores_wrapping_and_padding() {
        assert_eq!(decode_base64("aGVs\r\nbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert!(
            decode_base64("not base64!")
                .unwrap_err()
                .contains("not valid base64")
        );
    }

    #[test]
    fn subjects_are_one_line() {
        assert_eq!(one_line("Order #1\r\n  shipped\n"), "Order #1 shipped");
    }
}
