//! The generic `hmac` preset: a MAC the workflow describes (header, digest, encoding, prefix,
//! signed content, timestamp and id headers), for senders without a preset of their own.

use ::hmac::{Hmac, Mac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{
    ContentInputs, HmacSha1, HmacSha256, Outgoing, Preset, Rejection, Request, hex_decode,
    hex_encode, named_header, timestamp,
};

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

/// The MAC of `content` under `key` with the spec's digest.
fn mac_of(algorithm: Algorithm, key: &[u8], content: &[u8]) -> Result<Vec<u8>, Rejection> {
    fn compute<M: Mac + hmac::digest::KeyInit>(
        key: &[u8],
        content: &[u8],
    ) -> Result<Vec<u8>, Rejection> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .map_err(|_| Rejection::UnusableSecret("the key cannot be used for HMAC"))?;
        mac.update(content);
        Ok(mac.finalize().into_bytes().to_vec())
    }
    match algorithm {
        Algorithm::Sha1 => compute::<HmacSha1>(key, content),
        Algorithm::Sha256 => compute::<HmacSha256>(key, content),
        Algorithm::Sha512 => compute::<Hmac<sha2::Sha512>>(key, content),
    }
}

/// The headers of a generic `hmac` preset at `now`: the signature, and the timestamp and id
/// headers when the preset names them (the id is the delivery's).
pub(super) fn sign(
    preset: &Preset,
    outgoing: &Outgoing<'_>,
    now: i64,
    secret: &str,
) -> Result<Vec<(String, String)>, Rejection> {
    let spec = preset
        .hmac
        .as_ref()
        .ok_or(Rejection::UnusableSecret("the hmac preset has no settings"))?;
    let mut headers = Vec::new();
    let timestamp = match &spec.timestamp_header {
        Some(name) => {
            headers.push((name.clone(), now.to_string()));
            now.to_string()
        }
        None => String::new(),
    };
    let id = match &spec.id_header {
        Some(name) => {
            headers.push((name.clone(), outgoing.id.to_owned()));
            outgoing.id
        }
        None => "",
    };
    let rendered;
    let content: &[u8] = if spec.custom_content {
        let render = outgoing.content.ok_or(Rejection::UnusableSecret(
            "the hmac content cannot be rendered",
        ))?;
        let body = String::from_utf8_lossy(outgoing.body);
        rendered = render(ContentInputs {
            body: &body,
            timestamp: &timestamp,
            id,
        })
        .ok_or(Rejection::UnusableSecret(
            "the hmac content cannot be rendered",
        ))?;
        rendered.as_bytes()
    } else {
        outgoing.body
    };
    let mac = mac_of(spec.algorithm, secret.as_bytes(), content)?;
    let encoded = match spec.encoding {
        Encoding::Hex => hex_encode(&mac),
        Encoding::Base64 => BASE64.encode(mac),
    };
    headers.insert(
        0,
        (spec.header.clone(), format!("{}{encoded}", spec.prefix)),
    );
    Ok(headers)
}

/// A generic `hmac` preset: `<prefix><encoded MAC>` in one header, over the raw body or the
/// rendered `content`, with an optional timestamp window.
pub(super) fn verify(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::github::tests::{G_BODY, G_SECRET, G1, G2};
    use crate::verify::slack::tests::{S1_BODY, S1_SECRET, S1_SIG, S1_TS};
    use crate::verify::tests::{ST_BODY, headers, preset, secrets};
    use crate::verify::{RenderContent, Scheme, check, check_request};
    use ::http::HeaderMap;

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

    fn outgoing<'a>(body: &'a [u8], content: Option<RenderContent<'a>>) -> Outgoing<'a> {
        Outgoing {
            body,
            url: "http://127.0.0.1:8080/hooks/x",
            form: false,
            id: "msg_1",
            content,
            username: None,
        }
    }

    #[test]
    fn signing_reproduces_g1_and_s1_and_verifies() {
        let github = hmac_preset(HmacSpec {
            prefix: "sha256=".to_owned(),
            ..HmacSpec::new("x-hub-signature-256".to_owned())
        });
        let signed = sign(&github, &outgoing(G_BODY, None), 0, G_SECRET).unwrap();
        assert_eq!(
            signed,
            vec![("x-hub-signature-256".to_owned(), G1.to_owned())]
        );
        let sha512 = hmac_preset(HmacSpec {
            algorithm: Algorithm::Sha512,
            ..HmacSpec::new("x-signature".to_owned())
        });
        let signed = sign(&sha512, &outgoing(G_BODY, None), 0, G_SECRET).unwrap();
        assert_eq!(signed[0].1, G_SHA512);
        // Slack's scheme described as `hmac`, with a timestamp header and content.
        let slack = hmac_preset(HmacSpec {
            prefix: "v0=".to_owned(),
            timestamp_header: Some("x-slack-request-timestamp".to_owned()),
            id_header: Some("x-id".to_owned()),
            custom_content: true,
            ..HmacSpec::new("x-slack-signature".to_owned())
        });
        let render =
            |inputs: ContentInputs<'_>| Some(format!("v0:{}:{}", inputs.timestamp, inputs.body));
        let signed = sign(&slack, &outgoing(S1_BODY, Some(&render)), S1_TS, S1_SECRET).unwrap();
        assert_eq!(
            signed,
            vec![
                ("x-slack-signature".to_owned(), S1_SIG.to_owned()),
                (
                    "x-slack-request-timestamp".to_owned(),
                    "1531420618".to_owned()
                ),
                ("x-id".to_owned(), "msg_1".to_owned()),
            ]
        );
        let sent = headers(&[
            ("x-slack-signature", &signed[0].1),
            ("x-slack-request-timestamp", &signed[1].1),
            ("x-id", &signed[2].1),
        ]);
        let request = Request {
            headers: &sent,
            body: S1_BODY,
            query: None,
            url: None,
            content: Some(&render),
            username: None,
        };
        assert_eq!(
            check_request(&slack, &request, S1_TS, &secrets(&[S1_SECRET])),
            Ok(())
        );
        assert!(sign(&slack, &outgoing(S1_BODY, None), S1_TS, S1_SECRET).is_err());
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
}
