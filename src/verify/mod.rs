//! Webhook signature schemes (`on.webhook.verify`): pure checks over the request headers, the raw
//! body bytes, the current time and the already rendered secrets. Nothing here reads the
//! environment or the clock, so every published test vector can be replayed exactly.
//!
//! Every comparison of a secret-derived value is constant time and over equal lengths: HMACs go
//! through `Mac::verify_slice`, tokens through fixed-size digests compared without early exit.

use ::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The preset names of `on.webhook.verify`, in the order the docs list them.
pub const VERIFY_PRESETS: &[&str] = &[
    "github",
    "gitlab",
    "stripe",
    "shopify",
    "slack",
    "standard_webhooks",
    "bitbucket",
    "gitea",
    "forgejo",
    "twilio",
    "hmac",
    "basic",
    "token",
];

/// The replay window of the schemes that sign a timestamp, when the workflow sets none.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Which sender's scheme a preset checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Github,
    Gitlab,
    Stripe,
    Shopify,
    Slack,
    StandardWebhooks,
    Bitbucket,
    Gitea,
    Forgejo,
    Twilio,
    Hmac,
    Basic,
    Token,
}

impl Scheme {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "github" => Self::Github,
            "gitlab" => Self::Gitlab,
            "stripe" => Self::Stripe,
            "shopify" => Self::Shopify,
            "slack" => Self::Slack,
            "standard_webhooks" => Self::StandardWebhooks,
            "bitbucket" => Self::Bitbucket,
            "gitea" => Self::Gitea,
            "forgejo" => Self::Forgejo,
            "twilio" => Self::Twilio,
            "hmac" => Self::Hmac,
            "basic" => Self::Basic,
            "token" => Self::Token,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Stripe => "stripe",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::StandardWebhooks => "standard_webhooks",
            Self::Bitbucket => "bitbucket",
            Self::Gitea => "gitea",
            Self::Forgejo => "forgejo",
            Self::Twilio => "twilio",
            Self::Hmac => "hmac",
            Self::Basic => "basic",
            Self::Token => "token",
        }
    }

    /// The keys its YAML mapping accepts; the first is the secret (a template or a list of them).
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Self::Github => &["secret", "legacy_sha1"],
            Self::Gitlab => &["token"],
            Self::Shopify | Self::Bitbucket | Self::Gitea | Self::Forgejo => &["secret"],
            Self::Stripe | Self::Slack | Self::StandardWebhooks => &["secret", "tolerance"],
            Self::Twilio => &["secret", "url"],
            Self::Hmac => &[
                "secret",
                "header",
                "algorithm",
                "encoding",
                "prefix",
                "content",
                "timestamp_header",
                "tolerance",
                "id_header",
            ],
            // The password first: it is the secret, and may be a list while it is rotated.
            Self::Basic => &["password", "username"],
            Self::Token => &["value", "header", "query"],
        }
    }

    /// The keys that must be given: the secret, and what the scheme cannot work out alone.
    pub fn required_keys(self) -> &'static [&'static str] {
        match self {
            Self::Gitlab => &["token"],
            // Behind a proxy the server cannot know the public URL Twilio signs.
            Self::Twilio => &["secret", "url"],
            Self::Hmac => &["secret", "header"],
            Self::Basic => &["password", "username"],
            // `header` or `query`: exactly one, checked when the workflow is compiled.
            Self::Token => &["value"],
            _ => &["secret"],
        }
    }

    /// The header that names one delivery, kept across the sender's retries (the default
    /// dedupe key); Stripe's is the body's `id`, which is not a header.
    pub fn delivery_header(self) -> Option<&'static str> {
        match self {
            Self::Github => Some("x-github-delivery"),
            Self::Gitlab => Some("x-gitlab-event-uuid"),
            Self::Shopify => Some("x-shopify-webhook-id"),
            Self::StandardWebhooks => Some("webhook-id"),
            Self::Gitea => Some("x-gitea-delivery"),
            Self::Forgejo => Some("x-forgejo-delivery"),
            // Bitbucket's `X-Request-UUID` is not confirmed to stay the same across its retries.
            // Twilio sends no delivery id in a header that is documented to survive retries.
            // `hmac` names its id header in the workflow, not here.
            Self::Stripe
            | Self::Slack
            | Self::Bitbucket
            | Self::Twilio
            | Self::Hmac
            | Self::Basic
            | Self::Token => None,
        }
    }
}

/// The digest of a generic `hmac` preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub const NAMES: &'static [&'static str] = &["sha1", "sha256", "sha512"];

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "sha1" => Self::Sha1,
            "sha256" => Self::Sha256,
            "sha512" => Self::Sha512,
            _ => return None,
        })
    }
}

/// How a generic `hmac` preset's header spells the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    pub const NAMES: &'static [&'static str] = &["hex", "base64"];

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "hex" => Self::Hex,
            "base64" => Self::Base64,
            _ => return None,
        })
    }
}

/// A generic `hmac` preset: which header carries which MAC of what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacSpec {
    /// Lower-case header names, checked valid when the workflow is compiled.
    pub header: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Text before the encoded MAC in the header (`sha256=`); empty for none.
    pub prefix: String,
    pub timestamp_header: Option<String>,
    pub id_header: Option<String>,
    /// Whether `content` was given: without it the raw body bytes are signed as they are, so a
    /// body that is not UTF-8 still verifies.
    pub custom_content: bool,
}

impl HmacSpec {
    pub fn new(header: String) -> Self {
        Self {
            header,
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: String::new(),
            timestamp_header: None,
            id_header: None,
            custom_content: false,
        }
    }
}

/// What a generic `hmac` preset's `content` template reads.
#[derive(Debug, Clone, Copy)]
pub struct ContentInputs<'a> {
    /// The body as text (invalid UTF-8 replaced).
    pub body: &'a str,
    /// The timestamp header as sent, or empty without `timestamp_header`.
    pub timestamp: &'a str,
    /// The id header as sent, or empty without `id_header`.
    pub id: &'a str,
}

/// Renders a generic `hmac` preset's `content`; `None` when it cannot be rendered.
pub type RenderContent<'a> = &'a dyn Fn(ContentInputs<'_>) -> Option<String>;

/// Where a `token` preset finds the shared token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A lower-case header name.
    Header(String),
    /// A query parameter name.
    Query(String),
}

/// One preset as compiled, without its secrets (those are rendered per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub scheme: Scheme,
    /// Seconds a signed timestamp may be away from now (Stripe: only older is rejected).
    pub tolerance_secs: u64,
    /// GitHub: also accept the SHA-1 `X-Hub-Signature` when the SHA-256 header is absent.
    pub legacy_sha1: bool,
    /// `hmac`: its settings (`None` for every other scheme).
    pub hmac: Option<HmacSpec>,
    /// `token`: where the token is sent (`None` for every other scheme).
    pub token: Option<TokenSource>,
}

impl Preset {
    pub fn new(scheme: Scheme) -> Self {
        Self {
            scheme,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
            legacy_sha1: false,
            hmac: None,
            token: None,
        }
    }
}

/// Where a request carries a scheme's credential itself rather than a signature: that value is
/// the secret, so once checked it is masked before anything stores or shows the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A lower-case header name.
    Header(&'a str),
    /// A query parameter name.
    Query(&'a str),
}

impl Preset {
    /// Where the request carries the secret in clear: GitLab's token, Basic's `Authorization`,
    /// a `token` preset's header or query parameter; `None` for signature schemes.
    pub fn credential(&self) -> Option<Credential<'_>> {
        match self.scheme {
            Scheme::Gitlab => Some(Credential::Header("x-gitlab-token")),
            Scheme::Basic => Some(Credential::Header("authorization")),
            Scheme::Token => match self.token.as_ref()? {
                TokenSource::Header(name) => Some(Credential::Header(name)),
                TokenSource::Query(name) => Some(Credential::Query(name)),
            },
            _ => None,
        }
    }
}

/// Why a request was refused. Logged, never sent back: the sender only sees 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the header {0} is missing")]
    MissingHeader(&'static str),
    /// A header the workflow named (`hmac`) is missing.
    #[error("the header {0} is missing")]
    MissingNamedHeader(String),
    #[error("the query parameter {0} is missing")]
    MissingQueryParameter(String),
    #[error("no signature matches")]
    BadSignature,
    #[error("the signed timestamp is outside the tolerance")]
    StaleTimestamp,
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A header the scheme reads is sent more than once: which copy counts would be ambiguous.
    #[error("the header {0} is sent more than once")]
    Repeated(String),
    /// A configuration problem, not the sender's: no secret, or one the scheme cannot use.
    #[error("the secret is unusable: {0}")]
    UnusableSecret(&'static str),
}

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<sha1::Sha1>;

/// What of one request a scheme may read, besides the clock and the secrets.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    /// The raw body bytes, exactly as received.
    pub body: &'a [u8],
    /// The request's query string, without the `?`.
    pub query: Option<&'a str>,
    /// Twilio: the rendered public URL the sender calls (`url:`), before the query is added.
    pub url: Option<&'a str>,
    /// `hmac` with `content`: renders the signed text.
    pub content: Option<RenderContent<'a>>,
    /// `basic`: the rendered user name.
    pub username: Option<&'a str>,
}

/// Check one request, of which only the headers and body are known, against one preset.
pub fn check(
    preset: &Preset,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    secrets: &[String],
) -> Result<(), Rejection> {
    let request = Request {
        headers,
        body,
        query: None,
        url: None,
        content: None,
        username: None,
    };
    check_request(preset, &request, now, secrets)
}

/// Check one request against one preset; any of `secrets` (rotation) may match.
pub fn check_request(
    preset: &Preset,
    request: &Request<'_>,
    now: i64,
    secrets: &[String],
) -> Result<(), Rejection> {
    let (headers, body) = (request.headers, request.body);
    // An empty secret would make every HMAC forgeable by anyone: never accept with one.
    if secrets.is_empty() || secrets.iter().any(|s| s.is_empty()) {
        return Err(Rejection::UnusableSecret("empty"));
    }
    match preset.scheme {
        Scheme::Github => github(preset, headers, body, secrets),
        Scheme::Gitlab => gitlab(headers, secrets),
        Scheme::Stripe => stripe(preset, headers, body, now, secrets),
        Scheme::Shopify => shopify(headers, body, secrets),
        Scheme::Slack => slack(preset, headers, body, now, secrets),
        Scheme::StandardWebhooks => standard_webhooks(preset, headers, body, now, secrets),
        Scheme::Bitbucket => bitbucket(headers, body, secrets),
        Scheme::Gitea => bare_hex_sha256(header(headers, "x-gitea-signature")?, body, secrets),
        Scheme::Forgejo => {
            // Forgejo sends its own header and, for compatibility, the Gitea one.
            let value = if headers.get("x-forgejo-signature").is_some() {
                header(headers, "x-forgejo-signature")?
            } else {
                header(headers, "x-gitea-signature")?
            };
            bare_hex_sha256(value, body, secrets)
        }
        Scheme::Twilio => twilio(request, secrets),
        Scheme::Hmac => generic_hmac(preset, request, now, secrets),
        Scheme::Basic => basic(request, secrets),
        Scheme::Token => token(preset, request, secrets),
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, Rejection> {
    let value = headers.get(name).ok_or(Rejection::MissingHeader(name))?;
    refuse_repeated(headers, name)?;
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| Rejection::Malformed("a header is not ASCII"))
}

/// The check reads the first copy of a header while the stored event joins all of them (and a
/// dedupe key is rendered from that): a header that counts is accepted once only.
fn refuse_repeated(headers: &HeaderMap, name: &str) -> Result<(), Rejection> {
    if headers.get_all(name).iter().nth(1).is_some() {
        return Err(Rejection::Repeated(name.to_owned()));
    }
    Ok(())
}

fn hmac_sha256_matches(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(expected).is_ok()
}

fn hmac_sha1_matches(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha1::new_from_slice(key) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(expected).is_ok()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn timestamp(text: &str) -> Result<i64, Rejection> {
    text.parse::<i64>()
        .map_err(|_| Rejection::Malformed("the timestamp is not a unix time"))
}

fn github(
    preset: &Preset,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[String],
) -> Result<(), Rejection> {
    const SHA256: &str = "x-hub-signature-256";
    const SHA1: &str = "x-hub-signature";
    if headers.get(SHA256).is_none() && preset.legacy_sha1 && headers.get(SHA1).is_some() {
        let value = header(headers, SHA1)?;
        let hex = value.strip_prefix("sha1=").ok_or(Rejection::Malformed(
            "X-Hub-Signature does not start with sha1=",
        ))?;
        let expected = hex_decode(hex).ok_or(Rejection::Malformed("the signature is not hex"))?;
        return secrets
            .iter()
            .any(|s| hmac_sha1_matches(s.as_bytes(), &[body], &expected))
            .then_some(())
            .ok_or(Rejection::BadSignature);
    }
    let value = header(headers, SHA256)?;
    let hex = value.strip_prefix("sha256=").ok_or(Rejection::Malformed(
        "X-Hub-Signature-256 does not start with sha256=",
    ))?;
    let expected = hex_decode(hex).ok_or(Rejection::Malformed("the signature is not hex"))?;
    secrets
        .iter()
        .any(|s| hmac_sha256_matches(s.as_bytes(), &[body], &expected))
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

fn gitlab(headers: &HeaderMap, tokens: &[String]) -> Result<(), Rejection> {
    let sent = header(headers, "x-gitlab-token")?;
    matches_any(sent, tokens)
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

/// Whether `sent` equals one of `wanted`. Comparing digests makes both sides 32 bytes, so
/// neither the length nor the first differing byte of a token shows in the timing; every
/// candidate is compared, so neither does which one matched.
fn matches_any(sent: &str, wanted: &[String]) -> bool {
    let sent = Sha256::digest(sent.as_bytes());
    let mut matched = false;
    for token in wanted {
        let want = Sha256::digest(token.as_bytes());
        let diff = sent
            .iter()
            .zip(want.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        matched |= diff == 0;
    }
    matched
}

/// `Authorization: Basic base64(user:password)`; the password is the secret (any may match).
fn basic(request: &Request<'_>, passwords: &[String]) -> Result<(), Rejection> {
    let username = request
        .username
        .filter(|u| !u.is_empty())
        .ok_or(Rejection::UnusableSecret("basic needs a username"))?;
    let value = header(request.headers, "authorization")?;
    let (kind, encoded) = value.split_once(' ').ok_or(Rejection::Malformed(
        "Authorization is not `Basic <credentials>`",
    ))?;
    if !kind.eq_ignore_ascii_case("basic") {
        return Err(Rejection::Malformed(
            "Authorization is not `Basic <credentials>`",
        ));
    }
    let decoded = BASE64
        .decode(encoded.trim())
        .map_err(|_| Rejection::Malformed("the Basic credentials are not base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| Rejection::Malformed("the Basic credentials are not UTF-8"))?;
    // The user name cannot contain `:` (RFC 7617); the password may.
    let (sent_user, sent_password) = decoded
        .split_once(':')
        .ok_or(Rejection::Malformed("the Basic credentials have no ':'"))?;
    // Both are compared whatever the first gives, so timing tells neither apart.
    let user_ok = matches_any(sent_user, &[username.to_owned()]);
    let password_ok = matches_any(sent_password, passwords);
    (user_ok & password_ok)
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

/// A shared token in a header or a query parameter; any of `tokens` may match.
fn token(preset: &Preset, request: &Request<'_>, tokens: &[String]) -> Result<(), Rejection> {
    let source = preset.token.as_ref().ok_or(Rejection::UnusableSecret(
        "the token preset has no header or query",
    ))?;
    let sent = match source {
        TokenSource::Header(name) => named_header(request.headers, name)?.to_owned(),
        TokenSource::Query(name) => request
            .query
            .and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.into_owned())
            })
            .ok_or_else(|| Rejection::MissingQueryParameter(name.clone()))?,
    };
    matches_any(&sent, tokens)
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

fn stripe(
    preset: &Preset,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    secrets: &[String],
) -> Result<(), Rejection> {
    let value = header(headers, "stripe-signature")?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in value.split(',') {
        // Like stripe-go: a part that is not `key=value` makes the whole header invalid.
        let (key, val) = part.trim().split_once('=').ok_or(Rejection::Malformed(
            "Stripe-Signature has a part without '='",
        ))?;
        match key {
            "t" => t = Some(val),
            // Non-hex `v1` values are skipped, as stripe-go does; other schemes are ignored.
            "v1" => signatures.extend(hex_decode(val)),
            _ => {}
        }
    }
    let t_text = t.ok_or(Rejection::Malformed("Stripe-Signature has no t="))?;
    let t_value = timestamp(t_text)?;
    // Stripe signs the timestamp exactly as sent in the header.
    let payload_prefix = format!("{t_text}.");
    let matched = signatures.iter().any(|sig| {
        secrets
            .iter()
            .any(|s| hmac_sha256_matches(s.as_bytes(), &[payload_prefix.as_bytes(), body], sig))
    });
    if !matched {
        return Err(Rejection::BadSignature);
    }
    // Only old timestamps are refused, like Stripe's own libraries.
    if t_value < now.saturating_sub(tolerance(preset)) {
        return Err(Rejection::StaleTimestamp);
    }
    Ok(())
}

fn tolerance(preset: &Preset) -> i64 {
    i64::try_from(preset.tolerance_secs).unwrap_or(i64::MAX)
}

fn shopify(headers: &HeaderMap, body: &[u8], secrets: &[String]) -> Result<(), Rejection> {
    let value = header(headers, "x-shopify-hmac-sha256")?;
    let expected = BASE64
        .decode(value)
        .map_err(|_| Rejection::Malformed("X-Shopify-Hmac-Sha256 is not base64"))?;
    secrets
        .iter()
        .any(|s| hmac_sha256_matches(s.as_bytes(), &[body], &expected))
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

fn slack(
    preset: &Preset,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    secrets: &[String],
) -> Result<(), Rejection> {
    let ts_text = header(headers, "x-slack-request-timestamp")?;
    let value = header(headers, "x-slack-signature")?;
    let ts = timestamp(ts_text)?;
    if now.abs_diff(ts) > preset.tolerance_secs {
        return Err(Rejection::StaleTimestamp);
    }
    let hex = value.strip_prefix("v0=").ok_or(Rejection::Malformed(
        "X-Slack-Signature does not start with v0=",
    ))?;
    let expected = hex_decode(hex).ok_or(Rejection::Malformed("the signature is not hex"))?;
    let prefix = format!("v0:{ts_text}:");
    secrets
        .iter()
        .any(|s| hmac_sha256_matches(s.as_bytes(), &[prefix.as_bytes(), body], &expected))
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

/// Bitbucket Cloud reuses GitHub's legacy header name with SHA-256: the preset, not the header,
/// decides the algorithm.
fn bitbucket(headers: &HeaderMap, body: &[u8], secrets: &[String]) -> Result<(), Rejection> {
    let value = header(headers, "x-hub-signature")?;
    let hex = value.strip_prefix("sha256=").ok_or(Rejection::Malformed(
        "X-Hub-Signature does not start with sha256=",
    ))?;
    let expected = hex_decode(hex).ok_or(Rejection::Malformed("the signature is not hex"))?;
    secrets
        .iter()
        .any(|s| hmac_sha256_matches(s.as_bytes(), &[body], &expected))
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

/// Gitea and Forgejo: the HMAC-SHA256 of the raw body as hex, with no prefix.
fn bare_hex_sha256(value: &str, body: &[u8], secrets: &[String]) -> Result<(), Rejection> {
    let expected = hex_decode(value).ok_or(Rejection::Malformed("the signature is not hex"))?;
    secrets
        .iter()
        .any(|s| hmac_sha256_matches(s.as_bytes(), &[body], &expected))
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

/// Twilio: base64 HMAC-SHA1 of the public URL followed by every form parameter's key and value,
/// sorted by key then value. A JSON body is bound instead by `bodySHA256=<hex>` in the URL.
fn twilio(request: &Request<'_>, secrets: &[String]) -> Result<(), Rejection> {
    let configured = request
        .url
        .filter(|u| !u.is_empty())
        .ok_or(Rejection::UnusableSecret("twilio needs the public url"))?;
    let value = header(request.headers, "x-twilio-signature")?;
    let expected = BASE64
        .decode(value)
        .map_err(|_| Rejection::Malformed("X-Twilio-Signature is not base64"))?;
    // Twilio signs the URL it called, query included; a configured URL with its own query
    // string wins, since the proxy in between may have rewritten the request's.
    let url = match request.query {
        Some(query) if !query.is_empty() && !configured.contains('?') => {
            format!("{configured}?{query}")
        }
        _ => configured.to_owned(),
    };
    let mut signed_params = String::new();
    if let Some(hash) = query_param(&url, "bodySHA256") {
        // The body hash is public (it is in the URL), so a plain comparison leaks nothing.
        let actual = Sha256::digest(request.body);
        if hex_decode(&hash).as_deref() != Some(actual.as_slice()) {
            return Err(Rejection::BadSignature);
        }
    } else {
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(request.body)
            .into_owned()
            .collect();
        // Sorting the pairs orders by key, then by value for repeated keys, as Twilio does.
        params.sort();
        for (key, value) in params {
            signed_params.push_str(&key);
            signed_params.push_str(&value);
        }
    }
    // Twilio's validators accept the URL both without a port and with one (the default port
    // when none is written), as the URL seen by the sender may differ from the configured one.
    let candidates = [url_without_port(&url), url_with_port(&url)];
    let matched = candidates.iter().any(|candidate| {
        secrets.iter().any(|s| {
            hmac_sha1_matches(
                s.as_bytes(),
                &[candidate.as_bytes(), signed_params.as_bytes()],
                &expected,
            )
        })
    });
    matched.then_some(()).ok_or(Rejection::BadSignature)
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let (_, rest) = url.split_once('?')?;
    let query = rest.split('#').next().unwrap_or(rest);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `(scheme://, host, port, rest)` of an absolute URL; `None` when it has no `://`.
fn url_parts(url: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let start = url.find("://")? + 3;
    let end = url
        .get(start..)?
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let authority = url.get(start..end)?;
    // A port is the digits after the last `:`; an IPv6 literal's colons end in `]`, not digits.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (authority, None),
    };
    Some((url.get(..start)?, host, port, url.get(end..)?))
}

fn url_without_port(url: &str) -> String {
    match url_parts(url) {
        Some((scheme, host, Some(_), rest)) => format!("{scheme}{host}{rest}"),
        _ => url.to_owned(),
    }
}

fn url_with_port(url: &str) -> String {
    let Some((scheme, host, None, rest)) = url_parts(url) else {
        return url.to_owned();
    };
    let port = match scheme.to_ascii_lowercase().as_str() {
        "https://" => 443,
        "http://" => 80,
        _ => return url.to_owned(),
    };
    format!("{scheme}{host}:{port}{rest}")
}

fn named_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, Rejection> {
    let value = headers
        .get(name)
        .ok_or_else(|| Rejection::MissingNamedHeader(name.to_owned()))?;
    refuse_repeated(headers, name)?;
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| Rejection::Malformed("a header is not ASCII"))
}

fn mac_matches<M: Mac + hmac::digest::KeyInit>(
    key: &[u8],
    content: &[u8],
    expected: &[u8],
) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return false;
    };
    mac.update(content);
    mac.verify_slice(expected).is_ok()
}

/// A generic `hmac` preset: `<prefix><encoded MAC>` in one header, over the raw body or the
/// rendered `content`, with an optional timestamp window.
fn generic_hmac(
    preset: &Preset,
    request: &Request<'_>,
    now: i64,
    secrets: &[String],
) -> Result<(), Rejection> {
    let spec = preset
        .hmac
        .as_ref()
        .ok_or(Rejection::UnusableSecret("the hmac preset has no settings"))?;
    let value = named_header(request.headers, &spec.header)?;
    let timestamp_text = match &spec.timestamp_header {
        Some(name) => {
            let text = named_header(request.headers, name)?;
            if now.abs_diff(timestamp(text)?) > preset.tolerance_secs {
                return Err(Rejection::StaleTimestamp);
            }
            text
        }
        None => "",
    };
    let id = match &spec.id_header {
        Some(name) => named_header(request.headers, name)?,
        None => "",
    };
    let encoded = value
        .strip_prefix(spec.prefix.as_str())
        .ok_or(Rejection::Malformed(
            "the signature header does not start with the prefix",
        ))?;
    let expected = match spec.encoding {
        Encoding::Hex => {
            hex_decode(encoded).ok_or(Rejection::Malformed("the signature is not hex"))
        }
        Encoding::Base64 => BASE64
            .decode(encoded)
            .map_err(|_| Rejection::Malformed("the signature is not base64")),
    }?;
    let rendered;
    let content: &[u8] = if spec.custom_content {
        let render = request.content.ok_or(Rejection::UnusableSecret(
            "the hmac content cannot be rendered",
        ))?;
        let body = String::from_utf8_lossy(request.body);
        rendered = render(ContentInputs {
            body: &body,
            timestamp: timestamp_text,
            id,
        })
        .ok_or(Rejection::UnusableSecret(
            "the hmac content cannot be rendered",
        ))?;
        rendered.as_bytes()
    } else {
        request.body
    };
    let matches = |key: &[u8]| match spec.algorithm {
        Algorithm::Sha1 => mac_matches::<HmacSha1>(key, content, &expected),
        Algorithm::Sha256 => mac_matches::<HmacSha256>(key, content, &expected),
        Algorithm::Sha512 => mac_matches::<Hmac<sha2::Sha512>>(key, content, &expected),
    };
    secrets
        .iter()
        .any(|s| matches(s.as_bytes()))
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

/// The key of a Standard Webhooks secret: base64, with or without its `whsec_` prefix.
pub fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, Rejection> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    BASE64
        .decode(encoded)
        .ok()
        .filter(|key| !key.is_empty())
        .ok_or(Rejection::UnusableSecret(
            "a standard_webhooks secret is not base64",
        ))
}

/// Sign an outgoing request the Standard Webhooks way: the `webhook-signature` value
/// `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, which `standard_webhooks` verifies.
pub fn standard_webhooks_signature(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, Rejection> {
    // A receiver reads the `webhook-id` header without its surrounding whitespace (HTTP drops
    // it, and `header` trims it): an id rendered as " order-7 " is signed as it arrives.
    let id = id.trim();
    let key = standard_webhooks_key(secret)?;
    let mut mac = HmacSha256::new_from_slice(&key)
        .map_err(|_| Rejection::UnusableSecret("a standard_webhooks secret is unusable"))?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// `webhook-*`, or the Svix-branded `svix-*` a Svix sender uses unless white-labelled.
fn standard_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    svix: &'static str,
) -> Result<&'h str, Rejection> {
    if headers.get(name).is_none() && headers.get(svix).is_some() {
        return header(headers, svix);
    }
    header(headers, name)
}

fn standard_webhooks(
    preset: &Preset,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    secrets: &[String],
) -> Result<(), Rejection> {
    let id = standard_header(headers, "webhook-id", "svix-id")?;
    let ts_text = standard_header(headers, "webhook-timestamp", "svix-timestamp")?;
    let value = standard_header(headers, "webhook-signature", "svix-signature")?;
    let ts = timestamp(ts_text)?;
    if now.abs_diff(ts) > preset.tolerance_secs {
        return Err(Rejection::StaleTimestamp);
    }
    let mut keys = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = BASE64
            .decode(encoded)
            .map_err(|_| Rejection::UnusableSecret("a standard_webhooks secret is not base64"))?;
        keys.push(key);
    }
    let prefix = format!("{id}.{ts}.");
    // Entries of other versions (`v1a`, `v2`) and undecodable ones are ignored; an empty or
    // truncated `v1` decodes to the wrong length and fails `verify_slice`.
    let matched = value
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| BASE64.decode(sig).ok())
        .any(|sig| {
            keys.iter()
                .any(|key| hmac_sha256_matches(key, &[prefix.as_bytes(), body], &sig))
        });
    matched.then_some(()).ok_or(Rejection::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn preset(scheme: Scheme) -> Preset {
        Preset::new(scheme)
    }

    // G1, G2
    const G_SECRET: &str = "It's a Secret to Everybody";
    const G_BODY: &[u8] = b"Hello, World!";
    const G1: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const G2: &str = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";

    /// A header the scheme reads, sent twice, is refused even when one copy is right: which
    /// copy counts would differ between the check and what is stored (the dedupe key joins
    /// them), so a captured delivery could be replayed past dedupe with a second `webhook-id`.
    #[test]
    fn repeated_headers_are_refused() {
        let with = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, value.parse().unwrap());
            }
            map
        };
        let github = with(&[("x-hub-signature-256", G1), ("x-hub-signature-256", G1)]);
        assert_eq!(
            check(
                &preset(Scheme::Github),
                &github,
                G_BODY,
                0,
                &secrets(&[G_SECRET])
            ),
            Err(Rejection::Repeated("x-hub-signature-256".into()))
        );
        let p = preset(Scheme::StandardWebhooks);
        let s = secrets(&[W1_SECRET]);
        for repeated in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut map = w1_headers(W1_SIG);
            let value = map.get(repeated).unwrap().clone();
            let other = if repeated == "webhook-id" {
                "msg_replayed".parse().unwrap()
            } else {
                value.clone()
            };
            map.append(repeated, other);
            assert_eq!(
                check(&p, &map, W1_BODY, W1_TS, &s),
                Err(Rejection::Repeated(repeated.into())),
                "{repeated}"
            );
        }
        let svix = with(&[
            ("svix-id", W1_ID),
            ("svix-id", W1_ID),
            ("svix-timestamp", &W1_TS.to_string()),
            ("svix-signature", W1_SIG),
        ]);
        assert!(check(&p, &svix, W1_BODY, W1_TS, &s).is_err());
        let gitlab = with(&[("x-gitlab-token", "t0ken"), ("x-gitlab-token", "t0ken")]);
        assert!(
            check(
                &preset(Scheme::Gitlab),
                &gitlab,
                b"",
                0,
                &secrets(&["t0ken"])
            )
            .is_err()
        );
    }

    #[test]
    fn github_g1_passes_and_variants_fail() {
        let p = preset(Scheme::Github);
        let ok = headers(&[("x-hub-signature-256", G1)]);
        assert_eq!(check(&p, &ok, G_BODY, 0, &secrets(&[G_SECRET])), Ok(()));
        // Rotation: the matching secret second.
        assert_eq!(
            check(&p, &ok, G_BODY, 0, &secrets(&["old", G_SECRET])),
            Ok(())
        );
        assert_eq!(
            check(&p, &ok, G_BODY, 0, &secrets(&["other secret"])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &ok, b"Hello, World!!", 0, &secrets(&[G_SECRET])),
            Err(Rejection::BadSignature)
        );
        let truncated = headers(&[("x-hub-signature-256", &G1[..G1.len() - 2])]);
        assert_eq!(
            check(&p, &truncated, G_BODY, 0, &secrets(&[G_SECRET])),
            Err(Rejection::BadSignature)
        );
        let longer = headers(&[("x-hub-signature-256", &format!("{G1}0"))]);
        assert!(check(&p, &longer, G_BODY, 0, &secrets(&[G_SECRET])).is_err());
        let wrong_prefix = headers(&[("x-hub-signature-256", &G1.replace("sha256=", "sha1="))]);
        assert!(matches!(
            check(&p, &wrong_prefix, G_BODY, 0, &secrets(&[G_SECRET])),
            Err(Rejection::Malformed(_))
        ));
        assert_eq!(
            check(&p, &HeaderMap::new(), G_BODY, 0, &secrets(&[G_SECRET])),
            Err(Rejection::MissingHeader("x-hub-signature-256"))
        );
        assert_eq!(
            check(&p, &ok, G_BODY, 0, &secrets(&[""])),
            Err(Rejection::UnusableSecret("empty"))
        );
    }

    #[test]
    fn github_g2_passes_only_with_legacy_sha1() {
        let sha1_only = headers(&[("x-hub-signature", G2)]);
        assert_eq!(
            check(
                &preset(Scheme::Github),
                &sha1_only,
                G_BODY,
                0,
                &secrets(&[G_SECRET])
            ),
            Err(Rejection::MissingHeader("x-hub-signature-256"))
        );
        let legacy = Preset {
            legacy_sha1: true,
            ..preset(Scheme::Github)
        };
        assert_eq!(
            check(&legacy, &sha1_only, G_BODY, 0, &secrets(&[G_SECRET])),
            Ok(())
        );
        assert_eq!(
            check(&legacy, &sha1_only, G_BODY, 0, &secrets(&["other"])),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn gitlab_gl1() {
        let p = preset(Scheme::Gitlab);
        let sent = headers(&[("x-gitlab-token", "my-gitlab-token")]);
        assert_eq!(
            check(&p, &sent, b"", 0, &secrets(&["my-gitlab-token"])),
            Ok(())
        );
        assert_eq!(
            check(&p, &sent, b"", 0, &secrets(&["new", "my-gitlab-token"])),
            Ok(())
        );
        assert_eq!(
            check(&p, &sent, b"", 0, &secrets(&["my-gitlab-token2"])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &sent, b"", 0, &secrets(&["my-gitlab-toke"])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(
                &p,
                &HeaderMap::new(),
                b"",
                0,
                &secrets(&["my-gitlab-token"])
            ),
            Err(Rejection::MissingHeader("x-gitlab-token"))
        );
    }

    const ST1: &str =
        "t=1700000000,v1=9890228da14bae54b7a0781fd00a7245f2a35befaf6fdaa680dbc1f38547654f";
    const ST_BODY: &[u8] = br#"{"event":"ping","id":42}"#;

    #[test]
    fn stripe_st1_and_st2() {
        let p = preset(Scheme::Stripe);
        let sent = headers(&[("stripe-signature", ST1)]);
        let s = secrets(&["whsec_test_secret"]);
        assert_eq!(check(&p, &sent, ST_BODY, 1_700_000_000, &s), Ok(()));
        assert_eq!(check(&p, &sent, ST_BODY, 1_700_000_300, &s), Ok(()));
        // A future timestamp passes, like Stripe's libraries.
        assert_eq!(check(&p, &sent, ST_BODY, 1_699_999_000, &s), Ok(()));
        assert_eq!(
            check(&p, &sent, ST_BODY, 1_700_000_301, &s),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            check(
                &p,
                &sent,
                ST_BODY,
                1_700_000_000,
                &secrets(&["whsec_other"])
            ),
            Err(Rejection::BadSignature)
        );
        // Several v1 (a secret roll) and other schemes: any v1 match passes.
        let rolled = headers(&[(
            "stripe-signature",
            "t=1700000000,v1=00ff,v0=abc,v1=9890228da14bae54b7a0781fd00a7245f2a35befaf6fdaa680dbc1f38547654f",
        )]);
        assert_eq!(check(&p, &rolled, ST_BODY, 1_700_000_000, &s), Ok(()));
        let truncated = headers(&[("stripe-signature", &ST1[..ST1.len() - 2])]);
        assert_eq!(
            check(&p, &truncated, ST_BODY, 1_700_000_000, &s),
            Err(Rejection::BadSignature)
        );
        let no_t = headers(&[("stripe-signature", &ST1[13..])]);
        assert!(matches!(
            check(&p, &no_t, ST_BODY, 1_700_000_000, &s),
            Err(Rejection::Malformed(_))
        ));
        assert_eq!(
            check(&p, &HeaderMap::new(), ST_BODY, 1_700_000_000, &s),
            Err(Rejection::MissingHeader("stripe-signature"))
        );

        // ST2: Stripe keys with the literal whsec_ string, unlike Standard Webhooks (W1).
        let st2 = headers(&[(
            "stripe-signature",
            "t=1614265330,v1=2e37df5d4a028c51a7f3133d64ae1e300d2c2c900f1b1d49d4369ad2530f8964",
        )]);
        assert_eq!(
            check(
                &p,
                &st2,
                br#"{"test": 2432232314}"#,
                1_614_265_330,
                &secrets(&[W1_SECRET])
            ),
            Ok(())
        );
    }

    #[test]
    fn shopify_sh1() {
        let p = preset(Scheme::Shopify);
        let sent = headers(&[(
            "x-shopify-hmac-sha256",
            "FAICgC8U4T61S6i2tta7AjOY9kLLQ7gEMFCBfdBJzOo=",
        )]);
        assert_eq!(check(&p, &sent, ST_BODY, 0, &secrets(&["hush"])), Ok(()));
        assert_eq!(
            check(&p, &sent, ST_BODY, 0, &secrets(&["hush2"])),
            Err(Rejection::BadSignature)
        );
        let truncated = headers(&[("x-shopify-hmac-sha256", "FAICgC8U4T61S6i2tta7AjOY9kLLQ7gE")]);
        assert_eq!(
            check(&p, &truncated, ST_BODY, 0, &secrets(&["hush"])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &HeaderMap::new(), ST_BODY, 0, &secrets(&["hush"])),
            Err(Rejection::MissingHeader("x-shopify-hmac-sha256"))
        );
    }

    const S1_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const S1_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const S1_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const S1_TS: i64 = 1_531_420_618;

    #[test]
    fn slack_s1() {
        let p = preset(Scheme::Slack);
        let sent = headers(&[
            ("x-slack-request-timestamp", "1531420618"),
            ("x-slack-signature", S1_SIG),
        ]);
        let s = secrets(&[S1_SECRET]);
        assert_eq!(check(&p, &sent, S1_BODY, S1_TS, &s), Ok(()));
        assert_eq!(check(&p, &sent, S1_BODY, S1_TS + 300, &s), Ok(()));
        assert_eq!(check(&p, &sent, S1_BODY, S1_TS - 300, &s), Ok(()));
        assert_eq!(
            check(&p, &sent, S1_BODY, S1_TS + 301, &s),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            check(&p, &sent, S1_BODY, S1_TS - 301, &s),
            Err(Rejection::StaleTimestamp)
        );
        let mut longer = S1_BODY.to_vec();
        longer.extend_from_slice(b"------");
        assert_eq!(
            check(&p, &sent, &longer, S1_TS, &s),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &sent, S1_BODY, S1_TS, &secrets(&["other"])),
            Err(Rejection::BadSignature)
        );
        let only_sig = headers(&[("x-slack-signature", S1_SIG)]);
        assert_eq!(
            check(&p, &only_sig, S1_BODY, S1_TS, &s),
            Err(Rejection::MissingHeader("x-slack-request-timestamp"))
        );
    }

    const W1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const W1_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const W1_TS: i64 = 1_614_265_330;
    const W1_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const W1_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const W2_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn w1_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", W1_ID),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", signature),
        ])
    }

    #[test]
    fn standard_webhooks_w1_w3_w4() {
        let p = preset(Scheme::StandardWebhooks);
        let s = secrets(&[W1_SECRET]);
        assert_eq!(check(&p, &w1_headers(W1_SIG), W1_BODY, W1_TS, &s), Ok(()));
        // W3: the prefix is optional.
        let bare = secrets(&["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        assert_eq!(
            check(&p, &w1_headers(W1_SIG), W1_BODY, W1_TS, &bare),
            Ok(())
        );
        // W4: a header signed with two secrets passes with either.
        let w4 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,78nXHjpFP0tVJQW5D0SBwmVyyW87BV/rL6MgfM/Bw44=";
        assert_eq!(check(&p, &w1_headers(w4), W1_BODY, W1_TS, &s), Ok(()));
        assert_eq!(
            check(&p, &w1_headers(w4), W1_BODY, W1_TS, &secrets(&[W2_SECRET])),
            Ok(())
        );
        // Rotation on our side: either configured secret may match.
        assert_eq!(
            check(
                &p,
                &w1_headers(W1_SIG),
                W1_BODY,
                W1_TS,
                &secrets(&[W2_SECRET, W1_SECRET])
            ),
            Ok(())
        );
        // Svix-branded headers.
        let svix = headers(&[
            ("svix-id", W1_ID),
            ("svix-timestamp", "1614265330"),
            ("svix-signature", W1_SIG),
        ]);
        assert_eq!(check(&p, &svix, W1_BODY, W1_TS, &s), Ok(()));
    }

    #[test]
    fn outgoing_signatures_match_the_published_vectors_and_verify() {
        let body = br#"{"test": 2432232314}"#;
        let w1 = standard_webhooks_signature(
            W1_SECRET,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(
            w1.as_deref(),
            Ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        let w2 = standard_webhooks_signature(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(
            w2.as_deref(),
            Ok("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=")
        );
        // W3: the same without the prefix.
        let w3 = standard_webhooks_signature(
            W1_SECRET.strip_prefix("whsec_").unwrap(),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(w3, w1);
        // What we sign, our own verify accepts.
        let signed = standard_webhooks_signature(W1_SECRET, "run.step", 1700000000, b"{}").unwrap();
        let request = headers(&[
            ("webhook-id", "run.step"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &signed),
        ]);
        assert_eq!(
            check(
                &preset(Scheme::StandardWebhooks),
                &request,
                b"{}",
                1700000010,
                &secrets(&[W1_SECRET])
            ),
            Ok(())
        );
        assert!(standard_webhooks_signature("whsec_not base64!", "i", 1, b"").is_err());
        assert!(standard_webhooks_signature("whsec_", "i", 1, b"").is_err());
    }

    /// Found by `fuzz/` (target `verify`): an outgoing id with a trailing space, as an
    /// `Idempotency-Key` rendered with one would give, was signed with the space while every
    /// receiver reads the header without it, so the request never verified.
    #[test]
    fn an_id_with_surrounding_spaces_is_signed_as_it_is_received() {
        for id in ["p ", " p", "\tmsg_1 \t", " "] {
            let signed = standard_webhooks_signature(W1_SECRET, id, 1700000000, b"{}").unwrap();
            let request = headers(&[
                ("webhook-id", id),
                ("webhook-timestamp", "1700000000"),
                ("webhook-signature", &signed),
            ]);
            assert_eq!(
                check(
                    &preset(Scheme::StandardWebhooks),
                    &request,
                    b"{}",
                    1700000000,
                    &secrets(&[W1_SECRET])
                ),
                Ok(()),
                "{id:?}"
            );
        }
        assert_eq!(
            standard_webhooks_signature(W1_SECRET, " p\t", 1, b""),
            standard_webhooks_signature(W1_SECRET, "p", 1, b"")
        );
    }

    #[test]
    fn standard_webhooks_w2() {
        let p = preset(Scheme::StandardWebhooks);
        let sent = headers(&[
            ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
            ("webhook-timestamp", "1649367553"),
            (
                "webhook-signature",
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ]);
        assert_eq!(
            check(
                &p,
                &sent,
                br#"{"email":"test@example.com","username":"test_user"}"#,
                1_649_367_553,
                &secrets(&[W2_SECRET])
            ),
            Ok(())
        );
    }

    #[test]
    fn standard_webhooks_negative_vectors() {
        let p = preset(Scheme::StandardWebhooks);
        let s = secrets(&[W1_SECRET]);
        let fails = |signature: &str| {
            assert_eq!(
                check(&p, &w1_headers(signature), W1_BODY, W1_TS, &s),
                Err(Rejection::BadSignature),
                "{signature}"
            );
        };
        fails("v1,dawfeoifkpqwoekfpqoekf");
        fails(&W1_SIG[..8]);
        fails("v1,");
        fails("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=");
        fails(&format!("{W1_SIG}A"));
        fails(&W1_SIG.replace("v1,", "v2,"));
        fails(&W1_SIG.replace("v1,", "v1a,"));
        // Other versions and garbage around a valid entry are ignored.
        let mixed = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {W1_SIG} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        );
        assert_eq!(check(&p, &w1_headers(&mixed), W1_BODY, W1_TS, &s), Ok(()));
        assert_eq!(
            check(
                &p,
                &w1_headers(W1_SIG),
                W1_BODY,
                W1_TS,
                &secrets(&[W2_SECRET])
            ),
            Err(Rejection::BadSignature)
        );
        // The window, both ways, at ±301 s.
        assert_eq!(
            check(&p, &w1_headers(W1_SIG), W1_BODY, W1_TS + 300, &s),
            Ok(())
        );
        assert_eq!(
            check(&p, &w1_headers(W1_SIG), W1_BODY, W1_TS + 301, &s),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            check(&p, &w1_headers(W1_SIG), W1_BODY, W1_TS - 301, &s),
            Err(Rejection::StaleTimestamp)
        );
        for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut sent = w1_headers(W1_SIG);
            sent.remove(missing);
            assert!(
                matches!(
                    check(&p, &sent, W1_BODY, W1_TS, &s),
                    Err(Rejection::MissingHeader(_))
                ),
                "{missing}"
            );
        }
        let mut hello = w1_headers(W1_SIG);
        hello.insert("webhook-timestamp", "hello".parse().unwrap());
        assert!(matches!(
            check(&p, &hello, W1_BODY, W1_TS, &s),
            Err(Rejection::Malformed(_))
        ));
        assert_eq!(
            check(
                &p,
                &w1_headers(W1_SIG),
                W1_BODY,
                W1_TS,
                &secrets(&["whsec_not base64!"])
            ),
            Err(Rejection::UnusableSecret(
                "a standard_webhooks secret is not base64"
            ))
        );
    }

    const B1: &str = "sha256=7d4e732b39dfc86e7e532e0209097807da77dd3486513c41bb8a2206e911cf89";

    #[test]
    fn bitbucket_b1() {
        let p = preset(Scheme::Bitbucket);
        let s = secrets(&["bb-secret"]);
        let sent = headers(&[("x-hub-signature", B1)]);
        assert_eq!(check(&p, &sent, ST_BODY, 0, &s), Ok(()));
        assert_eq!(
            check(&p, &sent, ST_BODY, 0, &secrets(&["old", "bb-secret"])),
            Ok(())
        );
        assert_eq!(
            check(&p, &sent, ST_BODY, 0, &secrets(&["bb-secret2"])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &sent, br#"{"event":"ping","id":43}"#, 0, &s),
            Err(Rejection::BadSignature)
        );
        let truncated = headers(&[("x-hub-signature", &B1[..B1.len() - 2])]);
        assert_eq!(
            check(&p, &truncated, ST_BODY, 0, &s),
            Err(Rejection::BadSignature)
        );
        // GitHub's SHA-1 form in the same header is not Bitbucket's scheme.
        let sha1 = headers(&[("x-hub-signature", &B1.replace("sha256=", "sha1="))]);
        assert!(matches!(
            check(&p, &sha1, ST_BODY, 0, &s),
            Err(Rejection::Malformed(_))
        ));
        // The GitHub header name does not count.
        let github = headers(&[("x-hub-signature-256", B1)]);
        assert_eq!(
            check(&p, &github, ST_BODY, 0, &s),
            Err(Rejection::MissingHeader("x-hub-signature"))
        );
    }

    const GT1: &str = "0423390bd19da5eac4f09ec9263c058f54a19723e780f1970bf2797c82030a9c";

    #[test]
    fn gitea_gt1() {
        let p = preset(Scheme::Gitea);
        let s = secrets(&["gitea-secret"]);
        assert_eq!(
            check(&p, &headers(&[("X-Gitea-Signature", GT1)]), ST_BODY, 0, &s),
            Ok(())
        );
        assert_eq!(
            check(
                &p,
                &headers(&[("x-gitea-signature", GT1)]),
                ST_BODY,
                0,
                &secrets(&["other"])
            ),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &headers(&[("x-gitea-signature", GT1)]), b"{}", 0, &s),
            Err(Rejection::BadSignature)
        );
        let prefixed = headers(&[("x-gitea-signature", &format!("sha256={GT1}"))]);
        assert!(matches!(
            check(&p, &prefixed, ST_BODY, 0, &s),
            Err(Rejection::Malformed(_))
        ));
        let truncated = headers(&[("x-gitea-signature", &GT1[..GT1.len() - 2])]);
        assert_eq!(
            check(&p, &truncated, ST_BODY, 0, &s),
            Err(Rejection::BadSignature)
        );
        // Gitea does not read Forgejo's header.
        assert_eq!(
            check(
                &p,
                &headers(&[("x-forgejo-signature", GT1)]),
                ST_BODY,
                0,
                &s
            ),
            Err(Rejection::MissingHeader("x-gitea-signature"))
        );
    }

    #[test]
    fn forgejo_gt1_with_either_header() {
        let p = preset(Scheme::Forgejo);
        let s = secrets(&["gitea-secret"]);
        assert_eq!(
            check(
                &p,
                &headers(&[("x-forgejo-signature", GT1)]),
                ST_BODY,
                0,
                &s
            ),
            Ok(())
        );
        assert_eq!(
            check(&p, &headers(&[("x-gitea-signature", GT1)]), ST_BODY, 0, &s),
            Ok(())
        );
        // With both present, Forgejo's own header decides.
        let both = headers(&[
            ("x-forgejo-signature", &GT1.replace('0', "1")),
            ("x-gitea-signature", GT1),
        ]);
        assert_eq!(
            check(&p, &both, ST_BODY, 0, &s),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(
                &p,
                &headers(&[("x-forgejo-signature", GT1)]),
                ST_BODY,
                0,
                &secrets(&["other"])
            ),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &HeaderMap::new(), ST_BODY, 0, &s),
            Err(Rejection::MissingHeader("x-gitea-signature"))
        );
    }

    const T_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const T1_FORM: &[u8] = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";

    fn twilio(
        signature: &str,
        url: Option<&str>,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<(), Rejection> {
        let sent = headers(&[("x-twilio-signature", signature)]);
        let request = Request {
            headers: &sent,
            body,
            query,
            url,
            content: None,
            username: None,
        };
        check_request(&preset(Scheme::Twilio), &request, 0, &secrets(&["12345"]))
    }

    #[test]
    fn twilio_t1_t2_t3_form_params() {
        let t1 = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert_eq!(twilio(t1, Some(T_URL), None, T1_FORM), Ok(()));
        // The order of the form fields does not matter: Twilio sorts them.
        let reordered = b"To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE&From=%2B14158675309&Caller=%2B14158675309";
        assert_eq!(twilio(t1, Some(T_URL), None, reordered), Ok(()));
        // The request's query is added to a configured URL without one.
        assert_eq!(
            twilio(
                t1,
                Some("https://mycompany.com/myapp.php"),
                Some("foo=1&bar=2"),
                T1_FORM
            ),
            Ok(())
        );
        // A configured query string wins over the request's.
        assert_eq!(twilio(t1, Some(T_URL), Some("foo=9"), T1_FORM), Ok(()));
        assert_eq!(
            twilio(t1, Some("https://mycompany.com/myapp.php"), None, T1_FORM),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            twilio(
                t1,
                Some("https://mycompany.com/other.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Err(Rejection::BadSignature)
        );
        let tampered = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1235&From=%2B14158675309&To=%2B18005551212";
        assert_eq!(
            twilio(t1, Some(T_URL), None, tampered),
            Err(Rejection::BadSignature)
        );
        let t2 = "GvWf1cFY/Q7PnoempGyD5oXAezc=";
        let t2_form = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212";
        assert_eq!(twilio(t2, Some(T_URL), None, t2_form), Ok(()));
        assert_eq!(
            twilio(t2, Some(T_URL), None, T1_FORM),
            Err(Rejection::BadSignature)
        );
        // T3: repeated keys are ordered by value too.
        let t3 = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
        let t3_form = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
        assert_eq!(twilio(t3, Some(T_URL), None, t3_form), Ok(()));
        assert_eq!(
            twilio(
                t3,
                Some(T_URL),
                None,
                b"Sid=CA123&SidAccount=AC123&Digits=5678"
            ),
            Err(Rejection::BadSignature)
        );
        let sent = headers(&[("x-twilio-signature", t1)]);
        let wrong_secret = Request {
            headers: &sent,
            body: T1_FORM,
            query: None,
            url: Some(T_URL),
            content: None,
            username: None,
        };
        assert_eq!(
            check_request(
                &preset(Scheme::Twilio),
                &wrong_secret,
                0,
                &secrets(&["1234"])
            ),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            twilio(t1, None, None, T1_FORM),
            Err(Rejection::UnusableSecret("twilio needs the public url"))
        );
        assert!(matches!(
            twilio("not base64!", Some(T_URL), None, T1_FORM),
            Err(Rejection::Malformed(_))
        ));
        assert_eq!(
            check_request(
                &preset(Scheme::Twilio),
                &Request {
                    headers: &HeaderMap::new(),
                    body: T1_FORM,
                    query: None,
                    url: Some(T_URL),
                    content: None,
                    username: None,
                },
                0,
                &secrets(&["12345"])
            ),
            Err(Rejection::MissingHeader("x-twilio-signature"))
        );
    }

    #[test]
    fn twilio_t4_json_body() {
        let t4 = "a9nBmqA0ju/hNViExpshrM61xv4=";
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        // The configured URL has a query, so the body hash is appended by Twilio to the request's.
        assert_eq!(
            twilio(t4, Some(&format!("{T_URL}&bodySHA256={hash}")), None, body),
            Ok(())
        );
        assert_eq!(
            twilio(
                t4,
                Some("https://mycompany.com/myapp.php"),
                Some(&format!("foo=1&bar=2&bodySHA256={hash}")),
                body
            ),
            Ok(())
        );
        // A changed body no longer matches the signed hash.
        assert_eq!(
            twilio(
                t4,
                Some(&format!("{T_URL}&bodySHA256={hash}")),
                None,
                br#"{"property": "value", "boolean": false}"#
            ),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn twilio_t5_ports() {
        // Signed with :443; configured without a port.
        assert_eq!(
            twilio("kvajT1Ptam85bY51eRf/AJRuM3w=", Some(T_URL), None, T1_FORM),
            Ok(())
        );
        // Signed without a port; configured with :443.
        assert_eq!(
            twilio(
                "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                Some("https://mycompany.com:443/myapp.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Ok(())
        );
        assert_eq!(
            twilio(
                "0ZXoZLH/DfblKGATFgpif+LLRf4=",
                Some("http://mycompany.com/myapp.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Ok(())
        );
        assert_eq!(
            twilio(
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
                Some("http://mycompany.com:1234/myapp.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Ok(())
        );
        // A different explicit port is a different URL.
        assert_eq!(
            twilio(
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
                Some("http://mycompany.com:1235/myapp.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Err(Rejection::BadSignature)
        );
        // The http :80 signature does not pass for the https URL.
        assert_eq!(
            twilio("0ZXoZLH/DfblKGATFgpif+LLRf4=", Some(T_URL), None, T1_FORM),
            Err(Rejection::BadSignature)
        );
        assert_eq!(url_with_port("https://[::1]/x"), "https://[::1]:443/x");
        assert_eq!(url_without_port("https://[::1]:8443/x"), "https://[::1]/x");
    }

    fn hmac_preset(spec: HmacSpec) -> Preset {
        Preset {
            hmac: Some(spec),
            ..preset(Scheme::Hmac)
        }
    }

    #[test]
    fn hmac_reproduces_github_g1() {
        let p = hmac_preset(HmacSpec {
            prefix: "sha256=".to_owned(),
            ..HmacSpec::new("x-hub-signature-256".to_owned())
        });
        let s = secrets(&[G_SECRET]);
        let ok = headers(&[("x-hub-signature-256", G1)]);
        assert_eq!(check(&p, &ok, G_BODY, 0, &s), Ok(()));
        assert_eq!(
            check(&p, &ok, b"Hello, World!!", 0, &s),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &ok, G_BODY, 0, &secrets(&["other"])),
            Err(Rejection::BadSignature)
        );
        let truncated = headers(&[("x-hub-signature-256", &G1[..G1.len() - 2])]);
        assert_eq!(
            check(&p, &truncated, G_BODY, 0, &s),
            Err(Rejection::BadSignature)
        );
        let no_prefix = headers(&[("x-hub-signature-256", &G1["sha256=".len()..])]);
        assert!(matches!(
            check(&p, &no_prefix, G_BODY, 0, &s),
            Err(Rejection::Malformed(_))
        ));
        assert_eq!(
            check(&p, &HeaderMap::new(), G_BODY, 0, &s),
            Err(Rejection::MissingNamedHeader(
                "x-hub-signature-256".to_owned()
            ))
        );
        // G2 with SHA-1 in the legacy header.
        let sha1 = hmac_preset(HmacSpec {
            prefix: "sha1=".to_owned(),
            algorithm: Algorithm::Sha1,
            ..HmacSpec::new("x-hub-signature".to_owned())
        });
        assert_eq!(
            check(&sha1, &headers(&[("x-hub-signature", G2)]), G_BODY, 0, &s),
            Ok(())
        );
        // The same MAC as base64 (SH1) and as SHA-512 (computed with Python's hmac module).
        let base64 = hmac_preset(HmacSpec {
            encoding: Encoding::Base64,
            ..HmacSpec::new("x-shopify-hmac-sha256".to_owned())
        });
        let sh1 = headers(&[(
            "x-shopify-hmac-sha256",
            "FAICgC8U4T61S6i2tta7AjOY9kLLQ7gEMFCBfdBJzOo=",
        )]);
        assert_eq!(
            check(&base64, &sh1, ST_BODY, 0, &secrets(&["hush"])),
            Ok(())
        );
        let sha512 = hmac_preset(HmacSpec {
            algorithm: Algorithm::Sha512,
            ..HmacSpec::new("x-signature".to_owned())
        });
        let sent = headers(&[("x-signature", G_SHA512)]);
        assert_eq!(check(&sha512, &sent, G_BODY, 0, &s), Ok(()));
        assert_eq!(
            check(&sha512, &sent, b"Hello", 0, &s),
            Err(Rejection::BadSignature)
        );
    }

    const G_SHA512: &str = "11ed355a617e98134e842012a7944ccf59c10256cb182357bd7e3a42013ff07c376f8c14cf5cc1923da20b51d64256b2fb8ebbf100aa67a61326f61fea8111bc";

    #[test]
    fn hmac_reproduces_slack_s1_with_content() {
        let p = hmac_preset(HmacSpec {
            prefix: "v0=".to_owned(),
            timestamp_header: Some("x-slack-request-timestamp".to_owned()),
            custom_content: true,
            ..HmacSpec::new("x-slack-signature".to_owned())
        });
        // What `content: "v0:{{ timestamp }}:{{ body }}"` renders to.
        let render =
            |inputs: ContentInputs<'_>| Some(format!("v0:{}:{}", inputs.timestamp, inputs.body));
        let sent = headers(&[
            ("x-slack-request-timestamp", "1531420618"),
            ("x-slack-signature", S1_SIG),
        ]);
        let run = |sent: &HeaderMap, body: &[u8], now: i64, content: Option<RenderContent<'_>>| {
            let request = Request {
                headers: sent,
                body,
                query: None,
                url: None,
                content,
                username: None,
            };
            check_request(&p, &request, now, &secrets(&[S1_SECRET]))
        };
        assert_eq!(run(&sent, S1_BODY, S1_TS, Some(&render)), Ok(()));
        assert_eq!(run(&sent, S1_BODY, S1_TS + 300, Some(&render)), Ok(()));
        assert_eq!(
            run(&sent, S1_BODY, S1_TS + 301, Some(&render)),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            run(&sent, S1_BODY, S1_TS - 301, Some(&render)),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            run(&sent, &S1_BODY[1..], S1_TS, Some(&render)),
            Err(Rejection::BadSignature)
        );
        let other_ts = headers(&[
            ("x-slack-request-timestamp", "1531420619"),
            ("x-slack-signature", S1_SIG),
        ]);
        assert_eq!(
            run(&other_ts, S1_BODY, S1_TS, Some(&render)),
            Err(Rejection::BadSignature)
        );
        let hello = headers(&[
            ("x-slack-request-timestamp", "hello"),
            ("x-slack-signature", S1_SIG),
        ]);
        assert!(matches!(
            run(&hello, S1_BODY, S1_TS, Some(&render)),
            Err(Rejection::Malformed(_))
        ));
        let only_sig = headers(&[("x-slack-signature", S1_SIG)]);
        assert_eq!(
            run(&only_sig, S1_BODY, S1_TS, Some(&render)),
            Err(Rejection::MissingNamedHeader(
                "x-slack-request-timestamp".to_owned()
            ))
        );
        // Content that cannot be rendered refuses, never falls back to the bare body.
        let failing = |_: ContentInputs<'_>| None;
        assert!(matches!(
            run(&sent, S1_BODY, S1_TS, Some(&failing)),
            Err(Rejection::UnusableSecret(_))
        ));
        assert!(matches!(
            run(&sent, S1_BODY, S1_TS, None),
            Err(Rejection::UnusableSecret(_))
        ));
    }

    #[test]
    fn hmac_id_header_is_required_when_named() {
        let p = hmac_preset(HmacSpec {
            id_header: Some("x-id".to_owned()),
            custom_content: true,
            ..HmacSpec::new("x-signature".to_owned())
        });
        let render = |inputs: ContentInputs<'_>| Some(format!("{}.{}", inputs.id, inputs.body));
        let sig = "c26605b857c120f40ad5373fb580a9b816af38ff9727bc36a46c8d19066ceec3";
        let run = |sent: &HeaderMap| {
            check_request(
                &p,
                &Request {
                    headers: sent,
                    body: G_BODY,
                    query: None,
                    url: None,
                    content: Some(&render),
                    username: None,
                },
                0,
                &secrets(&[G_SECRET]),
            )
        };
        assert_eq!(
            run(&headers(&[("x-id", "msg_1"), ("x-signature", sig)])),
            Ok(())
        );
        assert_eq!(
            run(&headers(&[("x-id", "msg_2"), ("x-signature", sig)])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            run(&headers(&[("x-signature", sig)])),
            Err(Rejection::MissingNamedHeader("x-id".to_owned()))
        );
    }

    fn basic_check(
        authorization: Option<&str>,
        username: Option<&str>,
        passwords: &[&str],
    ) -> Result<(), Rejection> {
        let sent = match authorization {
            Some(value) => headers(&[("authorization", value)]),
            None => HeaderMap::new(),
        };
        let request = Request {
            headers: &sent,
            body: b"",
            query: None,
            url: None,
            content: None,
            username,
        };
        check_request(&preset(Scheme::Basic), &request, 0, &secrets(passwords))
    }

    #[test]
    fn basic_credentials() {
        // RFC 7617's example: Aladdin / open sesame.
        let aladdin = "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==";
        assert_eq!(
            basic_check(Some(aladdin), Some("Aladdin"), &["open sesame"]),
            Ok(())
        );
        assert_eq!(
            basic_check(
                Some(&aladdin.replace("Basic", "basic")),
                Some("Aladdin"),
                &["open sesame"]
            ),
            Ok(())
        );
        assert_eq!(
            basic_check(Some(aladdin), Some("Aladdin"), &["old", "open sesame"]),
            Ok(())
        );
        assert_eq!(
            basic_check(Some(aladdin), Some("aladdin"), &["open sesame"]),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            basic_check(Some(aladdin), Some("Aladdin"), &["open sesam"]),
            Err(Rejection::BadSignature)
        );
        // A password with `:` in it: `user:pa:ss`.
        let colon = format!("Basic {}", BASE64.encode("user:pa:ss"));
        assert_eq!(basic_check(Some(&colon), Some("user"), &["pa:ss"]), Ok(()));
        assert!(matches!(
            basic_check(
                Some("Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
                Some("Aladdin"),
                &["open sesame"]
            ),
            Err(Rejection::Malformed(_))
        ));
        let no_colon = format!("Basic {}", BASE64.encode("Aladdin"));
        assert!(matches!(
            basic_check(Some(&no_colon), Some("Aladdin"), &["open sesame"]),
            Err(Rejection::Malformed(_))
        ));
        assert!(matches!(
            basic_check(Some("Basic not-base64!"), Some("Aladdin"), &["open sesame"]),
            Err(Rejection::Malformed(_))
        ));
        assert_eq!(
            basic_check(None, Some("Aladdin"), &["open sesame"]),
            Err(Rejection::MissingHeader("authorization"))
        );
        assert_eq!(
            basic_check(Some(aladdin), None, &["open sesame"]),
            Err(Rejection::UnusableSecret("basic needs a username"))
        );
    }

    fn token_check(
        source: TokenSource,
        sent: &HeaderMap,
        query: Option<&str>,
        tokens: &[&str],
    ) -> Result<(), Rejection> {
        let p = Preset {
            token: Some(source),
            ..preset(Scheme::Token)
        };
        let request = Request {
            headers: sent,
            body: b"",
            query,
            url: None,
            content: None,
            username: None,
        };
        check_request(&p, &request, 0, &secrets(tokens))
    }

    #[test]
    fn token_in_a_header_or_the_query() {
        let header = || TokenSource::Header("x-token".to_owned());
        let query = || TokenSource::Query("token".to_owned());
        let sent = headers(&[("X-Token", "s3cret")]);
        assert_eq!(token_check(header(), &sent, None, &["s3cret"]), Ok(()));
        assert_eq!(
            token_check(header(), &sent, None, &["new", "s3cret"]),
            Ok(())
        );
        assert_eq!(
            token_check(header(), &sent, None, &["s3cre"]),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            token_check(header(), &HeaderMap::new(), None, &["s3cret"]),
            Err(Rejection::MissingNamedHeader("x-token".to_owned()))
        );
        let none = HeaderMap::new();
        assert_eq!(
            token_check(query(), &none, Some("a=1&token=s3cret"), &["s3cret"]),
            Ok(())
        );
        // Percent-encoded as any query value.
        assert_eq!(
            token_check(query(), &none, Some("token=a%2Bb"), &["a+b"]),
            Ok(())
        );
        assert_eq!(
            token_check(query(), &none, Some("token=s3cret2"), &["s3cret"]),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            token_check(query(), &none, Some("tok=s3cret"), &["s3cret"]),
            Err(Rejection::MissingQueryParameter("token".to_owned()))
        );
        assert_eq!(
            token_check(query(), &none, None, &["s3cret"]),
            Err(Rejection::MissingQueryParameter("token".to_owned()))
        );
        // A token in the header does not satisfy a query preset.
        assert_eq!(
            token_check(query(), &headers(&[("token", "s3cret")]), None, &["s3cret"]),
            Err(Rejection::MissingQueryParameter("token".to_owned()))
        );
    }

    #[test]
    fn every_preset_name_round_trips() {
        for name in VERIFY_PRESETS {
            assert_eq!(Scheme::from_name(name).map(Scheme::as_str), Some(*name));
        }
    }
}
