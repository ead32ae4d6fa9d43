//! The sender's side of every scheme: sign an outgoing request the way the provider does, so a
//! saved payload can be sent to a server as the provider would (`hookflow send`). Each scheme's
//! file holds its `sign` next to its check; this file dispatches to them and knows the other
//! headers a provider sends with each delivery (its event type and delivery id).

use super::{Preset, Rejection, RenderContent, Scheme};

/// What of an outgoing request a scheme may sign, besides the clock and the secret.
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    /// The body bytes, exactly as they will be sent.
    pub body: &'a [u8],
    /// The URL the request is sent to, query included: Twilio signs it.
    pub url: &'a str,
    /// Whether the body is a form (`application/x-www-form-urlencoded`): Twilio signs a form's
    /// parameters, and binds any other body by its hash.
    pub form: bool,
    /// The delivery's id: Standard Webhooks signs it, an `hmac` preset may.
    pub id: &'a str,
    /// `hmac` with `content`: renders the signed text.
    pub content: Option<RenderContent<'a>>,
    /// `basic`: the user name.
    pub username: Option<&'a str>,
}

/// What signing adds to a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Headers (lower-case names) that replace any of the same name.
    pub headers: Vec<(String, String)>,
    /// Query parameters to add to the URL: a `token` preset's, Twilio's `bodySHA256`. A scheme
    /// that signs the URL has signed them already.
    pub query: Vec<(String, String)>,
}

impl Signed {
    fn headers(headers: Vec<(String, String)>) -> Self {
        Self {
            headers,
            query: Vec::new(),
        }
    }
}

/// Sign `outgoing` for one preset with `secret` at `now` (unix seconds).
pub fn sign(
    preset: &Preset,
    outgoing: &Outgoing<'_>,
    now: i64,
    secret: &str,
) -> Result<Signed, Rejection> {
    if secret.is_empty() {
        return Err(Rejection::UnusableSecret("empty"));
    }
    let body = outgoing.body;
    Ok(match preset.scheme {
        Scheme::Github => Signed::headers(super::github::sign(body, secret)?),
        Scheme::Gitlab => Signed::headers(super::gitlab::sign(secret)),
        Scheme::Stripe => Signed::headers(super::stripe::sign(body, now, secret)?),
        Scheme::Shopify => Signed::headers(super::shopify::sign(body, secret)?),
        Scheme::Slack => Signed::headers(super::slack::sign(body, now, secret)?),
        Scheme::StandardWebhooks => Signed::headers(super::standard_webhooks::sign(
            outgoing.id,
            now,
            body,
            secret,
        )?),
        Scheme::Bitbucket => Signed::headers(super::bitbucket::sign(body, secret)?),
        Scheme::Gitea => Signed::headers(super::gitea::sign(body, secret)?),
        Scheme::Forgejo => Signed::headers(super::forgejo::sign(body, secret)?),
        Scheme::Twilio => super::twilio::sign(outgoing.url, body, outgoing.form, secret)?,
        Scheme::Hmac => Signed::headers(super::generic_hmac::sign(preset, outgoing, now, secret)?),
        Scheme::Basic => Signed::headers(super::basic::sign(outgoing.username, secret)?),
        Scheme::Token => super::token::sign(preset, secret)?,
    })
}

impl Scheme {
    /// The header a provider names its event type in, with the type a sender sends when the
    /// payload's headers give none (the provider's most common event).
    pub fn event_header(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Github => Some(("x-github-event", "push")),
            Self::Gitlab => Some(("x-gitlab-event", "Push Hook")),
            Self::Shopify => Some(("x-shopify-topic", "orders/create")),
            Self::Bitbucket => Some(("x-event-key", "repo:push")),
            Self::Gitea => Some(("x-gitea-event", "push")),
            Self::Forgejo => Some(("x-forgejo-event", "push")),
            // Stripe, Slack and Standard Webhooks senders name the event in the body.
            Self::Stripe
            | Self::Slack
            | Self::StandardWebhooks
            | Self::Twilio
            | Self::Hmac
            | Self::Basic
            | Self::Token => None,
        }
    }
}

impl Preset {
    /// The header a sender names each new delivery with (fresh for each, kept across its
    /// retries): the scheme's delivery header, Bitbucket's and Twilio's request ids, or the
    /// `hmac` preset's `id_header`.
    pub fn sent_id_header(&self) -> Option<&str> {
        match self.scheme {
            Scheme::Bitbucket => Some("x-request-uuid"),
            Scheme::Twilio => Some("i-twilio-idempotency-token"),
            Scheme::Hmac => self.hmac.as_ref()?.id_header.as_deref(),
            scheme => scheme.delivery_header(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{HmacSpec, Request, TokenSource, check_request};
    use ::http::{HeaderMap, HeaderName, HeaderValue};

    /// A preset of each scheme as a workflow might configure it.
    fn configured(scheme: Scheme) -> Preset {
        let mut preset = Preset::new(scheme);
        match scheme {
            Scheme::Hmac => {
                preset.hmac = Some(HmacSpec {
                    timestamp_header: Some("x-timestamp".to_owned()),
                    id_header: Some("x-id".to_owned()),
                    ..HmacSpec::new("x-signature".to_owned())
                });
            }
            Scheme::Token => preset.token = Some(TokenSource::Header("x-token".to_owned())),
            _ => {}
        }
        preset
    }

    fn header_map(pairs: &[(String, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Whatever a scheme signs, its own check accepts with the same secret, and refuses with
    /// another: the round trip `hookflow send` relies on, for every scheme there is.
    #[test]
    fn every_scheme_verifies_what_it_signs() {
        let url = "http://127.0.0.1:8080/hooks/x";
        let now = 1_750_000_000;
        // Base64, as a Standard Webhooks secret must be.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        for scheme in Scheme::ALL {
            let preset = configured(scheme);
            let body = br#"{"id":"evt_1","ref":"refs/heads/main"}"#;
            let outgoing = Outgoing {
                body,
                url,
                form: false,
                id: "0198f2c4-1111-7000-8000-000000000001",
                content: None,
                username: Some("hookflow"),
            };
            let signed = sign(&preset, &outgoing, now, secret).unwrap();
            let headers = header_map(&signed.headers);
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&signed.query)
                .finish();
            let request = Request {
                headers: &headers,
                body,
                query: Some(&query),
                url: Some(url),
                content: None,
                username: Some("hookflow"),
            };
            let name = scheme.as_str();
            // What carries the signature is what a saved payload leaves out.
            for (header, _) in &signed.headers {
                let stamp = header.contains("timestamp")
                    || Some(header.as_str()) == preset.sent_id_header();
                assert!(
                    stamp || crate::run::payload::is_credential_header(header),
                    "{name}: {header} is not a credential header"
                );
            }
            let ok = check_request(&preset, &request, now, &[secret.to_owned()]);
            assert_eq!(ok, Ok(()), "{name}: {signed:?}");
            let other = check_request(
                &preset,
                &request,
                now,
                &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned()],
            );
            assert!(other.is_err(), "{name} accepted another secret");
            assert_eq!(
                sign(&preset, &outgoing, now, ""),
                Err(Rejection::UnusableSecret("empty")),
                "{name}"
            );
        }
    }

    #[test]
    fn id_headers_are_the_delivery_headers_and_a_few_more() {
        assert_eq!(
            Preset::new(Scheme::Github).sent_id_header(),
            Some("x-github-delivery")
        );
        assert_eq!(
            Preset::new(Scheme::Bitbucket).sent_id_header(),
            Some("x-request-uuid")
        );
        assert_eq!(configured(Scheme::Hmac).sent_id_header(), Some("x-id"));
        assert_eq!(Preset::new(Scheme::Stripe).sent_id_header(), None);
        assert_eq!(
            Scheme::Gitlab.event_header(),
            Some(("x-gitlab-event", "Push Hook"))
        );
    }
}
