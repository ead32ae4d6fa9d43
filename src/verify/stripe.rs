//! Stripe: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`; only a
//! timestamp older than the tolerance is refused.

use ::http::HeaderMap;

use super::{
    Preset, Rejection, header, hex_decode, hex_encode, hmac_sha256, hmac_sha256_matches, timestamp,
    tolerance,
};

/// Stripe's header at `now`: `t=<now>,v1=<hex HMAC-SHA256 of "<now>.<body>">`, keyed by the whole
/// `whsec_` string (not decoded, unlike Standard Webhooks).
pub(super) fn sign(
    body: &[u8],
    now: i64,
    secret: &str,
) -> Result<Vec<(String, String)>, Rejection> {
    let prefix = format!("{now}.");
    let mac = hmac_sha256(secret.as_bytes(), &[prefix.as_bytes(), body])?;
    Ok(vec![(
        "stripe-signature".to_owned(),
        format!("t={now},v1={}", hex_encode(&mac)),
    )])
}

pub(super) fn verify(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::standard_webhooks::tests::W1_SECRET;
    use crate::verify::tests::{ST_BODY, headers, preset, secrets};
    use crate::verify::{Scheme, check};

    const ST1: &str =
        "t=1700000000,v1=9890228da14bae54b7a0781fd00a7245f2a35befaf6fdaa680dbc1f38547654f";

    #[test]
    fn signing_reproduces_st1_and_st2_and_verifies() {
        let st1 = sign(ST_BODY, 1_700_000_000, "whsec_test_secret").unwrap();
        assert_eq!(st1, vec![("stripe-signature".to_owned(), ST1.to_owned())]);
        let st2 = sign(br#"{"test": 2432232314}"#, 1_614_265_330, W1_SECRET).unwrap();
        assert_eq!(
            st2[0].1,
            "t=1614265330,v1=2e37df5d4a028c51a7f3133d64ae1e300d2c2c900f1b1d49d4369ad2530f8964"
        );
        let now = 1_750_000_000;
        let signed = sign(b"{\"id\":\"evt_1\"}", now, "whsec_abc").unwrap();
        let sent = headers(&[("stripe-signature", &signed[0].1)]);
        let p = preset(Scheme::Stripe);
        let s = secrets(&["whsec_abc"]);
        assert_eq!(check(&p, &sent, b"{\"id\":\"evt_1\"}", now, &s), Ok(()));
        assert_eq!(
            check(&p, &sent, b"{\"id\":\"evt_1\"}", now + 301, &s),
            Err(Rejection::StaleTimestamp)
        );
    }

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
}
