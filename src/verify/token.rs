//! A shared token sent as it is, in a header or a query parameter the workflow names.

use super::{Preset, Rejection, Request, Signed, TokenSource, matches_any, named_header};

/// The token in the header or query parameter the preset names.
pub(super) fn sign(preset: &Preset, token: &str) -> Result<Signed, Rejection> {
    let source = preset.token.as_ref().ok_or(Rejection::UnusableSecret(
        "the token preset has no header or query",
    ))?;
    let pair = |name: &String| vec![(name.clone(), token.to_owned())];
    Ok(match source {
        TokenSource::Header(name) => Signed {
            headers: pair(name),
            query: Vec::new(),
        },
        TokenSource::Query(name) => Signed {
            headers: Vec::new(),
            query: pair(name),
        },
    })
}

/// A shared token in a header or a query parameter; any of `tokens` may match.
pub(super) fn verify(
    preset: &Preset,
    request: &Request<'_>,
    tokens: &[String],
) -> Result<(), Rejection> {
    let source = preset.token.as_ref().ok_or(Rejection::UnusableSecret(
        "the token preset has no header or query",
    ))?;
    let sent = match source {
        TokenSource::Header(name) => named_header(request.headers, name)?.to_owned(),
        TokenSource::Query(name) => request
            .query
            .and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.into_owned())
            })
            .ok_or_else(|| Rejection::MissingQueryParameter(name.clone()))?,
    };
    matches_any(&sent, tokens)
        .then_some(())
        .ok_or(Rejection::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{headers, preset, secrets};
    use crate::verify::{Scheme, check_request};
    use ::http::HeaderMap;

    fn token_check(
        source: TokenSource,
        sent: &HeaderMap,
        query: Option<&str>,
        tokens: &[&str],
    ) -> Result<(), Rejection> {
        let p = Preset {
            token: Some(source),
            ..preset(Scheme::Token)
        };
        let request = Request {
            headers: sent,
            body: b"",
            query,
            url: None,
            content: None,
            username: None,
        };
        check_request(&p, &request, 0, &secrets(tokens))
    }

    #[test]
    fn signing_puts_the_token_where_the_preset_reads_it() {
        let in_header = Preset {
            token: Some(TokenSource::Header("x-token".to_owned())),
            ..preset(Scheme::Token)
        };
        let signed = sign(&in_header, "s3cret").unwrap();
        assert_eq!(
            signed.headers,
            vec![("x-token".to_owned(), "s3cret".to_owned())]
        );
        let sent = headers(&[("x-token", &signed.headers[0].1)]);
        assert_eq!(
            token_check(
                TokenSource::Header("x-token".to_owned()),
                &sent,
                None,
                &["s3cret"]
            ),
            Ok(())
        );
        let in_query = Preset {
            token: Some(TokenSource::Query("token".to_owned())),
            ..preset(Scheme::Token)
        };
        let signed = sign(&in_query, "a+b").unwrap();
        assert_eq!(signed.query, vec![("token".to_owned(), "a+b".to_owned())]);
        assert!(signed.headers.is_empty());
    }

    #[test]
    fn token_in_a_header_or_the_query() {
        let header = || TokenSource::Header("x-token".to_owned());
        let query = || TokenSource::Query("token".to_owned());
        let sent = headers(&[("X-Token", "s3cret")]);
        assert_eq!(token_check(header(), &sent, None, &["s3cret"]), Ok(()));
        assert_eq!(
            token_check(header(), &sent, None, &["new", "s3cret"]),
            Ok(())
        );
        assert_eq!(
            token_check(header(), &sent, None, &["s3cre"]),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            token_check(header(), &HeaderMap::new(), None, &["s3cret"]),
            Err(Rejection::MissingNamedHeader("x-token".to_owned()))
        );
        let none = HeaderMap::new();
        assert_eq!(
            token_check(query(), &none, Some("a=1&token=s3cret"), &["s3cret"]),
            Ok(())
        );
        // Percent-encoded as any query value.
        assert_eq!(
            token_check(query(), &none, Some("token=a%2Bb"), &["a+b"]),
            Ok(())
        );
        assert_eq!(
            token_check(query(), &none, Some("token=s3cret2"), &["s3cret"]),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            token_check(query(), &none, Some("tok=s3cret"), &["s3cret"]),
            Err(Rejection::MissingQueryParameter("token".to_owned()))
        );
        assert_eq!(
            token_check(query(), &none, None, &["s3cret"]),
            Err(Rejection::MissingQueryParameter("token".to_owned()))
        );
        // A token in the header does not satisfy a query preset.
        assert_eq!(
            token_check(query(), &headers(&[("token", "s3cret")]), None, &["s3cret"]),
            Err(Rejection::MissingQueryParameter("token".to_owned()))
        );
    }
}
