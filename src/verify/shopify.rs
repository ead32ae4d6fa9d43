//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.

use ::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Rejection, header, hmac_sha256, hmac_sha256_matches};

/// Shopify's header: the base64 HMAC-SHA256 of the body under the app's client secret.
pub(super) fn sign(body: &[u8], secret: &str) -> Result<Vec<(String, String)>, Rejection> {
    let mac = hmac_sha256(secret.as_bytes(), &[body])?;
    Ok(vec![(
        "x-shopify-hmac-sha256".to_owned(),
        BASE64.encode(mac),
    )])
}

pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[String],
) -> Result<(), Rejection> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{ST_BODY, headers, preset, secrets};
    use crate::verify::{Scheme, check};

    #[test]
    fn signing_reproduces_sh1_and_verifies() {
        let signed = sign(ST_BODY, "hush").unwrap();
        assert_eq!(
            signed,
            vec![(
                "x-shopify-hmac-sha256".to_owned(),
                "FAICgC8U4T61S6i2tta7AjOY9kLLQ7gEMFCBfdBJzOo=".to_owned()
            )]
        );
        let body = br#"{"id":820982911946154508}"#;
        let other = sign(body, "shpss_0123").unwrap();
        let sent = headers(&[("x-shopify-hmac-sha256", &other[0].1)]);
        let p = preset(Scheme::Shopify);
        assert_eq!(check(&p, &sent, body, 0, &secrets(&["shpss_0123"])), Ok(()));
        assert_eq!(
            check(&p, &sent, ST_BODY, 0, &secrets(&["shpss_0123"])),
            Err(Rejection::BadSignature)
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
}
