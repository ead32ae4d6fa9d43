//! HTTP Basic authentication: `Authorization: Basic base64(user:password)`, the password being
//! the secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Rejection, Request, header, matches_any};

/// `Authorization: Basic base64(user:password)`.
pub(super) fn sign(
    username: Option<&str>,
    password: &str,
) -> Result<Vec<(String, String)>, Rejection> {
    let username = username
        .filter(|u| !u.is_empty())
        .ok_or(Rejection::UnusableSecret("basic needs a username"))?;
    let credentials = BASE64.encode(format!("{username}:{password}"));
    Ok(vec![(
        "authorization".to_owned(),
        format!("Basic {credentials}"),
    )])
}

/// `Authorization: Basic base64(user:password)`; the password is the secret (any may match).
pub(super) fn verify(request: &Request<'_>, passwords: &[String]) -> Result<(), Rejection> {
    let username = request
        .username
        .filter(|u| !u.is_empty())
        .ok_or(Rejection::UnusableSecret("basic needs a username"))?;
    let value = header(request.headers, "authorization")?;
    let (kind, encoded) = value.split_once(' ').ok_or(Rejection::Malformed(
        "Authorization is not `Basic <credentials>`",
    ))?;
    if !kind.eq_ignore_ascii_case("basic") {
        return Err(Rejection::Malformed(
            "Authorization is not `Basic <credentials>`",
        ));
    }
    let decoded = BASE64
        .decode(encoded.trim())
        .map_err(|_| Rejection::Malformed("the Basic credentials are not base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| Rejection::Malformed("the Basic credentials are not UTF-8"))?;
    // The user name cannot contain `:` (RFC 7617); the password may.
    let (sent_user, sent_password) = decoded
        .split_once(':')
        .ok_or(Rejection::Malformed("the Basic credentials have no ':'"))?;
    // Both are compared whatever the first gives, so timing tells neither apart.
    let user_ok = matches_any(sent_user, &[username.to_owned()]);
    let password_ok = matches_any(sent_password, passwords);
    (user_ok & password_ok)
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{headers, preset, secrets};
    use crate::verify::{Scheme, check_request};
    use ::http::HeaderMap;

    fn basic_check(
        authorization: Option<&str>,
        username: Option<&str>,
        passwords: &[&str],
    ) -> Result<(), Rejection> {
        let sent = match authorization {
            Some(value) => headers(&[("authorization", value)]),
            None => HeaderMap::new(),
        };
        let request = Request {
            headers: &sent,
            body: b"",
            query: None,
            url: None,
            content: None,
            username,
        };
        check_request(&preset(Scheme::Basic), &request, 0, &secrets(passwords))
    }

    #[test]
    fn signing_reproduces_the_rfc_7617_example_and_verifies() {
        let signed = sign(Some("Aladdin"), "open sesame").unwrap();
        assert_eq!(
            signed,
            vec![(
                "authorization".to_owned(),
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".to_owned()
            )]
        );
        assert_eq!(
            basic_check(Some(&signed[0].1), Some("Aladdin"), &["open sesame"]),
            Ok(())
        );
        assert_eq!(
            basic_check(Some(&signed[0].1), Some("Aladdin"), &["other"]),
            Err(Rejection::BadSignature)
        );
        assert!(sign(None, "open sesame").is_err());
    }

    #[test]
    fn basic_credentials() {
        // RFC 7617's example: Aladdin / open sesame.
        let aladdin = "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==";
        assert_eq!(
            basic_check(Some(aladdin), Some("Aladdin"), &["open sesame"]),
            Ok(())
        );
        assert_eq!(
            basic_check(
                Some(&aladdin.replace("Basic", "basic")),
                Some("Aladdin"),
                &["open sesame"]
            ),
            Ok(())
        );
        assert_eq!(
            basic_check(Some(aladdin), Some("Aladdin"), &["old", "open sesame"]),
            Ok(())
        );
        assert_eq!(
            basic_check(Some(aladdin), Some("aladdin"), &["open sesame"]),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            basic_check(Some(aladdin), Some("Aladdin"), &["open sesam"]),
            Err(Rejection::BadSignature)
        );
        // A password with `:` in it: `user:pa:ss`.
        let colon = format!("Basic {}", BASE64.encode("user:pa:ss"));
        assert_eq!(basic_check(Some(&colon), Some("user"), &["pa:ss"]), Ok(()));
        assert!(matches!(
            basic_check(
                Some("Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
                Some("Aladdin"),
                &["open sesame"]
            ),
            Err(Rejection::Malformed(_))
        ));
        let no_colon = format!("Basic {}", BASE64.encode("Aladdin"));
        assert!(matches!(
            basic_check(Some(&no_colon), Some("Aladdin"), &["open sesame"]),
            Err(Rejection::Malformed(_))
        ));
        assert!(matches!(
            basic_check(Some("Basic not-base64!"), Some("Aladdin"), &["open sesame"]),
            Err(Rejection::Malformed(_))
        ));
        assert_eq!(
            basic_check(None, Some("Aladdin"), &["open sesame"]),
            Err(Rejection::MissingHeader("authorization"))
        );
        assert_eq!(
            basic_check(Some(aladdin), None, &["open sesame"]),
            Err(Rejection::UnusableSecret("basic needs a username"))
        );
    }
}
