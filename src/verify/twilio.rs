//! Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1 of the public URL and the sorted form
//! parameters>`, or of the URL alone when it binds a JSON body by its `bodySHA256`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use super::{
    Rejection, Request, Signed, header, hex_decode, hex_encode, hmac_sha1, hmac_sha1_matches,
};

/// Twilio's header for a request to `url`, the URL actually called (query included). A form
/// body's parameters are signed after the URL; any other body is bound instead by its SHA-256 in
/// a `bodySHA256` query parameter, which Twilio adds to the URL it calls: returned in `query`
/// for the caller to add, and signed as part of the URL.
pub(super) fn sign(url: &str, body: &[u8], form: bool, secret: &str) -> Result<Signed, Rejection> {
    let mut query = Vec::new();
    let mut signed = url.to_owned();
    if form {
        let mut params: Vec<(String, String)> =
            url::form_urlencoded::parse(body).into_owned().collect();
        params.sort();
        for (key, value) in params {
            signed.push_str(&key);
            signed.push_str(&value);
        }
    } else {
        let hash = hex_encode(&Sha256::digest(body));
        signed.push(if url.contains('?') { '&' } else { '?' });
        signed.push_str(&format!("bodySHA256={hash}"));
        query.push(("bodySHA256".to_owned(), hash));
    }
    let mac = hmac_sha1(secret.as_bytes(), &[signed.as_bytes()])?;
    Ok(Signed {
        headers: vec![("x-twilio-signature".to_owned(), BASE64.encode(mac))],
        query,
    })
}

/// Twilio: base64 HMAC-SHA1 of the public URL followed by every form parameter's key and value,
/// sorted by key then value. A JSON body is bound instead by `bodySHA256=<hex>` in the URL.
pub(super) fn verify(request: &Request<'_>, secrets: &[String]) -> Result<(), Rejection> {
    let configured = request
        .url
        .filter(|u| !u.is_empty())
        .ok_or(Rejection::UnusableSecret("twilio needs the public url"))?;
    let value = header(request.headers, "x-twilio-signature")?;
    let expected = BASE64
        .decode(value)
        .map_err(|_| Rejection::Malformed("X-Twilio-Signature is not base64"))?;
    // Twilio signs the URL it called, query included; a configured URL with its own query
    // string wins, since the proxy in between may have rewritten the request's.
    let url = match request.query {
        Some(query) if !query.is_empty() && !configured.contains('?') => {
            format!("{configured}?{query}")
        }
        _ => configured.to_owned(),
    };
    let mut signed_params = String::new();
    if let Some(hash) = query_param(&url, "bodySHA256") {
        // The body hash is public (it is in the URL), so a plain comparison leaks nothing.
        let actual = Sha256::digest(request.body);
        if hex_decode(&hash).as_deref() != Some(actual.as_slice()) {
            return Err(Rejection::BadSignature);
        }
    } else {
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(request.body)
            .into_owned()
            .collect();
        // Sorting the pairs orders by key, then by value for repeated keys, as Twilio does.
        params.sort();
        for (key, value) in params {
            signed_params.push_str(&key);
            signed_params.push_str(&value);
        }
    }
    // Twilio's validators accept the URL both without a port and with one (the default port
    // when none is written), as the URL seen by the sender may differ from the configured one.
    let candidates = [url_without_port(&url), url_with_port(&url)];
    let matched = candidates.iter().any(|candidate| {
        secrets.iter().any(|s| {
            hmac_sha1_matches(
                s.as_bytes(),
                &[candidate.as_bytes(), signed_params.as_bytes()],
                &expected,
            )
        })
    });
    matched.then_some(()).ok_or(Rejection::BadSignature)
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let (_, rest) = url.split_once('?')?;
    let query = rest.split('#').next().unwrap_or(rest);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `(scheme://, host, port, rest)` of an absolute URL; `None` when it has no `://`.
fn url_parts(url: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let start = url.find("://")? + 3;
    let end = url
        .get(start..)?
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let authority = url.get(start..end)?;
    // A port is the digits after the last `:`; an IPv6 literal's colons end in `]`, not digits.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (authority, None),
    };
    Some((url.get(..start)?, host, port, url.get(end..)?))
}

fn url_without_port(url: &str) -> String {
    match url_parts(url) {
        Some((scheme, host, Some(_), rest)) => format!("{scheme}{host}{rest}"),
        _ => url.to_owned(),
    }
}

fn url_with_port(url: &str) -> String {
    let Some((scheme, host, None, rest)) = url_parts(url) else {
        return url.to_owned();
    };
    let port = match scheme.to_ascii_lowercase().as_str() {
        "https://" => 443,
        "http://" => 80,
        _ => return url.to_owned(),
    };
    format!("{scheme}{host}:{port}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{headers, preset, secrets};
    use crate::verify::{Scheme, check_request};
    use ::http::HeaderMap;

    const T_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const T1_FORM: &[u8] = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";

    fn twilio(
        signature: &str,
        url: Option<&str>,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<(), Rejection> {
        let sent = headers(&[("x-twilio-signature", signature)]);
        let request = Request {
            headers: &sent,
            body,
            query,
            url,
            content: None,
            username: None,
        };
        check_request(&preset(Scheme::Twilio), &request, 0, &secrets(&["12345"]))
    }

    #[test]
    fn twilio_t1_t2_t3_form_params() {
        let t1 = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert_eq!(twilio(t1, Some(T_URL), None, T1_FORM), Ok(()));
        // The order of the form fields does not matter: Twilio sorts them.
        let reordered = b"To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE&From=%2B14158675309&Caller=%2B14158675309";
        assert_eq!(twilio(t1, Some(T_URL), None, reordered), Ok(()));
        // The request's query is added to a configured URL without one.
        assert_eq!(
            twilio(
                t1,
                Some("https://mycompany.com/myapp.php"),
                Some("foo=1&bar=2"),
                T1_FORM
            ),
            Ok(())
        );
        // A configured query string wins over the request's.
        assert_eq!(twilio(t1, Some(T_URL), Some("foo=9"), T1_FORM), Ok(()));
        assert_eq!(
            twilio(t1, Some("https://mycompany.com/myapp.php"), None, T1_FORM),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            twilio(
                t1,
                Some("https://mycompany.com/other.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Err(Rejection::BadSignature)
        );
        let tampered = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1235&From=%2B14158675309&To=%2B18005551212";
        assert_eq!(
            twilio(t1, Some(T_URL), None, tampered),
            Err(Rejection::BadSignature)
        );
        let t2 = "GvWf1cFY/Q7PnoempGyD5oXAezc=";
        let t2_form = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212";
        assert_eq!(twilio(t2, Some(T_URL), None, t2_form), Ok(()));
        assert_eq!(
            twilio(t2, Some(T_URL), None, T1_FORM),
            Err(Rejection::BadSignature)
        );
        // T3: repeated keys are ordered by value too.
        let t3 = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
        let t3_form = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
        assert_eq!(twilio(t3, Some(T_URL), None, t3_form), Ok(()));
        assert_eq!(
            twilio(
                t3,
                Some(T_URL),
                None,
                b"Sid=CA123&SidAccount=AC123&Digits=5678"
            ),
            Err(Rejection::BadSignature)
        );
        let sent = headers(&[("x-twilio-signature", t1)]);
        let wrong_secret = Request {
            headers: &sent,
            body: T1_FORM,
            query: None,
            url: Some(T_URL),
            content: None,
            username: None,
        };
        assert_eq!(
            check_request(
                &preset(Scheme::Twilio),
                &wrong_secret,
                0,
                &secrets(&["1234"])
            ),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            twilio(t1, None, None, T1_FORM),
            Err(Rejection::UnusableSecret("twilio needs the public url"))
        );
        assert!(matches!(
            twilio("not base64!", Some(T_URL), None, T1_FORM),
            Err(Rejection::Malformed(_))
        ));
        assert_eq!(
            check_request(
                &preset(Scheme::Twilio),
                &Request {
                    headers: &HeaderMap::new(),
                    body: T1_FORM,
                    query: None,
                    url: Some(T_URL),
                    content: None,
                    username: None,
                },
                0,
                &secrets(&["12345"])
            ),
            Err(Rejection::MissingHeader("x-twilio-signature"))
        );
    }

    #[test]
    fn signing_reproduces_t1_t3_t4_and_verifies() {
        let t1 = sign(T_URL, T1_FORM, true, "12345").unwrap();
        assert_eq!(
            t1.headers,
            vec![(
                "x-twilio-signature".to_owned(),
                "RSOYDt4T1cUTdK1PDd93/VVr8B8=".to_owned()
            )]
        );
        assert!(t1.query.is_empty());
        let t3 = sign(
            T_URL,
            b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234",
            true,
            "12345",
        )
        .unwrap();
        assert_eq!(t3.headers[0].1, "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
        let body = br#"{"property": "value", "boolean": true}"#;
        let t4 = sign(T_URL, body, false, "12345").unwrap();
        assert_eq!(t4.headers[0].1, "a9nBmqA0ju/hNViExpshrM61xv4=");
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        assert_eq!(t4.query, vec![("bodySHA256".to_owned(), hash.to_owned())]);
        // What is signed verifies, the URL configured without its query.
        let local = "http://127.0.0.1:8080/hooks/sms";
        let signed = sign(local, T1_FORM, true, "12345").unwrap();
        assert_eq!(
            twilio(&signed.headers[0].1, Some(local), None, T1_FORM),
            Ok(())
        );
        let signed = sign(local, body, false, "12345").unwrap();
        let query = format!("bodySHA256={hash}");
        assert_eq!(
            twilio(&signed.headers[0].1, Some(local), Some(&query), body),
            Ok(())
        );
        assert_eq!(
            twilio(&signed.headers[0].1, Some(local), Some(&query), b"{}"),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn twilio_t4_json_body() {
        let t4 = "a9nBmqA0ju/hNViExpshrM61xv4=";
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        // The configured URL has a query, so the body hash is appended by Twilio to the request's.
        assert_eq!(
            twilio(t4, Some(&format!("{T_URL}&bodySHA256={hash}")), None, body),
            Ok(())
        );
        assert_eq!(
            twilio(
                t4,
                Some("https://mycompany.com/myapp.php"),
                Some(&format!("foo=1&bar=2&bodySHA256={hash}")),
                body
            ),
            Ok(())
        );
        // A changed body no longer matches the signed hash.
        assert_eq!(
            twilio(
                t4,
                Some(&format!("{T_URL}&bodySHA256={hash}")),
                None,
                br#"{"property": "value", "boolean": false}"#
            ),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn twilio_t5_ports() {
        // Signed with :443; configured without a port.
        assert_eq!(
            twilio("kvajT1Ptam85bY51eRf/AJRuM3w=", Some(T_URL), None, T1_FORM),
            Ok(())
        );
        // Signed without a port; configured with :443.
        assert_eq!(
            twilio(
                "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                Some("https://mycompany.com:443/myapp.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Ok(())
        );
        assert_eq!(
            twilio(
                "0ZXoZLH/DfblKGATFgpif+LLRf4=",
                Some("http://mycompany.com/myapp.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Ok(())
        );
        assert_eq!(
            twilio(
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
                Some("http://mycompany.com:1234/myapp.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Ok(())
        );
        // A different explicit port is a different URL.
        assert_eq!(
            twilio(
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
                Some("http://mycompany.com:1235/myapp.php?foo=1&bar=2"),
                None,
                T1_FORM
            ),
            Err(Rejection::BadSignature)
        );
        // The http :80 signature does not pass for the https URL.
        assert_eq!(
            twilio("0ZXoZLH/DfblKGATFgpif+LLRf4=", Some(T_URL), None, T1_FORM),
            Err(Rejection::BadSignature)
        );
        assert_eq!(url_with_port("https://[::1]/x"), "https://[::1]:443/x");
        assert_eq!(url_without_port("https://[::1]:8443/x"), "https://[::1]/x");
    }
}
