//! Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<ts>:<body>">` with the timestamp in
//! `X-Slack-Request-Timestamp`, refused outside the tolerance either way.

use ::http::HeaderMap;

use super::{
    Preset, Rejection, header, hex_decode, hex_encode, hmac_sha256, hmac_sha256_matches, timestamp,
};

/// Slack's two headers at `now`: the timestamp and `v0=<hex HMAC-SHA256 of "v0:<now>:<body>">`.
pub(super) fn sign(
    body: &[u8],
    now: i64,
    secret: &str,
) -> Result<Vec<(String, String)>, Rejection> {
    let prefix = format!("v0:{now}:");
    let mac = hmac_sha256(secret.as_bytes(), &[prefix.as_bytes(), body])?;
    Ok(vec![
        ("x-slack-request-timestamp".to_owned(), now.to_string()),
        (
            "x-slack-signature".to_owned(),
            format!("v0={}", hex_encode(&mac)),
        ),
    ])
}

pub(super) fn verify(
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::verify::tests::{headers, preset, secrets};
    use crate::verify::{Scheme, check};

    pub(crate) const S1_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    pub(crate) const S1_SIG: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    pub(crate) const S1_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    pub(crate) const S1_TS: i64 = 1_531_420_618;

    #[test]
    fn signing_reproduces_s1_and_verifies() {
        let signed = sign(S1_BODY, S1_TS, S1_SECRET).unwrap();
        assert_eq!(
            signed,
            vec![
                (
                    "x-slack-request-timestamp".to_owned(),
                    "1531420618".to_owned()
                ),
                ("x-slack-signature".to_owned(), S1_SIG.to_owned()),
            ]
        );
        let now = 1_750_000_000;
        let body = b"token=abc&command=%2Fdeploy&text=api";
        let signed = sign(body, now, "slack-secret").unwrap();
        let sent = headers(&[
            ("x-slack-request-timestamp", &signed[0].1),
            ("x-slack-signature", &signed[1].1),
        ]);
        let p = preset(Scheme::Slack);
        assert_eq!(
            check(&p, &sent, body, now, &secrets(&["slack-secret"])),
            Ok(())
        );
        assert_eq!(
            check(&p, &sent, body, now, &secrets(&["other"])),
            Err(Rejection::BadSignature)
        );
    }

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
}
