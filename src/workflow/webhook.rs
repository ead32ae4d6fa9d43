//! The webhook trigger (`on.webhook`): its path and methods, body limit, answer mode, rate
//! limit, dedupe key, the signature or token `verify` checks, how XML bodies are read and the
//! schema bodies must match, compiled from YAML.

use super::*;
use crate::lang::paths::Binding;

pub const WEBHOOK_KEYS: &[&str] = &[
    "path",
    "methods",
    "respond",
    "max_body",
    "dedupe",
    "verify",
    "rate_limit",
    "schema",
    "xml",
];

/// The keys of a `rate_limit:` mapping.
pub const RATE_LIMIT_KEYS: &[&str] = &["rate", "burst", "per"];
pub use crate::verify::VERIFY_PRESETS;

pub(super) const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

#[derive(Debug, Clone)]
pub struct WebhookTrigger {
    pub path: RoutePattern,
    pub methods: Vec<String>,
    pub respond: RespondMode,
    pub max_body: usize,
    pub dedupe: Option<Dedupe>,
    pub verify: Option<Verify>,
    pub rate_limit: Option<RateLimit>,
    /// `schema:`: a body that does not match is refused (422) before it is stored.
    pub schema: Option<BodySchema>,
    /// `xml:`: how an XML body becomes `event.body`.
    pub xml: XmlMode,
    pub span: Span,
}

/// How an XML body becomes `event.body`: as written (`@attributes`, `#text`, all text), or
/// with Rails-style `type` and `nil` attributes (Recurly) read as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XmlMode {
    #[default]
    Plain,
    Typed,
}

impl XmlMode {
    /// The names `xml:` takes, in the order the docs list them.
    pub const NAMES: &[&str] = &["plain", "typed"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Typed => "typed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "plain" => Some(Self::Plain),
            "typed" => Some(Self::Typed),
            _ => None,
        }
    }
}

/// `rate_limit:`: a token bucket refilled at `per_second`, holding at most `burst` requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
    pub per: RateScope,
}

/// What one bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// Every request on the route.
    Route,
    /// The requests of each source address on the route.
    Source,
}

/// `verify:`: signature presets a request must all pass, on its raw bytes, before it is parsed.
#[derive(Debug, Clone)]
pub struct Verify {
    pub presets: Vec<VerifyPreset>,
    /// `ip_allow`: the client address must be in one of these blocks (checked before anything
    /// else, even the rate limit).
    pub ip_allow: Option<Vec<crate::net::Cidr>>,
    /// The `verify` node as canonical JSON: workflows sharing a path must have the same one,
    /// since one request is checked once for all of them.
    pub text: String,
}

/// One preset with its secret templates (several while a secret is rotated; any may match).
#[derive(Debug, Clone)]
pub struct VerifyPreset {
    pub preset: crate::verify::Preset,
    pub secrets: Vec<ValueTemplate>,
    /// `twilio`: the public URL the sender calls, a template over `secrets` like the secret.
    pub url: Option<ValueTemplate>,
    /// `hmac` with `content`: the signed text, a template over `body`, `timestamp` and `id`.
    pub content: Option<ValueTemplate>,
    /// `basic`: the user name, a template over `secrets` like the password.
    pub username: Option<ValueTemplate>,
}

impl VerifyPreset {
    /// An `hmac` preset's `content`, rendered with the request's body, timestamp and id only:
    /// `None` when the preset has none. The server (checking) and `hookflow send` (signing)
    /// render it alike.
    pub fn render_content(
        &self,
        templates: &TemplateSet,
        inputs: verify::ContentInputs<'_>,
    ) -> Option<Result<String, crate::template::RenderError>> {
        let template = self.content.as_ref()?;
        let context = crate::template::to_template_value(&serde_json::json!({
            "body": inputs.body,
            "timestamp": inputs.timestamp,
            "id": inputs.id,
        }));
        let scope = crate::template::Scope {
            templates,
            context: &context,
            event_body: &serde_json::Value::Null,
        };
        Some(template.render_string(&scope))
    }
}

/// `dedupe:`: a delivery whose key was seen within `window` starts no run.
#[derive(Debug, Clone)]
pub struct Dedupe {
    pub key: ValueTemplate,
    pub window: std::time::Duration,
}

pub const DEFAULT_DEDUPE_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 86400);

/// The keys of a `dedupe:` mapping.
pub const DEDUPE_KEYS: &[&str] = &["key", "window"];

/// What a dedupe key template reads: the event's fields, also at the top level.
pub const DEDUPE_LOCALS: &[&str] = &[
    "headers", "body", "query", "params", "method", "path", "raw",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespondMode {
    /// Answer 202 once the event is stored.
    Async,
    /// Wait for the run (bounded) and answer with its `respond` step.
    Sync,
}

pub(super) fn compile_webhook(c: &mut Compiler, webhook: &Node) -> Option<WebhookTrigger> {
    let w = c.fields(webhook, "`on.webhook`", WEBHOOK_KEYS, &["path"])?;
    let path_node = w.get("path")?;
    // Every key is checked even when the path is wrong, so all problems show in one pass.
    let path = c
        .string(path_node, "`path`")
        .and_then(|text| match RoutePattern::parse(&text) {
            Ok(p) => Some(p),
            Err(message) => {
                c.error(path_node.span.clone(), message);
                None
            }
        });
    let errors_before = c.diagnostics.error_count();
    let methods = match w.get("methods") {
        Some(n) => {
            let mut methods = Vec::new();
            for (m, span) in c.string_list(n, "`methods`")? {
                let upper = m.to_ascii_uppercase();
                if HTTP_METHODS.contains(&upper.as_str()) {
                    methods.push(upper);
                } else {
                    c.error(
                        span,
                        format!(
                            "unknown method '{m}'; expected one of: {}",
                            HTTP_METHODS.join(", ")
                        ),
                    );
                }
            }
            if methods.is_empty() && c.diagnostics.error_count() == errors_before {
                c.error(
                    n.span.clone(),
                    "`methods` is empty; a webhook needs at least one method",
                );
            }
            methods
        }
        None => vec!["POST".to_owned()],
    };
    let respond = match w.get("respond") {
        None => Some(RespondMode::Async),
        Some(n) => match c.string(n, "`respond`").as_deref() {
            Some("async") => Some(RespondMode::Async),
            Some("sync") => Some(RespondMode::Sync),
            Some(other) => {
                c.error(
                    n.span.clone(),
                    format!("`respond` is 'async' or 'sync', not '{other}'"),
                );
                None
            }
            None => None,
        },
    };
    let max_body = match w.get("max_body") {
        Some(n) => c.size(n, "`max_body`"),
        None => Some(DEFAULT_MAX_BODY),
    };
    let verify = match w.get("verify") {
        Some(n) => Some(compile_verify(c, n)?),
        None => None,
    };
    let dedupe = match w.get("dedupe") {
        Some(n) => Some(compile_dedupe(c, n)?),
        None => verify.as_ref().and_then(|v| default_dedupe(c, v)),
    };
    let rate_limit = match w.get("rate_limit") {
        Some(n) => Some(compile_rate_limit(c, n)?),
        None => None,
    };
    // Both are compiled before either can end the trigger, so both are reported.
    let schema = w.get("schema").map(|n| compile_body_schema(c, n));
    let xml = match w.get("xml") {
        Some(n) => compile_xml_mode(c, n),
        None => Some(XmlMode::Plain),
    };
    Some(WebhookTrigger {
        rate_limit,
        schema: schema.map_or(Some(None), |s| s.map(Some))?,
        xml: xml?,
        path: path?,
        respond: respond?,
        max_body: max_body?,
        dedupe,
        verify,
        methods,
        span: path_node.span.clone(),
    })
}

/// `xml: plain | typed`.
fn compile_xml_mode(c: &mut Compiler, node: &Node) -> Option<XmlMode> {
    let text = c.string(node, "`xml`")?;
    let mode = XmlMode::parse(&text);
    if mode.is_none() {
        c.push(
            Diagnostic::error(node.span.clone(), format!("unknown `xml` mode '{text}'"))
                .with_hint(format!("one of: {}", XmlMode::NAMES.join(", "))),
        );
    }
    mode
}

/// `50/s`, or `{rate: 50/s, burst: 100, per: route | source}`.
pub(super) fn compile_rate_limit(c: &mut Compiler, node: &Node) -> Option<RateLimit> {
    let (rate_node, burst_node, per) = match node.as_map() {
        Some(_) => {
            let fields = c.fields(node, "`rate_limit`", RATE_LIMIT_KEYS, &["rate"])?;
            let per = match fields.get("per") {
                None => RateScope::Route,
                Some(n) => match c.string(n, "`per`")?.as_str() {
                    "route" => RateScope::Route,
                    "source" => RateScope::Source,
                    other => {
                        c.error(
                            n.span.clone(),
                            format!("`per` is 'route' or 'source', not '{other}'"),
                        );
                        return None;
                    }
                },
            };
            (fields.get("rate")?, fields.get("burst"), per)
        }
        None => (node, None, RateScope::Route),
    };
    let per_second = c.rate(rate_node, "`rate`")?;
    let burst = match burst_node {
        Some(n) => c.burst(n)?,
        // By default a second's worth of requests may arrive at once.
        None => per_second.ceil().max(1.0) as u32,
    };
    Some(RateLimit {
        per_second,
        burst,
        per,
    })
}

pub(super) fn compile_dedupe(c: &mut Compiler, node: &Node) -> Option<Dedupe> {
    let (key_node, window) = match node.as_map() {
        Some(_) => {
            let fields = c.fields(node, "`dedupe`", DEDUPE_KEYS, &["key"])?;
            let window = match fields.get("window") {
                Some(n) => c.duration(n, "`window`")?,
                None => DEFAULT_DEDUPE_WINDOW,
            };
            (fields.get("key")?, window)
        }
        None => (node, DEFAULT_DEDUPE_WINDOW),
    };
    // The key is computed before any step runs: only the event is there to read.
    let key = event_key(c, |c| c.text(key_node, "`dedupe` key"));
    Some(Dedupe { key: key?, window })
}

/// Compiles a key computed from the event alone, whose fields it also reads by their own names
/// (`body` is `event.body`): a dedupe or a concurrency key.
pub(super) fn event_key<T>(c: &mut Compiler, compile: impl FnOnce(&mut Compiler) -> T) -> T {
    let locals = DEDUPE_LOCALS.iter().map(|s| (*s).to_owned()).collect();
    let saved_locals = std::mem::replace(&mut c.scope.locals, locals);
    let bindings = BTreeMap::from([("body".to_owned(), Binding::Body)]);
    let saved_bindings = std::mem::replace(&mut c.scope.bindings, bindings);
    let compiled = compile(c);
    c.scope.locals = saved_locals;
    c.scope.bindings = saved_bindings;
    compiled
}

/// The `verify` entry that checks the client address rather than a signature.
pub const VERIFY_IP_ALLOW: &str = "ip_allow";

pub(super) fn compile_verify(c: &mut Compiler, node: &Node) -> Option<Verify> {
    let entries: Vec<&str> = VERIFY_PRESETS
        .iter()
        .copied()
        .chain([VERIFY_IP_ALLOW])
        .collect();
    let fields = c.fields(node, "`verify`", &entries, &[])?;
    if node.as_map()?.is_empty() {
        c.push(
            Diagnostic::error(
                node.span.clone(),
                "`verify` is empty; name at least one preset",
            )
            .with_hint(format!("one of: {}", entries.join(", "))),
        );
        return None;
    }
    let mut presets = Vec::new();
    let mut ok = true;
    let ip_allow = match fields.get(VERIFY_IP_ALLOW) {
        Some(n) => match compile_ip_allow(c, n) {
            Some(blocks) => Some(blocks),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    for scheme in verify::Scheme::ALL {
        let Some(preset_node) = fields.get(scheme.as_str()) else {
            continue;
        };
        match compile_verify_preset(c, preset_node, scheme) {
            Some(p) => presets.push(p),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    Some(Verify {
        presets,
        ip_allow,
        text: serde_json::to_string(&node.to_json()).unwrap_or_default(),
    })
}

/// `ip_allow`: a list of CIDR blocks or addresses, at least one.
pub(super) fn compile_ip_allow(c: &mut Compiler, node: &Node) -> Option<Vec<crate::net::Cidr>> {
    let entries = c.string_list(node, "`verify.ip_allow`")?;
    if entries.is_empty() {
        c.error(
            node.span.clone(),
            "`verify.ip_allow` is an empty list; it would refuse every request",
        );
        return None;
    }
    let mut blocks = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (text, span) in entries {
        match text.parse::<crate::net::Cidr>() {
            Ok(block) => blocks.push(block),
            Err(err) => {
                c.error(span, format!("`verify.ip_allow`: {err}"));
                ok = false;
            }
        }
    }
    ok.then_some(blocks)
}

pub(super) fn compile_verify_preset(
    c: &mut Compiler,
    node: &Node,
    scheme: verify::Scheme,
) -> Option<VerifyPreset> {
    let what = format!("`verify.{}`", scheme.as_str());
    let keys = scheme.keys();
    let secret_key = keys[0];
    let fields = c.fields(node, &what, keys, scheme.required_keys())?;
    let mut preset = verify::Preset::new(scheme);
    let mut ok = true;
    if let Some(n) = fields.get("tolerance") {
        match c.duration(n, "`tolerance`") {
            Some(d) => preset.tolerance_secs = d.as_secs(),
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("legacy_sha1") {
        match c.bool(n, "`legacy_sha1`") {
            Some(b) => preset.legacy_sha1 = b,
            None => ok = false,
        }
    }
    if scheme == verify::Scheme::Token {
        match compile_token_source(c, &fields, &what) {
            Some(source) => preset.token = Some(source),
            None => ok = false,
        }
    }
    let mut content = None;
    if scheme == verify::Scheme::Hmac {
        match compile_hmac(c, &fields, &what) {
            Some((spec, template)) => {
                preset.hmac = Some(spec);
                content = template;
            }
            None => ok = false,
        }
    }
    let secret_node = fields.get(secret_key)?;
    let what = format!("{what} `{secret_key}`");
    // Rendered with `secrets` only: nothing of the request exists when it is checked.
    let saved = std::mem::take(&mut c.scope.locals);
    let secrets: Vec<Option<ValueTemplate>> = match secret_node.as_seq() {
        Some([]) => {
            c.error(
                secret_node.span.clone(),
                format!("{what} is an empty list; give at least one"),
            );
            vec![None]
        }
        Some(items) => items.iter().map(|i| c.text(i, &what)).collect(),
        None => vec![c.text(secret_node, &what)],
    };
    let url = fields
        .get("url")
        .map(|n| c.text(n, &format!("`verify.{}` `url`", scheme.as_str())));
    let username = fields
        .get("username")
        .map(|n| c.text(n, &format!("`verify.{}` `username`", scheme.as_str())));
    c.scope.locals = saved;
    let url = match url {
        Some(Some(t)) => Some(t),
        Some(None) => return None,
        None => None,
    };
    let username = match username {
        Some(Some(t)) => Some(t),
        Some(None) => return None,
        None => None,
    };
    let secrets: Option<Vec<ValueTemplate>> = secrets.into_iter().collect();
    let secrets = secrets?;
    ok.then_some(VerifyPreset {
        preset,
        secrets,
        url,
        content,
        username,
    })
}

/// `token`'s `header` or `query`: exactly one says where the token is sent.
pub(super) fn compile_token_source(
    c: &mut Compiler,
    fields: &compile::Fields<'_>,
    what: &str,
) -> Option<verify::TokenSource> {
    match (fields.get("header"), fields.get("query")) {
        (Some(n), None) => {
            let name = c
                .string(n, &format!("{what} `header`"))?
                .to_ascii_lowercase();
            if ::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                c.error(
                    n.span.clone(),
                    format!("{what} `header` is not a valid header name: {name:?}"),
                );
                return None;
            }
            Some(verify::TokenSource::Header(name))
        }
        (None, Some(n)) => {
            let name = c.string(n, &format!("{what} `query`"))?;
            if name.is_empty() {
                c.error(n.span.clone(), format!("{what} `query` is empty"));
                return None;
            }
            Some(verify::TokenSource::Query(name))
        }
        (Some(n), Some(_)) => {
            c.error(
                n.span.clone(),
                format!("{what} takes `header` or `query`, not both"),
            );
            None
        }
        (None, None) => {
            c.error(
                fields.span.clone(),
                format!("{what} needs `header` or `query`: where the token is sent"),
            );
            None
        }
    }
}

/// What a generic `hmac` preset's `content` template reads.
pub const HMAC_CONTENT_LOCALS: &[&str] = &["body", "timestamp", "id"];

/// The settings of a generic `hmac` preset, and its `content` template when one is given.
pub(super) fn compile_hmac(
    c: &mut Compiler,
    fields: &compile::Fields<'_>,
    what: &str,
) -> Option<(verify::HmacSpec, Option<ValueTemplate>)> {
    let mut ok = true;
    // Header names are checked here so a typo fails `validate`, not every request.
    let header_name = |c: &mut Compiler, key: &str| -> Option<Option<String>> {
        let Some(node) = fields.get(key) else {
            return Some(None);
        };
        let name = c
            .string(node, &format!("{what} `{key}`"))?
            .to_ascii_lowercase();
        if ::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.error(
                node.span.clone(),
                format!("{what} `{key}` is not a valid header name: {name:?}"),
            );
            return None;
        }
        Some(Some(name))
    };
    let header = header_name(c, "header");
    let timestamp_header = header_name(c, "timestamp_header");
    let id_header = header_name(c, "id_header");
    let (Some(Some(header)), Some(timestamp_header), Some(id_header)) =
        (header, timestamp_header, id_header)
    else {
        return None;
    };
    let mut spec = verify::HmacSpec::new(header);
    spec.timestamp_header = timestamp_header;
    spec.id_header = id_header;
    if let (Some(n), None) = (fields.get("tolerance"), &spec.timestamp_header) {
        c.error(
            n.span.clone(),
            format!("{what} `tolerance` needs `timestamp_header`: nothing else is dated"),
        );
        ok = false;
    }
    if let Some(n) = fields.get("algorithm") {
        match c
            .string(n, "`algorithm`")
            .map(|name| (verify::Algorithm::from_name(&name), name))
        {
            Some((Some(a), _)) => spec.algorithm = a,
            Some((None, name)) => {
                c.push(
                    Diagnostic::error(n.span.clone(), format!("unknown `algorithm` {name:?}"))
                        .with_hint(format!("one of: {}", verify::Algorithm::NAMES.join(", "))),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("encoding") {
        match c
            .string(n, "`encoding`")
            .map(|name| (verify::Encoding::from_name(&name), name))
        {
            Some((Some(e), _)) => spec.encoding = e,
            Some((None, name)) => {
                c.push(
                    Diagnostic::error(n.span.clone(), format!("unknown `encoding` {name:?}"))
                        .with_hint(format!("one of: {}", verify::Encoding::NAMES.join(", "))),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("prefix") {
        match c.string(n, "`prefix`") {
            Some(p) => spec.prefix = p,
            None => ok = false,
        }
    }
    let content = match fields.get("content") {
        Some(n) => {
            // Only the request's body, timestamp and id exist when the signature is checked.
            let saved = std::mem::replace(
                &mut c.scope.locals,
                HMAC_CONTENT_LOCALS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            );
            let template = c.text(n, &format!("{what} `content`"));
            c.scope.locals = saved;
            spec.custom_content = true;
            Some(template?)
        }
        None => None,
    };
    ok.then_some((spec, content))
}

/// With one provider named, its delivery id is the natural dedupe key: a sender's retry of the
/// same delivery then starts no second run.
pub(super) fn default_dedupe(c: &mut Compiler, verify: &Verify) -> Option<Dedupe> {
    let [only] = verify.presets.as_slice() else {
        return None;
    };
    let source = match only.preset.scheme {
        verify::Scheme::StandardWebhooks => {
            "{{ headers['webhook-id'] | default(headers['svix-id'] | default('')) }}".to_owned()
        }
        verify::Scheme::Stripe => "{{ body.id | default('') }}".to_owned(),
        scheme => format!(
            "{{{{ headers['{}'] | default('') }}}}",
            scheme.delivery_header()?
        ),
    };
    let key = ValueTemplate::compile_str(&mut c.templates, &source).ok()?;
    Some(Dedupe {
        key,
        window: DEFAULT_DEDUPE_WINDOW,
    })
}
