//! Gitea: `X-Gitea-Signature: <hex HMAC-SHA256 of the body>`, with no prefix.

use ::http::HeaderMap;

use super::{Rejection, header, hex_decode, hex_encode, hmac_sha256, hmac_sha256_matches};

/// Gitea's headers: the bare hex HMAC-SHA256 of the body, under its own name and Gogs'.
pub(super) fn sign(body: &[u8], secret: &str) -> Result<Vec<(String, String)>, Rejection> {
    let hex = hex_encode(&hmac_sha256(secret.as_bytes(), &[body])?);
    Ok(vec![
        ("x-gitea-signature".to_owned(), hex.clone()),
        ("x-gogs-signature".to_owned(), hex),
    ])
}

pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[String],
) -> Result<(), Rejection> {
    bare_hex_sha256(header(headers, "x-gitea-signature")?, body, secrets)
}

/// Gitea and Forgejo: the HMAC-SHA256 of the raw body as hex, with no prefix.
pub(super) fn bare_hex_sha256(
    value: &str,
    body: &[u8],
    secrets: &[String],
) -> Result<(), Rejection> {
    let expected = hex_decode(value).ok_or(Rejection::Malformed("the signature is not hex"))?;
    secrets
        .iter()
        .any(|s| hmac_sha256_matches(s.as_bytes(), &[body], &expected))
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::verify::tests::{ST_BODY, headers, preset, secrets};
    use crate::verify::{Scheme, check};

    pub(crate) const GT1: &str = "0423390bd19da5eac4f09ec9263c058f54a19723e780f1970bf2797c82030a9c";

    #[test]
    fn signing_reproduces_gt1_and_verifies() {
        let signed = sign(ST_BODY, "gitea-secret").unwrap();
        assert_eq!(signed[0], ("x-gitea-signature".to_owned(), GT1.to_owned()));
        let body = br#"{"ref":"refs/heads/main"}"#;
        let other = sign(body, "another").unwrap();
        let sent = headers(&[("x-gitea-signature", &other[0].1)]);
        let p = preset(Scheme::Gitea);
        assert_eq!(check(&p, &sent, body, 0, &secrets(&["another"])), Ok(()));
        assert_eq!(
            check(&p, &sent, body, 0, &secrets(&["gitea-secret"])),
            Err(Rejection::BadSignature)
        );
    }

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
}
