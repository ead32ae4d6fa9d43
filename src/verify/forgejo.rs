//! Forgejo: Gitea's scheme under its own header `X-Forgejo-Signature`, or the Gitea one it also
//! sends for compatibility.

use ::http::HeaderMap;

use super::gitea::bare_hex_sha256;
use super::{Rejection, header};

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
