//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, and on request the legacy
//! SHA-1 `X-Hub-Signature`. GitHub sends both, and so does [`sign`].

use ::http::HeaderMap;

use super::{
    Preset, Rejection, header, hex_decode, hex_encode, hmac_sha1, hmac_sha1_matches, hmac_sha256,
    hmac_sha256_matches,
};

/// The headers GitHub signs a delivery with: the SHA-256 one, and the legacy SHA-1 one it still
/// sends alongside.
pub(super) fn sign(body: &[u8], secret: &str) -> Result<Vec<(String, String)>, Rejection> {
    let sha256 = hex_encode(&hmac_sha256(secret.as_bytes(), &[body])?);
    let sha1 = hex_encode(&hmac_sha1(secret.as_bytes(), &[body])?);
    Ok(vec![
        ("x-hub-signature-256".to_owned(), format!("sha256={sha256}")),
        ("x-hub-signature".to_owned(), format!("sha1={sha1}")),
    ])
}

pub(super) fn verify(
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::verify::Preset;
    use crate::verify::tests::{headers, preset, secrets};
    use crate::verify::{Scheme, check};
    use ::http::HeaderMap;

    // G1, G2
    pub(crate) const G_SECRET: &str = "It's a Secret to Everybody";
    pub(crate) const G_BODY: &[u8] = b"Hello, World!";
    pub(crate) const G1: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    pub(crate) const G2: &str = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";

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
    fn signing_reproduces_g1_and_g2_and_verifies() {
        let signed = sign(G_BODY, G_SECRET).unwrap();
        assert_eq!(
            signed,
            vec![
                ("x-hub-signature-256".to_owned(), G1.to_owned()),
                ("x-hub-signature".to_owned(), G2.to_owned()),
            ]
        );
        let sent = headers(&[("x-hub-signature-256", &signed[0].1)]);
        let body = br#"{"zen":"Design for failure."}"#;
        let other = sign(body, "another secret").unwrap();
        let other_sent = headers(&[("x-hub-signature-256", &other[0].1)]);
        let p = preset(Scheme::Github);
        assert_eq!(check(&p, &sent, G_BODY, 0, &secrets(&[G_SECRET])), Ok(()));
        assert_eq!(
            check(&p, &other_sent, body, 0, &secrets(&["another secret"])),
            Ok(())
        );
        assert_eq!(
            check(&p, &other_sent, body, 0, &secrets(&[G_SECRET])),
            Err(Rejection::BadSignature)
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
}
