//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.

use ::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Rejection, header, hmac_sha256_matches};

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
