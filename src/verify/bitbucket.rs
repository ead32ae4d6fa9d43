//! Bitbucket Cloud: `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>`.

use ::http::HeaderMap;

use super::{Rejection, header, hex_decode, hex_encode, hmac_sha256, hmac_sha256_matches};

/// Bitbucket Cloud's header: `sha256=<hex HMAC-SHA256 of the body>` in `X-Hub-Signature`.
pub(super) fn sign(body: &[u8], secret: &str) -> Result<Vec<(String, String)>, Rejection> {
    let mac = hmac_sha256(secret.as_bytes(), &[body])?;
    Ok(vec![(
        "x-hub-signature".to_owned(),
        format!("sha256={}", hex_encode(&mac)),
    )])
}

/// Bitbucket Cloud reuses GitHub's legacy header name with SHA-256: the preset, not the header,
/// decides the algorithm.
pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[String],
) -> Result<(), Rejection> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{ST_BODY, headers, preset, secrets};
    use crate::verify::{Scheme, check};

    const B1: &str = "sha256=7d4e732b39dfc86e7e532e0209097807da77dd3486513c41bb8a2206e911cf89";

    #[test]
    fn signing_reproduces_b1_and_verifies() {
        let signed = sign(ST_BODY, "bb-secret").unwrap();
        assert_eq!(signed, vec![("x-hub-signature".to_owned(), B1.to_owned())]);
        let body = br#"{"push":{"changes":[]}}"#;
        let other = sign(body, "bb-other").unwrap();
        let sent = headers(&[("x-hub-signature", &other[0].1)]);
        let p = preset(Scheme::Bitbucket);
        assert_eq!(check(&p, &sent, body, 0, &secrets(&["bb-other"])), Ok(()));
        assert_eq!(
            check(&p, &sent, body, 0, &secrets(&["bb-secret"])),
            Err(Rejection::BadSignature)
        );
    }

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
}
