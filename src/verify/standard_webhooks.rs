//! Standard Webhooks (and Svix): `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "<id>.<timestamp>.<body>">`, keyed by the base64 `whsec_` secret; also how outgoing `http`
//! steps sign.

use ::hmac::Mac;
use ::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{HmacSha256, Preset, Rejection, header, hmac_sha256_matches, timestamp};

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

/// The three headers of a Standard Webhooks delivery `id` at `now`.
pub(super) fn sign(
    id: &str,
    now: i64,
    body: &[u8],
    secret: &str,
) -> Result<Vec<(String, String)>, Rejection> {
    let signature = standard_webhooks_signature(secret, id, now, body)?;
    Ok(vec![
        ("webhook-id".to_owned(), id.trim().to_owned()),
        ("webhook-timestamp".to_owned(), now.to_string()),
        ("webhook-signature".to_owned(), signature),
    ])
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

pub(super) fn verify(
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
pub(super) mod tests {
    use super::*;
    use crate::verify::tests::{headers, preset, secrets};
    use crate::verify::{Scheme, check};
    use ::http::HeaderMap;

    pub(crate) const W1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    pub(crate) const W1_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    pub(crate) const W1_TS: i64 = 1_614_265_330;
    pub(crate) const W1_BODY: &[u8] = br#"{"test": 2432232314}"#;
    pub(crate) const W1_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    pub(crate) const W2_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    pub(crate) fn w1_headers(signature: &str) -> HeaderMap {
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

    #[test]
    fn signing_reproduces_w1_and_verifies() {
        let signed = sign(W1_ID, W1_TS, W1_BODY, W1_SECRET).unwrap();
        assert_eq!(
            signed,
            vec![
                ("webhook-id".to_owned(), W1_ID.to_owned()),
                ("webhook-timestamp".to_owned(), "1614265330".to_owned()),
                ("webhook-signature".to_owned(), W1_SIG.to_owned()),
            ]
        );
        let sent = w1_headers(&signed[2].1);
        let p = preset(Scheme::StandardWebhooks);
        assert_eq!(
            check(&p, &sent, W1_BODY, W1_TS, &secrets(&[W1_SECRET])),
            Ok(())
        );
        assert_eq!(
            check(&p, &sent, W1_BODY, W1_TS, &secrets(&[W2_SECRET])),
            Err(Rejection::BadSignature)
        );
        assert!(sign(W1_ID, W1_TS, W1_BODY, "not base64!").is_err());
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
}
