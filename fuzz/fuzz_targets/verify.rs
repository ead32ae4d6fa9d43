//! Signature schemes (`on.webhook.verify`): every preset's header parsing and check, over
//! arbitrary headers, bodies, secrets and clocks. A check never panics, and what it accepts
//! under one secret it refuses under another.
//!
//! Input (text, see fuzz/README.md):
//!
//! ```text
//! <scheme> [option...]                  github, stripe, ...; anything else picks one by its first byte
//! <Header-Name>: <value>                any number, repeats kept
//! @secret: <value>                      any number (rotation); a default per scheme without one
//! @now: <unix time>   @tolerance: <s>   @url: <twilio url>   @query: <query string>
//! @username: <basic user>               @prefix: <hmac prefix>
//!                                       an empty line, then the raw body
//! ```
//!
//! Options: `legacy_sha1` (github); `sha1`/`sha512`, `base64`, `timestamp` (x-timestamp),
//! `id` (x-id), `content` (signs `<id>.<timestamp>.<body>`), `content_fails` (hmac, whose
//! header is x-signature); `query` (token from `?token=` instead of x-token).
#![no_main]

use hookflow::verify::{
    Algorithm, ContentInputs, Encoding, HmacSpec, Preset, RenderContent, Request, Scheme,
    TokenSource, check_request, standard_webhooks_key, standard_webhooks_signature,
};
use hookflow_fuzz::{name_value, split_head, split_line};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// A secret the input never names unless it writes it out: the "other key" of the refusal check.
const OTHER_SECRET: &str = "fuzz-other-secret";
/// `OTHER_SECRET` as a Standard Webhooks key.
const OTHER_WHSEC: &str = "whsec_ZnV6ei1vdGhlci1zZWNyZXQ=";

#[derive(Default)]
struct Settings {
    secrets: Vec<String>,
    now: i64,
    tolerance: Option<u64>,
    url: Option<String>,
    query: Option<String>,
    username: Option<String>,
    prefix: String,
}

fuzz_target!(|data: &[u8]| {
    let (first, rest) = split_line(data);
    let first = String::from_utf8_lossy(first);
    let mut words = first.split(' ');
    let scheme = pick_scheme(words.next().unwrap_or_default(), data.first().copied());
    let options: Vec<&str> = words.collect();
    let (lines, body) = split_head(rest);
    let mut headers = HeaderMap::new();
    let mut settings = Settings::default();
    for line in lines {
        read_line(line, &mut headers, &mut settings);
    }
    if settings.secrets.is_empty() {
        settings.secrets.push(default_secret(scheme).to_owned());
    }
    let preset = preset(scheme, &options, &settings);
    let fails = options.contains(&"content_fails");
    let render = move |inputs: ContentInputs<'_>| {
        (!fails).then(|| format!("{}.{}.{}", inputs.id, inputs.timestamp, inputs.body))
    };
    let request = Request {
        headers: &headers,
        body,
        query: settings.query.as_deref(),
        url: Some(
            settings
                .url
                .as_deref()
                .unwrap_or("https://example.com/hook"),
        ),
        content: Some(&render as RenderContent<'_>),
        username: Some(settings.username.as_deref().unwrap_or("user")),
    };
    match check_request(&preset, &request, settings.now, &settings.secrets) {
        Ok(()) => refused_under_another_key(&preset, &request, &settings),
        Err(rejection) => assert!(!rejection.to_string().is_empty()),
    }
    signed_here_verifies_here(&headers, body, &settings);
});

fn pick_scheme(word: &str, first_byte: Option<u8>) -> Scheme {
    Scheme::from_name(word).unwrap_or_else(|| {
        let index = usize::from(first_byte.unwrap_or(0)) % Scheme::ALL.len();
        Scheme::ALL[index]
    })
}

fn read_line(line: &[u8], headers: &mut HeaderMap, settings: &mut Settings) {
    let Some((name, value)) = name_value(line) else {
        return;
    };
    if let Some(setting) = name.strip_prefix(b"@") {
        let value = String::from_utf8_lossy(value).into_owned();
        match setting {
            b"secret" => settings.secrets.push(value),
            b"now" => settings.now = value.trim().parse().unwrap_or(0),
            b"tolerance" => settings.tolerance = value.trim().parse().ok(),
            b"url" => settings.url = Some(value),
            b"query" => settings.query = Some(value),
            b"username" => settings.username = Some(value),
            b"prefix" => settings.prefix = value,
            _ => {}
        }
        return;
    }
    // What hyper would refuse never reaches a check.
    if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
        headers.append(name, value);
    }
}

fn default_secret(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::StandardWebhooks => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        _ => "It's a Secret to Everybody",
    }
}

fn preset(scheme: Scheme, options: &[&str], settings: &Settings) -> Preset {
    let has = |option: &str| options.contains(&option);
    let mut preset = Preset::new(scheme);
    if let Some(tolerance) = settings.tolerance {
        preset.tolerance_secs = tolerance;
    }
    preset.legacy_sha1 = has("legacy_sha1");
    if scheme == Scheme::Hmac {
        let mut spec = HmacSpec::new("x-signature".to_owned());
        spec.algorithm = if has("sha1") {
            Algorithm::Sha1
        } else if has("sha512") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        };
        if has("base64") {
            spec.encoding = Encoding::Base64;
        }
        spec.prefix = settings.prefix.clone();
        spec.timestamp_header = has("timestamp").then(|| "x-timestamp".to_owned());
        spec.id_header = has("id").then(|| "x-id".to_owned());
        spec.custom_content = has("content") || has("content_fails");
        preset.hmac = Some(spec);
    }
    if scheme == Scheme::Token {
        preset.token = Some(if has("query") {
            TokenSource::Query("token".to_owned())
        } else {
            TokenSource::Header("x-token".to_owned())
        });
    }
    preset
}

/// An accepted request names the secret (a token) or is signed with it (an HMAC): the same
/// request must fail under a key it was not made with.
fn refused_under_another_key(preset: &Preset, request: &Request<'_>, settings: &Settings) {
    let other = match preset.scheme {
        Scheme::StandardWebhooks => OTHER_WHSEC,
        _ => OTHER_SECRET,
    };
    if settings
        .secrets
        .iter()
        .any(|s| same_key(preset.scheme, s, other))
    {
        return;
    }
    let result = check_request(preset, request, settings.now, &[other.to_owned()]);
    assert!(result.is_err(), "accepted under two different keys");
}

/// Whether two secrets are one key: HMAC pads a short key with zeros, and a Standard Webhooks
/// secret is the base64 of its key, with or without `whsec_`.
fn same_key(scheme: Scheme, secret: &str, other: &str) -> bool {
    let key = |s: &str| -> Vec<u8> {
        let bytes = match scheme {
            Scheme::StandardWebhooks => standard_webhooks_key(s).unwrap_or_default(),
            _ => s.as_bytes().to_vec(),
        };
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        bytes[..end].to_vec()
    };
    key(secret) == key(other)
}

/// What hookflow signs for an outgoing request (`sign: standard_webhooks`) a hookflow receiver
/// accepts: the id sent is the `webhook-id` header of the input, the time is `@now`.
fn signed_here_verifies_here(headers: &HeaderMap, body: &[u8], settings: &Settings) {
    let secret = settings
        .secrets
        .iter()
        .find(|s| standard_webhooks_key(s).is_ok())
        .map_or(default_secret(Scheme::StandardWebhooks), String::as_str);
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("msg_fuzz");
    let Ok(signature) = standard_webhooks_signature(secret, id, settings.now, body) else {
        return;
    };
    let mut sent = HeaderMap::new();
    let (Ok(id_value), Ok(signature)) =
        (HeaderValue::from_str(id), HeaderValue::from_str(&signature))
    else {
        return;
    };
    sent.insert("webhook-id", id_value);
    sent.insert("webhook-timestamp", HeaderValue::from(settings.now));
    sent.insert("webhook-signature", signature);
    let request = Request {
        headers: &sent,
        body,
        query: None,
        url: None,
        content: None,
        username: None,
    };
    let preset = Preset::new(Scheme::StandardWebhooks);
    let result = check_request(&preset, &request, settings.now, &[secret.to_owned()]);
    assert_eq!(result, Ok(()), "id {id:?}");
}
