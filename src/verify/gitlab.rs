//! GitLab: the secret token itself in `X-Gitlab-Token`, compared in constant time.

use ::http::HeaderMap;

use super::{Rejection, header, matches_any};

/// GitLab signs nothing: it sends the secret token itself.
pub(super) fn sign(token: &str) -> Vec<(String, String)> {
    vec![("x-gitlab-token".to_owned(), token.to_owned())]
}

pub(super) fn verify(headers: &HeaderMap, tokens: &[String]) -> Result<(), Rejection> {
    let sent = header(headers, "x-gitlab-token")?;
    matches_any(sent, tokens)
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{headers, preset, secrets};
    use crate::verify::{Scheme, check};
    use ::http::HeaderMap;

    #[test]
    fn signing_sends_the_token_gl1() {
        let signed = sign("my-gitlab-token");
        assert_eq!(
            signed,
            vec![("x-gitlab-token".to_owned(), "my-gitlab-token".to_owned())]
        );
        let sent = headers(&[("x-gitlab-token", &signed[0].1)]);
        let p = preset(Scheme::Gitlab);
        assert_eq!(
            check(&p, &sent, b"{}", 0, &secrets(&["my-gitlab-token"])),
            Ok(())
        );
        assert_eq!(
            check(&p, &sent, b"{}", 0, &secrets(&["other"])),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn gitlab_gl1() {
        let p = preset(Scheme::Gitlab);
        let sent = headers(&[("x-gitlab-token", "my-gitlab-token")]);
        assert_eq!(
            check(&p, &sent, b"", 0, &secrets(&["my-gitlab-token"])),
            Ok(())
        );
        assert_eq!(
            check(&p, &sent, b"", 0, &secrets(&["new", "my-gitlab-token"])),
            Ok(())
        );
        assert_eq!(
            check(&p, &sent, b"", 0, &secrets(&["my-gitlab-token2"])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&p, &sent, b"", 0, &secrets(&["my-gitlab-toke"])),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(
                &p,
                &HeaderMap::new(),
                b"",
                0,
                &secrets(&["my-gitlab-token"])
            ),
            Err(Rejection::MissingHeader("x-gitlab-token"))
        );
    }
}
