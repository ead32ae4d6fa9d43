//! `http`: one outgoing HTTP request with templated parts, an idempotency key, and expected statuses.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value as Json;

use crate::effects::{Effects, HttpRequest, HttpResponse};
use crate::lang::compile::Compiler;
use crate::lang::yaml::{Node, NodeValue};
use crate::run::StatusPattern;
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate};
use crate::verify::Scheme;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const ERROR_BODY_PREVIEW: usize = 300;
/// The keys of an `http` step.
pub const KEYS: &[&str] = &[
    "method",
    "url",
    "headers",
    "query",
    "json",
    "form",
    "body",
    "auth",
    "timeout",
    "expect",
    "follow_redirects",
    "sign",
];
/// The schemes of an `http` step's `sign`.
pub const SIGN_SCHEMES: &[&str] = &[Scheme::StandardWebhooks.as_str()];
/// The keys of `sign.standard_webhooks`.
pub const SIGN_KEYS: &[&str] = &["secret"];
/// The keys of `auth`: exactly one of them.
pub const AUTH_KEYS: &[&str] = &["bearer", "basic"];
/// The keys of `auth.basic`.
pub const BASIC_AUTH_KEYS: &[&str] = &["username", "password"];
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

#[derive(Debug)]
pub struct HttpStep {
    method: String,
    url: ValueTemplate,
    headers: Vec<(String, ValueTemplate)>,
    query: Vec<(String, ValueTemplate)>,
    body: Body,
    auth: Option<Auth>,
    timeout: Duration,
    expect: Vec<StatusPattern>,
    follow_redirects: bool,
    sign: Option<Sign>,
}

/// `sign:`: how the request is signed for a receiver that verifies.
#[derive(Debug)]
enum Sign {
    /// `webhook-id` (the idempotency key, so every attempt keeps it), `webhook-timestamp` and
    /// `webhook-signature`, keyed with a `whsec_` secret.
    StandardWebhooks { secret: ValueTemplate },
}

#[derive(Debug)]
enum Body {
    None,
    Json(ValueTemplate),
    Form(Vec<(String, ValueTemplate)>),
    Raw(ValueTemplate),
}

#[derive(Debug)]
enum Auth {
    Bearer(ValueTemplate),
    Basic {
        username: ValueTemplate,
        password: ValueTemplate,
    },
}

/// The request as rendered, before it is sent.
#[derive(Debug, Clone)]
pub struct RenderedHttp {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The body as the workflow wrote it, for the record: JSON stays JSON.
    pub body_record: Json,
    pub body: Option<Vec<u8>>,
    /// Credentials travel apart from `headers` so records can show the scheme without the secret.
    pub authorization: Option<(String, String)>,
    pub timeout: Duration,
    pub(crate) expect: Vec<StatusPattern>,
    pub follow_redirects: bool,
    /// The Standard Webhooks secret to sign with, apart from `headers` so no record holds it;
    /// the timestamp and signature are made when the request is sent.
    pub signing_secret: Option<String>,
}

impl RenderedHttp {
    pub fn to_json(&self) -> Json {
        let mut headers: serde_json::Map<String, Json> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        if let Some((scheme, _)) = &self.authorization {
            headers.insert(
                "Authorization".into(),
                Json::String(format!("{scheme} ***")),
            );
        }
        serde_json::json!({
            "method": self.method,
            "url": self.url,
            "headers": headers,
            "body": self.body_record,
        })
    }
}

impl HttpStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        Self::compile_as(c, node, "`http`")
    }

    /// Compile under another name in diagnostics (`ci.generic` takes the same keys).
    pub(crate) fn compile_as(c: &mut Compiler, node: &Node, what: &str) -> Option<Self> {
        let fields = c.fields(node, what, KEYS, &["url"])?;
        let bodies: Vec<&str> = ["json", "form", "body"]
            .into_iter()
            .filter(|k| fields.has(k))
            .collect();
        if bodies.len() > 1 {
            let span = fields.key(bodies[1]).map(|k| k.span.clone())?;
            c.error(
                span,
                format!(
                    "{what} takes one body, but has both '{}' and '{}'",
                    bodies[0], bodies[1]
                ),
            );
        }
        let body = if let Some(n) = fields.get("json") {
            Body::Json(c.value(n)?)
        } else if let Some(n) = fields.get("form") {
            Body::Form(c.text_map(n, "`form`")?)
        } else if let Some(n) = fields.get("body") {
            Body::Raw(c.text(n, "`body`")?)
        } else {
            Body::None
        };
        let method = match fields.get("method") {
            Some(n) => {
                let m = c.string(n, "`method`")?.to_ascii_uppercase();
                if !METHODS.contains(&m.as_str()) {
                    c.error(
                        n.span.clone(),
                        format!(
                            "unknown HTTP method '{m}'; expected one of: {}",
                            METHODS.join(", ")
                        ),
                    );
                    return None;
                }
                m
            }
            None if matches!(body, Body::None) => "GET".to_owned(),
            None => "POST".to_owned(),
        };
        let auth = match fields.get("auth") {
            Some(n) => Some(compile_auth(c, n)?),
            None => None,
        };
        let expect = match fields.get("expect") {
            Some(n) => compile_expect(c, n)?,
            None => vec![StatusPattern::Class(2)],
        };
        Some(Self {
            method,
            url: {
                let node = fields.get("url")?;
                c.warn_if_host_from_payload(node, "`url`");
                c.text(node, "`url`")?
            },
            headers: match fields.get("headers") {
                Some(n) => c.text_map(n, "`headers`")?,
                None => Vec::new(),
            },
            query: match fields.get("query") {
                Some(n) => c.text_map(n, "`query`")?,
                None => Vec::new(),
            },
            body,
            auth,
            timeout: match fields.get("timeout") {
                Some(n) => c.duration(n, "`timeout`")?,
                None => DEFAULT_TIMEOUT,
            },
            expect,
            follow_redirects: match fields.get("follow_redirects") {
                Some(n) => c.bool(n, "`follow_redirects`")?,
                None => false,
            },
            sign: match fields.get("sign") {
                Some(n) => Some(compile_sign(c, n)?),
                None => None,
            },
        })
    }

    /// The request as it will be sent, rendered in the order its parts are written: URL and
    /// query, headers, body, signature, authorization.
    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedHttp, StepError> {
        let url = self.render_url(scope)?;
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            headers.push((name.clone(), scalar_text(&value.render(scope)?)));
        }
        let (body_record, body) = self.render_body(scope, &mut headers)?;
        if !has_header(&headers, "idempotency-key") {
            headers.push((
                "Idempotency-Key".into(),
                format!("{}.{}", id.run_id, id.step_name),
            ));
        }
        // The step's span, when traces are on; a workflow's own `traceparent` is kept.
        if let Some(traceparent) = id.traceparent
            && !has_header(&headers, "traceparent")
        {
            headers.push(("traceparent".into(), traceparent.to_owned()));
        }
        let signing_secret = self.render_signing(scope, id, &mut headers)?;
        let authorization = self.render_authorization(scope)?;
        Ok(RenderedHttp {
            method: self.method.clone(),
            url,
            headers,
            body_record,
            body,
            authorization,
            timeout: self.timeout,
            expect: self.expect.clone(),
            follow_redirects: self.follow_redirects,
            signing_secret,
        })
    }

    /// `url` with the `query` parameters appended; a list repeats its name, null leaves it out.
    fn render_url(&self, scope: &Scope<'_>) -> Result<String, StepError> {
        let mut url = self.url.render_string(scope)?;
        if self.query.is_empty() {
            return Ok(url);
        }
        let mut pairs = Vec::new();
        for (name, value) in &self.query {
            match value.render(scope)? {
                Json::Null => {}
                Json::Array(items) => {
                    for item in items {
                        pairs.push((name.clone(), scalar_text(&item)));
                    }
                }
                other => pairs.push((name.clone(), scalar_text(&other))),
            }
        }
        let encoded = serde_urlencoded::to_string(&pairs)
            .map_err(|e| StepError::permanent(format!("cannot encode `query`: {e}")))?;
        if !encoded.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&encoded);
        }
        Ok(url)
    }

    /// The body as recorded and as sent, with the content type it implies unless `headers`
    /// names one.
    fn render_body(
        &self,
        scope: &Scope<'_>,
        headers: &mut Vec<(String, String)>,
    ) -> Result<(Json, Option<Vec<u8>>), StepError> {
        Ok(match &self.body {
            Body::None => (Json::Null, None),
            Body::Json(template) => {
                let value = template.render(scope)?;
                if !has_header(headers, "content-type") {
                    headers.push(("Content-Type".into(), "application/json".into()));
                }
                let bytes = serde_json::to_vec(&value)
                    .map_err(|e| StepError::permanent(format!("cannot encode `json`: {e}")))?;
                (value, Some(bytes))
            }
            Body::Form(fields) => {
                let mut pairs = Vec::new();
                for (name, value) in fields {
                    pairs.push((name.clone(), scalar_text(&value.render(scope)?)));
                }
                if !has_header(headers, "content-type") {
                    headers.push((
                        "Content-Type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ));
                }
                let encoded = serde_urlencoded::to_string(&pairs)
                    .map_err(|e| StepError::permanent(format!("cannot encode `form`: {e}")))?;
                let record: serde_json::Map<String, Json> = pairs
                    .into_iter()
                    .map(|(k, v)| (k, Json::String(v)))
                    .collect();
                (Json::Object(record), Some(encoded.into_bytes()))
            }
            Body::Raw(template) => {
                let text = template.render_string(scope)?;
                if !has_header(headers, "content-type") {
                    headers.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
                }
                (Json::String(text.clone()), Some(text.into_bytes()))
            }
        })
    }

    /// The `sign` secret, checked; its `webhook-id` header replaces any the step set.
    fn render_signing(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
        headers: &mut Vec<(String, String)>,
    ) -> Result<Option<String>, StepError> {
        // A match, not `let ... else`: a new scheme must say how it signs.
        let secret = match &self.sign {
            None => return Ok(None),
            Some(Sign::StandardWebhooks { secret }) => secret,
        };
        let secret = secret.render_string(scope)?;
        crate::verify::standard_webhooks_key(&secret).map_err(|_| {
            StepError::permanent(
                "`sign.standard_webhooks.secret` is not a base64 secret (whsec_...)",
            )
        })?;
        // The receiver deduplicates on it: the same for every attempt of this step.
        let message_id = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("{}.{}", id.run_id, id.step_name));
        // Ours alone: a second timestamp or signature would make the receiver refuse.
        headers.retain(|(k, _)| {
            !["webhook-id", "webhook-timestamp", "webhook-signature"]
                .iter()
                .any(|name| k.eq_ignore_ascii_case(name))
        });
        headers.push(("webhook-id".into(), message_id));
        Ok(Some(secret))
    }

    /// The `Authorization` scheme and credentials of `auth`.
    fn render_authorization(
        &self,
        scope: &Scope<'_>,
    ) -> Result<Option<(String, String)>, StepError> {
        Ok(match &self.auth {
            None => None,
            Some(Auth::Bearer(token)) => Some(("Bearer".to_owned(), token.render_string(scope)?)),
            Some(Auth::Basic { username, password }) => {
                let pair = format!(
                    "{}:{}",
                    username.render_string(scope)?,
                    password.render_string(scope)?
                );
                Some((
                    "Basic".to_owned(),
                    base64::engine::general_purpose::STANDARD.encode(pair),
                ))
            }
        })
    }
}

/// Whether `headers` has one named `name`, in any case.
fn has_header(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

fn compile_sign(c: &mut Compiler, node: &Node) -> Option<Sign> {
    let fields = c.fields(node, "`sign`", SIGN_SCHEMES, &[])?;
    let Some(scheme) = fields.get(Scheme::StandardWebhooks.as_str()) else {
        c.error(
            node.span.clone(),
            format!("`sign` names one scheme: {}", SIGN_SCHEMES.join(", ")),
        );
        return None;
    };
    let keys = c.fields(scheme, "`sign.standard_webhooks`", SIGN_KEYS, &["secret"])?;
    let secret_node = keys.get("secret")?;
    let secret = c.text(secret_node, "`sign.standard_webhooks.secret`")?;
    if let ValueTemplate::Literal(Json::String(text)) = &secret
        && crate::verify::standard_webhooks_key(text).is_err()
    {
        c.error(
            secret_node.span.clone(),
            "`sign.standard_webhooks.secret` is not a base64 secret (whsec_...)",
        );
        return None;
    }
    Some(Sign::StandardWebhooks { secret })
}

fn compile_auth(c: &mut Compiler, node: &Node) -> Option<Auth> {
    let fields = c.fields(node, "`auth`", AUTH_KEYS, &[])?;
    match (fields.get("bearer"), fields.get("basic")) {
        (Some(token), None) => Some(Auth::Bearer(c.text(token, "`bearer`")?)),
        (None, Some(basic)) => {
            let creds = c.fields(basic, "`basic`", BASIC_AUTH_KEYS, &["username", "password"])?;
            Some(Auth::Basic {
                username: c.text(creds.get("username")?, "`username`")?,
                password: c.text(creds.get("password")?, "`password`")?,
            })
        }
        _ => {
            c.error(
                node.span.clone(),
                "`auth` takes exactly one of `bearer` or `basic`",
            );
            None
        }
    }
}

fn compile_expect(c: &mut Compiler, node: &Node) -> Option<Vec<StatusPattern>> {
    let items: Vec<&Node> = match &node.value {
        NodeValue::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        let text = c.string(item, "`expect`")?;
        match StatusPattern::parse(&text) {
            Some(p) => out.push(p),
            None => {
                c.error(
                    item.span.clone(),
                    format!("'{text}' is not an HTTP status; write a code such as 204 or a class such as 2xx"),
                );
                return None;
            }
        }
    }
    Some(out)
}

pub(crate) fn scalar_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// Send the request and judge the answer against `expect`.
pub async fn execute(request: RenderedHttp, effects: &Effects) -> Result<Json, StepError> {
    let mut headers = request.headers.clone();
    if let Some((scheme, credentials)) = &request.authorization {
        headers.push(("Authorization".into(), format!("{scheme} {credentials}")));
    }
    if let Some(secret) = &request.signing_secret {
        // Signed when sent: each attempt carries a fresh timestamp, within the receiver's window.
        let message_id = headers
            .iter()
            .find(|(k, _)| k == "webhook-id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let timestamp = effects.clock.now().timestamp();
        let body = request.body.as_deref().unwrap_or_default();
        let signature =
            crate::verify::standard_webhooks_signature(secret, &message_id, timestamp, body)
                .map_err(|e| StepError::permanent(format!("cannot sign the request: {e}")))?;
        headers.push(("webhook-timestamp".into(), timestamp.to_string()));
        headers.push(("webhook-signature".into(), signature));
    }
    let outgoing = HttpRequest {
        method: request.method.clone(),
        url: request.url.clone(),
        headers,
        body: request.body.clone(),
        timeout: request.timeout,
        follow_redirects: request.follow_redirects,
    };
    let response = effects.http.send(outgoing).await.map_err(|e| StepError {
        message: format!("{} {}: {e}", request.method, request.url),
        output: None,
        transient: e.is_transient(),
    })?;
    let output = response_output(&response);
    if request.expect.iter().any(|p| p.matches(response.status)) {
        return Ok(output);
    }
    let preview: String = String::from_utf8_lossy(&response.body)
        .chars()
        .take(ERROR_BODY_PREVIEW)
        .collect();
    let status = response.status;
    Err(StepError {
        message: format!(
            "{} {} answered {status}{}{}",
            request.method,
            request.url,
            if preview.is_empty() { "" } else { ": " },
            preview.trim()
        ),
        output: Some(output),
        transient: status >= 500 || status == 408 || status == 429,
    })
}

pub(crate) fn response_output(response: &HttpResponse) -> Json {
    let mut headers = serde_json::Map::new();
    for (name, value) in &response.headers {
        headers
            .entry(name.clone())
            .and_modify(|existing| {
                if let Json::String(s) = existing {
                    s.push_str(", ");
                    s.push_str(value);
                }
            })
            .or_insert_with(|| Json::String(value.clone()));
    }
    let is_json = response.headers.iter().any(|(k, v)| {
        k == "content-type" && {
            let media = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            media == "application/json" || media.ends_with("+json")
        }
    });
    let body = if response.body.is_empty() {
        Json::Null
    } else if is_json {
        serde_json::from_slice(&response.body)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&response.body).into_owned()))
    } else {
        Json::String(String::from_utf8_lossy(&response.body).into_owned())
    };
    serde_json::json!({ "status": response.status, "headers": headers, "body": body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patterns() {
        assert!(StatusPattern::parse("2xx").unwrap().matches(204));
        assert!(!StatusPattern::parse("2xx").unwrap().matches(301));
        assert!(StatusPattern::parse("404").unwrap().matches(404));
        assert_eq!(StatusPattern::parse("700"), None);
        assert_eq!(StatusPattern::parse("9xx"), None);
    }
}
