//! Webhook signature schemes (`on.webhook.verify`): pure checks over the request headers, the raw
//! body bytes, the current time and the already rendered secrets. Nothing here reads the
//! environment or the clock, so every published test vector can be replayed exactly.
//!
//! Every comparison of a secret-derived value is constant time and over equal lengths: HMACs go
//! through `Mac::verify_slice`, tokens through fixed-size digests compared without early exit.
//!
//! One file per scheme (`github.rs`, `stripe.rs`, … `generic_hmac.rs` for the `hmac` preset) holds
//! its check and its published test vectors. This file holds what they share: the closed enum
//! [`Scheme`] whose [`Scheme::ALL`] is the one list of preset names, the compiled [`Preset`], the
//! [`Request`] a check reads, the [`Rejection`] it returns, [`check_request`] dispatching to the
//! scheme, and the header, HMAC, constant-time and timestamp helpers.
//!
//! Each scheme file also holds a `sign` counterpart, the sender's side (`hookflow send`); `sign.rs`
//! dispatches to them and names the headers a sender adds besides the signature.

use ::hmac::{Hmac, Mac};
use ::http::HeaderMap;
use sha2::{Digest, Sha256};

mod basic;
mod bitbucket;
mod forgejo;
mod generic_hmac;
mod gitea;
mod github;
mod gitlab;
mod shopify;
mod sign;
mod slack;
mod standard_webhooks;
mod stripe;
mod token;
mod twilio;

pub use generic_hmac::{Algorithm, Encoding, HmacSpec};
pub use sign::{Outgoing, Signed, sign};
pub use standard_webhooks::{standard_webhooks_key, standard_webhooks_signature};

/// The preset names of `on.webhook.verify`, in the order the docs list them.
pub const VERIFY_PRESETS: &[&str] = &Scheme::NAMES;

/// The replay window of the schemes that sign a timestamp, when the workflow sets none.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Which sender's scheme a preset checks; one file of this folder each.
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
    /// Every scheme, in the order the docs list them: the one list of scheme names.
    pub const ALL: [Scheme; 13] = [
        Scheme::Github,
        Scheme::Gitlab,
        Scheme::Stripe,
        Scheme::Shopify,
        Scheme::Slack,
        Scheme::StandardWebhooks,
        Scheme::Bitbucket,
        Scheme::Gitea,
        Scheme::Forgejo,
        Scheme::Twilio,
        Scheme::Hmac,
        Scheme::Basic,
        Scheme::Token,
    ];

    /// The names of [`Scheme::ALL`], in the same order (built at compile time, so
    /// [`VERIFY_PRESETS`] stays a constant).
    pub const NAMES: [&'static str; Self::ALL.len()] = {
        let mut names = [""; Self::ALL.len()];
        let mut i = 0;
        while i < Self::ALL.len() {
            names[i] = Self::ALL[i].as_str();
            i += 1;
        }
        names
    };

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scheme| scheme.as_str() == name)
    }

    /// The preset's key under `on.webhook.verify`.
    pub const fn as_str(self) -> &'static str {
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
        Scheme::Github => github::verify(preset, headers, body, secrets),
        Scheme::Gitlab => gitlab::verify(headers, secrets),
        Scheme::Stripe => stripe::verify(preset, headers, body, now, secrets),
        Scheme::Shopify => shopify::verify(headers, body, secrets),
        Scheme::Slack => slack::verify(preset, headers, body, now, secrets),
        Scheme::StandardWebhooks => standard_webhooks::verify(preset, headers, body, now, secrets),
        Scheme::Bitbucket => bitbucket::verify(headers, body, secrets),
        Scheme::Gitea => gitea::verify(headers, body, secrets),
        Scheme::Forgejo => forgejo::verify(headers, body, secrets),
        Scheme::Twilio => twilio::verify(request, secrets),
        Scheme::Hmac => generic_hmac::verify(preset, request, now, secrets),
        Scheme::Basic => basic::verify(request, secrets),
        Scheme::Token => token::verify(preset, request, secrets),
    }
}

// What the scheme files share: reading a header once, HMACs checked by `verify_slice`, hex, the
// constant-time token comparison, unix timestamps and the tolerance window.

/// A header a scheme reads, trimmed; refused when missing, repeated or not ASCII.
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

/// The HMAC-SHA256 of `parts` under `key`, for signing.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, Rejection> {
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|_| Rejection::UnusableSecret("the key cannot be used for HMAC"))?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

/// The HMAC-SHA1 of `parts` under `key`, for signing (GitHub's legacy header, Twilio).
fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, Rejection> {
    let mut mac = HmacSha1::new_from_slice(key)
        .map_err(|_| Rejection::UnusableSecret("the key cannot be used for HMAC"))?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Lower-case hex, as every hex-signing sender writes it.
fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
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

/// The preset's tolerance as a signed number of seconds, for arithmetic on unix times.
fn tolerance(preset: &Preset) -> i64 {
    i64::try_from(preset.tolerance_secs).unwrap_or(i64::MAX)
}

/// Like `header`, for a header name the workflow chose (`hmac`, `token`).
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::verify::github::tests::{G_BODY, G_SECRET, G1};
    use crate::verify::standard_webhooks::tests::{
        W1_BODY, W1_ID, W1_SECRET, W1_SIG, W1_TS, w1_headers,
    };

    /// The body the Stripe, Shopify, Bitbucket, Gitea, Forgejo and `hmac` vectors sign.
    pub(crate) const ST_BODY: &[u8] = br#"{"event":"ping","id":42}"#;

    pub(crate) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    pub(crate) fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    pub(crate) fn preset(scheme: Scheme) -> Preset {
        Preset::new(scheme)
    }

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
    fn every_preset_name_round_trips() {
        for name in VERIFY_PRESETS {
            assert_eq!(Scheme::from_name(name).map(Scheme::as_str), Some(*name));
        }
    }
}
