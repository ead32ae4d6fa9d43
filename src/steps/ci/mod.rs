//! `ci`: start a build on a CI provider, one sub-key per provider (each in its own file), each
//! sending exactly the request the provider's public API documents; `generic` is any HTTP call.

pub mod buildkite;
pub mod circleci;
pub mod github;
pub mod gitlab;
pub mod jenkins;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::effects::{Effects, HttpError, HttpRequest, HttpResponse};
use crate::lang::compile::{Compiler, Fields};
use crate::lang::yaml::Node;
use crate::run::StatusPattern;
use crate::steps::http::{self, HttpStep, RenderedHttp};
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate};

/// The keys of a `ci` step: one provider each.
pub const PROVIDERS: &[&str] = &[
    "github_actions",
    "github_dispatch",
    "gitlab",
    "jenkins",
    "buildkite",
    "circleci",
    "generic",
];

/// How much of a provider's error text goes into the step's error.
const MESSAGE_LIMIT: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GithubActions,
    GithubDispatch,
    Gitlab,
    Jenkins,
    Buildkite,
    Circleci,
    Generic,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GithubActions => "github_actions",
            Provider::GithubDispatch => "github_dispatch",
            Provider::Gitlab => "gitlab",
            Provider::Jenkins => "jenkins",
            Provider::Buildkite => "buildkite",
            Provider::Circleci => "circleci",
            Provider::Generic => "generic",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            Provider::GithubActions,
            Provider::GithubDispatch,
            Provider::Gitlab,
            Provider::Jenkins,
            Provider::Buildkite,
            Provider::Circleci,
            Provider::Generic,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

#[derive(Debug)]
pub struct CiStep {
    call: Call,
}

/// Each provider boxed: their compiled forms differ a lot in size, and a step is compiled once.
#[derive(Debug)]
enum Call {
    GithubActions(Box<github::Actions>),
    GithubDispatch(Box<github::Dispatch>),
    Gitlab(Box<gitlab::Trigger>),
    Jenkins(Box<jenkins::Build>),
    Buildkite(Box<buildkite::Build>),
    Circleci(Box<circleci::Pipeline>),
    Generic(Box<HttpStep>),
}

impl CiStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(node, "`ci`", PROVIDERS, &[])?;
        let given: Vec<&str> = PROVIDERS
            .iter()
            .copied()
            .filter(|p| fields.has(p))
            .collect();
        let name = match given.as_slice() {
            [one] => *one,
            [] => {
                // Unknown keys were already reported with a hint; only an empty `ci` is new.
                if node.as_map().is_none_or(|entries| entries.is_empty()) {
                    c.error(
                        node.span.clone(),
                        format!("`ci` needs one provider: {}", PROVIDERS.join(", ")),
                    );
                }
                return None;
            }
            [first, second, ..] => {
                let span = fields.key(second)?.span.clone();
                c.error(
                    span,
                    format!("`ci` takes one provider, but has both '{first}' and '{second}'"),
                );
                return None;
            }
        };
        let body = fields.get(name)?;
        let call = match Provider::parse(name)? {
            Provider::GithubActions => {
                Call::GithubActions(Box::new(github::Actions::compile(c, body)?))
            }
            Provider::GithubDispatch => {
                Call::GithubDispatch(Box::new(github::Dispatch::compile(c, body)?))
            }
            Provider::Gitlab => Call::Gitlab(Box::new(gitlab::Trigger::compile(c, body)?)),
            Provider::Jenkins => Call::Jenkins(Box::new(jenkins::Build::compile(c, body)?)),
            Provider::Buildkite => Call::Buildkite(Box::new(buildkite::Build::compile(c, body)?)),
            Provider::Circleci => Call::Circleci(Box::new(circleci::Pipeline::compile(c, body)?)),
            Provider::Generic => {
                Call::Generic(Box::new(HttpStep::compile_as(c, body, "`ci.generic`")?))
            }
        };
        Some(Self { call })
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        let (provider, result) = match &self.call {
            Call::GithubActions(call) => (Provider::GithubActions, call.render(scope, id)),
            Call::GithubDispatch(call) => (Provider::GithubDispatch, call.render(scope, id)),
            Call::Gitlab(call) => (Provider::Gitlab, call.render(scope, id)),
            Call::Jenkins(call) => (Provider::Jenkins, call.render(scope, id)),
            Call::Buildkite(call) => (Provider::Buildkite, call.render(scope, id)),
            Call::Circleci(call) => (Provider::Circleci, call.render(scope, id)),
            Call::Generic(call) => (
                Provider::Generic,
                call.render(scope, id).map(RenderedCi::from_http),
            ),
        };
        // Every error names the provider, like the errors of the answer do.
        result.map_err(|mut err| {
            err.message = format!("{}: {}", provider.as_str(), err.message);
            err
        })
    }
}

/// One header of the request; credentials carry what the record shows instead.
#[derive(Debug, Clone)]
struct Header {
    name: String,
    value: String,
    shown: Option<String>,
}

/// The provider's request, fully rendered: what is sent, and what the record shows.
#[derive(Debug, Clone)]
pub struct RenderedCi {
    provider: Provider,
    method: String,
    url: String,
    /// The URL as recorded: a credential in the query shows as `***`.
    shown_url: String,
    headers: Vec<Header>,
    body: Option<Vec<u8>>,
    /// The body as recorded: JSON stays JSON, a form is a mapping, credentials are `***`.
    body_record: Json,
    timeout: Duration,
    follow_redirects: bool,
    expect: Vec<StatusPattern>,
    /// Credential values, kept out of error messages even when they are not declared secrets.
    credentials: Vec<String>,
}

impl RenderedCi {
    /// A POST that counts any 2xx as success (what every provider here answers on success).
    fn post(provider: Provider, url: String, timeout: Duration) -> Self {
        Self {
            provider,
            method: "POST".to_owned(),
            shown_url: url.clone(),
            url,
            headers: Vec::new(),
            body: None,
            body_record: Json::Null,
            timeout,
            follow_redirects: false,
            expect: vec![StatusPattern::Class(2)],
            credentials: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.to_owned(),
            value: value.into(),
            shown: None,
        });
        self
    }

    /// A header holding a credential: sent as `value`, recorded as `shown`.
    fn credential_header(mut self, name: &str, value: String, shown: &str, secret: String) -> Self {
        self.headers.push(Header {
            name: name.to_owned(),
            value,
            shown: Some(shown.to_owned()),
        });
        self.credentials.push(secret);
        self
    }

    /// A credential in the query string (`?token=...`), recorded as `***`.
    fn credential_query(mut self, name: &str, value: String) -> Self {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let encoded = serde_urlencoded::to_string([(name, value.as_str())]).unwrap_or_default();
        self.url.push(separator);
        self.url.push_str(&encoded);
        self.shown_url.push(separator);
        self.shown_url.push_str(&format!("{name}=***"));
        self.credentials.push(value);
        self
    }

    fn json(mut self, body: Json) -> Result<Self, StepError> {
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| StepError::permanent(format!("cannot encode the JSON body: {e}")))?;
        self = self.header("Content-Type", "application/json");
        self.body = Some(bytes);
        self.body_record = body;
        Ok(self)
    }

    /// A form body; `record` is how the record shows it (with credentials masked).
    fn form(mut self, pairs: &[(String, String)], record: Json) -> Result<Self, StepError> {
        let encoded = serde_urlencoded::to_string(pairs)
            .map_err(|e| StepError::permanent(format!("cannot encode the form: {e}")))?;
        self = self.header("Content-Type", "application/x-www-form-urlencoded");
        self.body = Some(encoded.into_bytes());
        self.body_record = record;
        Ok(self)
    }

    /// The same key as `http` steps: a provider or a proxy can recognise a request sent again.
    fn idempotency_key(self, id: &StepIdentity<'_>) -> Self {
        self.header("Idempotency-Key", format!("{}.{}", id.run_id, id.step_name))
    }

    fn from_http(request: RenderedHttp) -> Self {
        let mut headers: Vec<Header> = request
            .headers
            .into_iter()
            .map(|(name, value)| Header {
                name,
                value,
                shown: None,
            })
            .collect();
        let mut credentials = Vec::new();
        if let Some((scheme, secret)) = request.authorization {
            headers.push(Header {
                name: "Authorization".to_owned(),
                value: format!("{scheme} {secret}"),
                shown: Some(format!("{scheme} ***")),
            });
            credentials.push(secret);
        }
        Self {
            provider: Provider::Generic,
            method: request.method,
            shown_url: request.url.clone(),
            url: request.url,
            headers,
            body: request.body,
            body_record: request.body_record,
            timeout: request.timeout,
            follow_redirects: request.follow_redirects,
            expect: request.expect,
            credentials,
        }
    }

    pub fn to_json(&self) -> Json {
        let headers: Map<String, Json> = self
            .headers
            .iter()
            .map(|h| {
                let shown = h.shown.as_ref().unwrap_or(&h.value);
                (h.name.clone(), Json::String(shown.clone()))
            })
            .collect();
        serde_json::json!({
            "provider": self.provider.as_str(),
            "method": self.method,
            "url": self.shown_url,
            "headers": headers,
            "body": self.body_record,
        })
    }

    /// `text` with every credential replaced by `***` (a transport error may quote the URL).
    /// Like the engine's redaction, values under 4 characters are left alone: masking every `a`
    /// would garble the message and hide nothing.
    fn mask(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.credentials {
            if secret.chars().count() >= 4 {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

/// Send the request and judge the provider's answer.
pub async fn execute(rendered: RenderedCi, effects: &Effects) -> Result<Json, StepError> {
    let outgoing = HttpRequest {
        method: rendered.method.clone(),
        url: rendered.url.clone(),
        headers: rendered
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        body: rendered.body.clone(),
        timeout: rendered.timeout,
        follow_redirects: rendered.follow_redirects,
    };
    let result = effects.http.send(outgoing).await;
    judge(&rendered, result)
}

/// The step's result from the provider's answer, or from the failure to get one.
fn judge(
    rendered: &RenderedCi,
    result: Result<HttpResponse, HttpError>,
) -> Result<Json, StepError> {
    let provider = rendered.provider;
    let response = result.map_err(|e| StepError {
        message: format!(
            "{}: {} {}: {}",
            provider.as_str(),
            rendered.method,
            rendered.shown_url,
            rendered.mask(&e.to_string())
        ),
        output: None,
        transient: e.is_transient(),
    })?;
    let status = response.status;
    let output = output(provider, &http::response_output(&response));
    if rendered.expect.iter().any(|p| p.matches(status)) {
        return Ok(output);
    }
    let said = if (300..400).contains(&status) {
        output["headers"]["location"]
            .as_str()
            .map(|to| format!("redirected to {to}; point `base_url` at the final address"))
    } else {
        provider_message(&output["response"])
    };
    let mut message = format!("{}: {status}", provider.as_str());
    if let Some(reason) = reason_phrase(status) {
        message.push(' ');
        message.push_str(reason);
    }
    if let Some(said) = said {
        message.push_str(": ");
        message.push_str(&rendered.mask(&said));
    }
    Err(StepError {
        message,
        output: Some(output),
        transient: status >= 500 || status == 408 || status == 429,
    })
}

/// The step's output from the answer (`{status, headers, body}` as `http` reads it): `status`,
/// `url` (the started build's page, when the provider gives one), `response`, `headers`, and
/// each provider's own fields (null when the answer lacks them, so templates can test them).
fn output(provider: Provider, answer: &Json) -> Json {
    let body = &answer["body"];
    let field = |name: &str| body.get(name).cloned().unwrap_or(Json::Null);
    let mut out = Map::new();
    out.insert("status".into(), answer["status"].clone());
    out.insert("url".into(), Json::Null);
    out.insert("response".into(), body.clone());
    out.insert("headers".into(), answer["headers"].clone());
    let mut extra = |name: &str, value: Json| {
        out.insert(name.to_owned(), value);
    };
    match provider {
        Provider::GithubActions => {
            extra("url", field("html_url"));
            extra("run_id", field("workflow_run_id"));
            extra("run_url", field("run_url"));
            extra("html_url", field("html_url"));
        }
        Provider::Gitlab => {
            extra("url", field("web_url"));
            extra("id", field("id"));
            extra("web_url", field("web_url"));
        }
        Provider::Jenkins => {
            let queue = answer["headers"]
                .get("location")
                .cloned()
                .unwrap_or(Json::Null);
            extra("url", queue.clone());
            extra("queue_url", queue);
        }
        Provider::Buildkite => {
            extra("url", field("web_url"));
            extra("web_url", field("web_url"));
            extra("number", field("number"));
        }
        Provider::Circleci => {
            extra("id", field("id"));
            extra("number", field("number"));
        }
        Provider::GithubDispatch | Provider::Generic => {}
    }
    Json::Object(out)
}

/// What the provider said about a failure, in one line: GitHub `{message, errors}`, GitLab
/// `{message}` (text, or a mapping of fields to messages) or `{error, error_description}`,
/// Buildkite `{message, errors}`, CircleCI `{message}`, Jenkins an HTML page or text.
fn provider_message(body: &Json) -> Option<String> {
    let text = match body {
        Json::Object(map) => {
            let mut text = map
                .get("message")
                .or_else(|| map.get("error"))
                .and_then(flatten);
            if let Some(description) = map.get("error_description").and_then(Json::as_str) {
                text = Some(match text {
                    Some(t) => format!("{t}: {description}"),
                    None => description.to_owned(),
                });
            }
            if let Some(details) = map.get("errors").and_then(error_details) {
                text = Some(match text {
                    Some(t) => format!("{t} ({details})"),
                    None => details,
                });
            }
            text
        }
        Json::String(text) => text_message(text),
        _ => None,
    }?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    })
}

/// A message that may be text, a list, or a mapping of fields to messages, as one line.
fn flatten(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(flatten).collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        Json::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .filter_map(|(k, v)| flatten(v).map(|v| format!("{k}: {v}")))
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        other => Some(other.to_string()),
    }
}

/// GitHub and Buildkite list validation problems in `errors`: text, or `{field, code, message}`.
fn error_details(errors: &Json) -> Option<String> {
    let items = errors.as_array()?;
    let parts: Vec<String> = items
        .iter()
        .filter_map(|item| match item {
            Json::Object(map) => {
                if let Some(message) = map.get("message").and_then(Json::as_str) {
                    return Some(message.to_owned());
                }
                let words: Vec<&str> = ["field", "code"]
                    .iter()
                    .filter_map(|k| map.get(*k).and_then(Json::as_str))
                    .collect();
                if words.is_empty() {
                    flatten(item)
                } else {
                    Some(words.join(" "))
                }
            }
            other => flatten(other),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The first line that says something: an HTML page's `<title>` (Jenkins and proxies answer
/// with pages), else its first line of text; plain text's first non-empty line.
fn text_message(text: &str) -> Option<String> {
    let looks_html = text.trim_start().starts_with('<');
    if looks_html {
        let lower = text.to_ascii_lowercase();
        if let Some(start) = lower.find("<title>") {
            let rest = &text[start + "<title>".len()..];
            let end = rest
                .to_ascii_lowercase()
                .find("</title>")
                .unwrap_or(rest.len());
            let title = decode_entities(rest[..end].trim());
            if !title.is_empty() {
                return Some(title);
            }
        }
        return strip_tags(text)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(decode_entities);
    }
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                // A closed element ends a line of text, so block elements do not run together.
                out.push('\n');
            }
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out
}

fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The standard reason phrase, so errors read `401 Unauthorized`.
fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

// --- pieces the providers share ---

/// Where a provider's API lives and how long a request may take: `base_url` and `timeout`.
#[derive(Debug)]
struct Endpoint {
    base_url: Option<ValueTemplate>,
    timeout: Duration,
}

impl Endpoint {
    fn compile(c: &mut Compiler, fields: &Fields<'_>) -> Option<Self> {
        let base_url = match fields.get("base_url") {
            Some(n) => {
                c.warn_if_host_from_payload(n, "`base_url`");
                let template = c.text(n, "`base_url`")?;
                if let Some(text) = literal(&template)
                    && let Err(problem) = check_base_url(text)
                {
                    c.error(n.span.clone(), problem);
                    return None;
                }
                Some(template)
            }
            None => None,
        };
        let timeout = match fields.get("timeout") {
            Some(n) => c.duration(n, "`timeout`")?,
            None => http::DEFAULT_TIMEOUT,
        };
        Some(Self { base_url, timeout })
    }

    /// The API root without a trailing `/`: `base_url`, else the provider's public service.
    fn base(&self, scope: &Scope<'_>, default: &str) -> Result<String, StepError> {
        let base = match &self.base_url {
            Some(template) => template.render_string(scope)?,
            None => default.to_owned(),
        };
        check_base_url(&base).map_err(StepError::permanent)?;
        Ok(base.trim_end_matches('/').to_owned())
    }
}

fn check_base_url(text: &str) -> Result<(), String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(format!(
            "`base_url` must be an http:// or https:// URL, not '{text}'"
        )),
    }
}

/// The text of a template that has no template syntax, to check it at load time.
fn literal(template: &ValueTemplate) -> Option<&str> {
    match template {
        ValueTemplate::Literal(Json::String(s)) => Some(s),
        _ => None,
    }
}

/// A required text key: compiled as a template (numbers are taken as text).
fn required_text(c: &mut Compiler, fields: &Fields<'_>, key: &str) -> Option<ValueTemplate> {
    c.text(fields.get(key)?, &format!("`{key}`"))
}

fn optional_text(
    c: &mut Compiler,
    fields: &Fields<'_>,
    key: &str,
) -> Option<Option<ValueTemplate>> {
    match fields.get(key) {
        Some(n) => c.text(n, &format!("`{key}`")).map(Some),
        None => Some(None),
    }
}

fn optional_map(
    c: &mut Compiler,
    fields: &Fields<'_>,
    key: &str,
) -> Option<Option<Vec<(String, ValueTemplate)>>> {
    match fields.get(key) {
        Some(n) => c.text_map(n, &format!("`{key}`")).map(Some),
        None => Some(None),
    }
}

/// Render a text value that becomes one URL path segment.
fn path_part(template: &ValueTemplate, scope: &Scope<'_>, key: &str) -> Result<String, StepError> {
    let text = template.render_string(scope)?;
    check_segment(text.trim(), key, &text)?;
    Ok(text.trim().to_owned())
}

/// A path segment must be a name: not empty, and not `.` or `..`, which URL parsers resolve
/// (even percent-encoded) and which would let a payload value climb to another API route.
fn check_segment(segment: &str, key: &str, whole: &str) -> Result<(), StepError> {
    match segment {
        "" => Err(StepError::permanent(format!(
            "`{key}` has an empty part: '{whole}'"
        ))),
        "." | ".." => Err(StepError::permanent(format!(
            "`{key}` has a '{segment}' part: '{whole}'"
        ))),
        _ => Ok(()),
    }
}

/// A mapping whose values keep their types (JSON bodies).
fn render_map(
    entries: &[(String, ValueTemplate)],
    scope: &Scope<'_>,
) -> Result<Map<String, Json>, StepError> {
    let mut out = Map::new();
    for (name, value) in entries {
        out.insert(name.clone(), value.render(scope)?);
    }
    Ok(out)
}

/// A mapping whose values are sent as text (environment variables, form fields); a `null`
/// leaves its entry out, so a template can make one optional.
fn render_text_map(
    entries: &[(String, ValueTemplate)],
    scope: &Scope<'_>,
) -> Result<Vec<(String, String)>, StepError> {
    let mut out = Vec::new();
    for (name, value) in entries {
        match value.render(scope)? {
            Json::Null => {}
            other => out.push((name.clone(), http::scalar_text(&other))),
        }
    }
    Ok(out)
}

/// Percent-encode one URL path segment: everything but RFC 3986 unreserved characters, so a
/// `/` inside a name (a GitLab project path) cannot change the route.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A path of segments separated by `/` (`gh/acme/shop`, `folder/job`), each one a name.
fn segments<'t>(text: &'t str, key: &str) -> Result<Vec<&'t str>, StepError> {
    let parts: Vec<&str> = text.trim().trim_matches('/').split('/').collect();
    for part in &parts {
        check_segment(part.trim(), key, text)?;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("build.yml"), "build.yml");
        assert_eq!(encode_segment("mike/diaspora"), "mike%2Fdiaspora");
        assert_eq!(encode_segment("my job #2"), "my%20job%20%232");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn path_parts_are_names() {
        assert_eq!(
            segments("gh/acme/shop", "project").ok(),
            Some(vec!["gh", "acme", "shop"])
        );
        assert_eq!(
            segments("/folder/job/", "job").ok(),
            Some(vec!["folder", "job"])
        );
        assert!(segments("a//b", "job").is_err());
        assert!(segments("a/../admin", "job").is_err());
        assert!(segments("./a", "job").is_err());
        assert!(segments("", "job").is_err());
        assert!(check_segment("..", "repo", "..").is_err());
        assert!(check_segment("...", "repo", "...").is_ok());
    }

    #[test]
    fn base_urls_must_be_http() {
        assert!(check_base_url("https://ghe.example.test/api/v3").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("https://").is_err());
        assert!(check_base_url("api.github.com").is_err());
    }

    #[test]
    fn provider_messages() {
        // GitHub
        let github = json!({
            "message": "Unexpected inputs provided: [\"sha\"]",
            "documentation_url": "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event",
            "status": "422"
        });
        assert_eq!(
            provider_message(&github).as_deref(),
            Some("Unexpected inputs provided: [\"sha\"]")
        );
        let validation = json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Dispatch", "field": "event_type", "code": "missing_field"}]
        });
        assert_eq!(
            provider_message(&validation).as_deref(),
            Some("Validation Failed (event_type missing_field)")
        );
        // GitLab: text, a mapping of fields, or an OAuth-style error.
        assert_eq!(
            provider_message(&json!({"message": "404 Not Found"})).as_deref(),
            Some("404 Not Found")
        );
        assert_eq!(
            provider_message(&json!({"message": {"base": ["Reference not found"]}})).as_deref(),
            Some("base: Reference not found")
        );
        assert_eq!(
            provider_message(&json!({"error": "ref is missing"})).as_deref(),
            Some("ref is missing")
        );
        assert_eq!(
            provider_message(
                &json!({"error": "invalid_token", "error_description": "Token was revoked"})
            )
            .as_deref(),
            Some("invalid_token: Token was revoked")
        );
        // Buildkite
        assert_eq!(
            provider_message(
                &json!({"message": "Validation failed", "errors": ["Branch can't be blank"]})
            )
            .as_deref(),
            Some("Validation failed (Branch can't be blank)")
        );
        // Jenkins: its pages carry the reason in the title.
        let page = "<html>\n<head>\n<title>Error 403 No valid crumb was included in the request</title>\n</head>\n<body><h2>HTTP ERROR 403</h2></body></html>";
        assert_eq!(
            provider_message(&json!(page)).as_deref(),
            Some("Error 403 No valid crumb was included in the request")
        );
        assert_eq!(
            provider_message(&json!(
                "<html><body><p>Nothing is submitted</p></body></html>"
            ))
            .as_deref(),
            Some("Nothing is submitted")
        );
        assert_eq!(
            provider_message(&json!("\n\nJob not found\nmore detail")).as_deref(),
            Some("Job not found")
        );
        assert_eq!(provider_message(&json!({"other": 1})), None);
        assert_eq!(provider_message(&Json::Null), None);
        let long = "x".repeat(1000);
        assert_eq!(
            provider_message(&json!(long)).map(|m| m.len()),
            Some(MESSAGE_LIMIT + 3)
        );
    }

    fn answer(status: u16, content_type: &str, body: &str) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn refusals_are_permanent_and_outages_transient() {
        let request = RenderedCi::post(
            Provider::Buildkite,
            "https://api.buildkite.test/v2/organizations/o/pipelines/p/builds".to_owned(),
            Duration::from_secs(5),
        )
        .credential_header(
            "Authorization",
            "Bearer bk-secret".to_owned(),
            "Bearer ***",
            "bk-secret".to_owned(),
        );
        let ok = judge(
            &request,
            answer(201, "application/json", r#"{"number": 7}"#),
        );
        assert_eq!(ok.map(|o| o["number"].clone()).ok(), Some(json!(7)));
        for (status, transient) in [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (422, false),
            (408, true),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
        ] {
            let err = judge(
                &request,
                answer(status, "application/json", r#"{"message":"no"}"#),
            )
            .expect_err("not a 2xx");
            assert_eq!(err.transient, transient, "{status}");
            assert!(
                err.message.starts_with(&format!("buildkite: {status} ")),
                "{}",
                err.message
            );
            assert_eq!(
                err.output.as_ref().map(|o| o["status"].clone()),
                Some(json!(status))
            );
        }
        // A redirect is not followed: the error says where it pointed.
        let moved = judge(
            &request,
            Ok(HttpResponse {
                status: 301,
                headers: vec![("location".to_owned(), "https://new.test/v2".to_owned())],
                body: Vec::new(),
            }),
        )
        .expect_err("3xx");
        assert_eq!(
            moved.message,
            "buildkite: 301 Moved Permanently: redirected to https://new.test/v2; point `base_url` at the final address"
        );
        // Transport errors: a connection is worth retrying, a malformed request is not; a
        // credential quoted by the error is masked.
        let refused = judge(
            &request,
            Err(HttpError::Connect(
                "tcp connect error (bk-secret)".to_owned(),
            )),
        )
        .expect_err("no answer");
        assert!(refused.transient);
        assert_eq!(
            refused.message,
            "buildkite: POST https://api.buildkite.test/v2/organizations/o/pipelines/p/builds: could not connect: tcp connect error (***)"
        );
        let invalid = judge(
            &request,
            Err(HttpError::InvalidRequest("bad URL".to_owned())),
        )
        .expect_err("no answer");
        assert!(!invalid.transient);
        // A provider echoing the credential back does not put it in the error.
        let echoed = judge(
            &request,
            answer(401, "text/plain", "token bk-secret is revoked"),
        )
        .expect_err("401");
        assert_eq!(
            echoed.message,
            "buildkite: 401 Unauthorized: token *** is revoked"
        );
    }

    #[test]
    fn records_show_credentials_as_stars() {
        let id = StepIdentity {
            run_id: "0197",
            step_name: "build",
        };
        let request = RenderedCi::post(
            Provider::Jenkins,
            "https://ci.test/job/a/build".to_owned(),
            Duration::from_secs(5),
        )
        .credential_query("token", "build-secret".to_owned())
        .credential_header(
            "Authorization",
            "Basic dTpw".to_owned(),
            "Basic ***",
            "p".to_owned(),
        )
        .idempotency_key(&id);
        assert_eq!(
            request.url,
            "https://ci.test/job/a/build?token=build-secret"
        );
        assert_eq!(
            request.to_json(),
            json!({
                "provider": "jenkins",
                "method": "POST",
                "url": "https://ci.test/job/a/build?token=***",
                "headers": { "Authorization": "Basic ***", "Idempotency-Key": "0197.build" },
                "body": null,
            })
        );
    }

    #[test]
    fn outputs_name_what_each_provider_started() {
        let answer =
            |body: Json, headers: Json| json!({"status": 201, "headers": headers, "body": body});
        let gitlab = output(
            Provider::Gitlab,
            &answer(
                json!({"id": 287, "web_url": "https://gitlab.example.test/mike/diaspora/-/pipelines/287"}),
                json!({}),
            ),
        );
        assert_eq!(gitlab["id"], 287);
        assert_eq!(gitlab["url"], gitlab["web_url"]);
        let jenkins = output(
            Provider::Jenkins,
            &answer(
                Json::Null,
                json!({"location": "https://ci.example.test/queue/item/42/"}),
            ),
        );
        assert_eq!(
            jenkins["queue_url"],
            "https://ci.example.test/queue/item/42/"
        );
        assert_eq!(jenkins["url"], jenkins["queue_url"]);
        let github = output(Provider::GithubActions, &answer(Json::Null, json!({})));
        assert_eq!(github["run_id"], Json::Null);
        assert_eq!(github["url"], Json::Null);
        assert_eq!(github["status"], 201);
    }
}
