//! Forgejo: Gitea's scheme under its own header `X-Forgejo-Signature`, or the Gitea one it also
//! sends for compatibility.

use ::http::HeaderMap;

use super::gitea::bare_hex_sha256;
use super::{Rejection, header};

/// Forgejo's own header first, then the Gitea ones it also sends.
pub(super) fn sign(body: &[u8], secret: &str) -> Result<Vec<(String, String)>, Rejection> {
    let gitea = super::gitea::sign(body, secret)?;
    let own = gitea
        .first()
        .map(|(_, hex)| hex.clone())
        .unwrap_or_default();
    let mut headers = vec![("x-forgejo-signature".to_owned(), own)];
    headers.extend(gitea);
    Ok(headers)
}

pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[String],
) -> Result<(), Rejection> {
    // Forgejo sends its own header and, for compatibility, the Gitea one.
    let value = if headers.get("x-forgejo-signature").is_some() {
        header(headers, "x-forgejo-signature")?
    } else {
        header(headers, "x-gitea-signature")?
    };
    bare_hex_sha256(value, body, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::gitea::tests::GT1;
    use crate::verify::tests::{ST_BODY, headers, preset, secrets};
    use crate::verify::{Scheme, check};

    #[test]
    fn signing_reproduces_gt1_under_both_names_and_verifies() {
        let signed = sign(ST_BODY, "gitea-secret").unwrap();
        assert_eq!(
            signed[0],
            ("x-forgejo-signature".to_owned(), GT1.to_owned())
        );
        assert_eq!(signed[1], ("x-gitea-signature".to_owned(), GT1.to_owned()));
        let sent = headers(&[("x-forgejo-signature", &signed[0].1)]);
        let p = preset(Scheme::Forgejo);
        assert_eq!(
            check(&p, &sent, ST_BODY, 0, &secrets(&["gitea-secret"])),
            Ok(())
        );
        assert_eq!(
            check(&p, &sent, ST_BODY, 0, &secrets(&["other"])),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn forgejo_gt1_with_either_header() {
        let p = preset(Scheme::Forgejo);
        let s = secrets(&["gitea-secret"]);
        assert_eq!(
            check(
                &p,
                &headers(&[("x-forgejo-signature", GT1)]),
                ST_BODY,
                0,
                &s
            ),
            Ok(())
        );
        assert_eq!(
            check(&p, &headers(&[("x-gitea-signature", GT1)]), ST_BODY, 0, &s),
            Ok(())
        );
        // With both present, Forgejo's own header decides.
        let both = headers(&[
            ("x-forgejo-signature", &GT1.replace('0', "1")),
            ("x-gitea-signature", GT1),
        ]);
        assert_eq!(
            check(&p, &both, ST_BODY, 0, &s),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(
                &p,
                &headers(&[("x-forgejo-signature", GT1)]),
                ST_BODY,
                0,
                &secrets(&["other"])
            ),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &HeaderMap::new(), ST_BODY, 0, &s),
            Err(Rejection::MissingHeader("x-gitea-signature"))
        );
    }
}
