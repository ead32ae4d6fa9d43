//! Which requests the admin listener answers: those sent to one of its own names (the `Host`
//! check that defeats DNS rebinding), state changes only from its own origin (no cross-site
//! request from a page the operator happens to visit), and JSON bodies only with a JSON
//! content type. The admin token (`admin.rs`) is checked after these.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error_response;

/// What the admin listener knows of itself and how it may be reached.
#[derive(Debug, Clone, Default)]
pub struct AdminAccess {
    /// When set, every route but the probes wants `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Host names a reverse proxy forwards (`admin.example.com`, `admin.example.com:8443`), or
    /// `*` for any.
    pub allowed_hosts: Vec<HostPattern>,
    /// The host of the configured admin address (`admin.internal` of `admin.internal:9090`),
    /// unless it is an address that binds every interface.
    pub listen_host: Option<String>,
}

/// An entry of `admin_allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any `Host` (the token, if any, is then the only guard).
    Any,
    /// A name or address, with a port that must match when given.
    Host(Authority),
}

/// A host (lower case, without a final dot or IPv6 brackets) and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: Option<u16>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "'{0}' is not a host name or address with an optional port (e.g. admin.example.com, admin.example.com:8443, [2001:db8::1])"
)]
pub struct BadHostPattern(pub String);

impl std::str::FromStr for HostPattern {
    type Err = BadHostPattern;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "*" {
            return Ok(HostPattern::Any);
        }
        Authority::parse(text)
            .map(HostPattern::Host)
            .ok_or_else(|| BadHostPattern(text.to_owned()))
    }
}

impl Authority {
    /// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?.parse().ok()?),
            };
            (host, port)
        } else if text.matches(':').count() > 1 {
            (text, None)
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host, Some(port.parse().ok()?)),
                None => (text, None),
            }
        };
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let valid = if host.contains(':') {
            host.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        };
        valid.then_some(Self { host, port })
    }

    fn ip(&self) -> Option<IpAddr> {
        self.host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
    }

    /// A name or address that only ever reaches this machine: no other site can be behind it.
    fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.ip().is_some_and(|ip| ip.is_loopback())
    }
}

/// What the admin listener learns of each connection: the peer, and the local address the
/// client reached (on a listener bound to `0.0.0.0` or `::`, the address the client used).
#[derive(Debug, Clone, Copy)]
pub struct AdminConnection {
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for AdminConnection
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self {
            peer: *stream.remote_addr(),
            local: stream.io().local_addr().ok(),
        }
    }
}

impl AdminAccess {
    /// The request's `Host` is one of this listener's names: a loopback name or address (any
    /// port), the address the connection reached (any port), the host of the configured admin
    /// address (any port), or an `admin_allowed_hosts` entry (its port, when it names one).
    pub fn knows_host(&self, host: &Authority, local: Option<IpAddr>) -> bool {
        host.is_loopback()
            || host
                .ip()
                .is_some_and(|ip| local.is_some_and(|l| l.to_canonical() == ip))
            || self.listen_host.as_deref() == Some(host.host.as_str())
            || self.allowed_hosts.contains(&HostPattern::Any)
            || self.named(host)
    }

    /// `host` is an entry of `admin_allowed_hosts` (not merely let in by `*`): a name the
    /// operator gave, so also an origin of the listener's own pages.
    fn named(&self, host: &Authority) -> bool {
        self.allowed_hosts.iter().any(|pattern| match pattern {
            HostPattern::Any => false,
            HostPattern::Host(entry) => {
                entry.host == host.host && (entry.port.is_none() || entry.port == host.port)
            }
        })
    }

    /// Why a state-changing request must be refused as coming from another site, if it must.
    /// Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`); clients that are
    /// not browsers (curl, `hookflow start`) send neither and are let through.
    fn cross_origin(&self, headers: &HeaderMap, host: &Authority) -> Option<String> {
        let fetch_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        if let Some(site) = fetch_site
            && !site.eq_ignore_ascii_case("same-origin")
            && !site.eq_ignore_ascii_case("none")
        {
            return Some(format!(
                "cross-origin request refused: Sec-Fetch-Site is '{}'; state changes are taken only from the admin listener's own pages or from clients that are not browsers",
                shorten(site)
            ));
        }
        let origin = headers.get(header::ORIGIN)?;
        let origin_text = origin.to_str().unwrap_or_default().trim();
        let from = origin_authority(origin_text);
        match from {
            Some(from) if from == *host || self.named(&from) => None,
            _ => Some(format!(
                "cross-origin request refused: Origin '{}' is not this admin listener's origin; state changes are taken only from its own pages or from clients that are not browsers",
                shorten(origin_text)
            )),
        }
    }
}

/// The host and port of an `Origin` (`http://127.0.0.1:9090`), the scheme's default port
/// dropped; `None` for `null` and anything that is no origin.
fn origin_authority(origin: &str) -> Option<Authority> {
    let (scheme, rest) = origin.split_once("://")?;
    let mut authority = Authority::parse(rest)?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if authority.port == Some(default_port) {
        authority.port = None;
    }
    Some(authority)
}

/// The request's own authority, from `Host` (HTTP/1.1) or an absolute request target.
fn request_authority(request: &Request) -> Option<Authority> {
    match request.headers().get(header::HOST) {
        Some(value) => Authority::parse(value.to_str().ok()?),
        None => Authority::parse(request.uri().authority()?.as_str()),
    }
}

/// Echoed values are cut short: an error names them, it does not mirror a whole header.
fn shorten(text: &str) -> String {
    text.chars().take(100).collect()
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The admin listener's guard for every route but the probes: a `Host` that is not one of its
/// names is answered `421`, a cross-origin state change `403`.
pub async fn guard(access: Arc<AdminAccess>, request: Request, next: Next) -> Response {
    let local = request
        .extensions()
        .get::<ConnectInfo<AdminConnection>>()
        .and_then(|c| c.0.local)
        .map(|a| a.ip());
    let Some(host) = request_authority(&request) else {
        let given = request
            .headers()
            .get(header::HOST)
            .map(|v| shorten(&String::from_utf8_lossy(v.as_bytes())));
        let reason = match given {
            Some(given) => format!("the Host header '{given}' is not a host name"),
            None => "the request has no Host header".to_owned(),
        };
        return error_response(StatusCode::MISDIRECTED_REQUEST, reason);
    };
    if !access.knows_host(&host, local) {
        return error_response(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "the Host '{}' is not a name of this admin listener; a reverse proxy's name goes in admin_allowed_hosts",
                shorten(&host.host)
            ),
        );
    }
    if !is_safe(request.method())
        && let Some(reason) = access.cross_origin(request.headers(), &host)
    {
        return error_response(StatusCode::FORBIDDEN, reason);
    }
    next.run(request).await
}

/// A JSON endpoint's body comes with `Content-Type: application/json` (parameters such as
/// `charset` allowed); only an empty body may come without one. Else `415`: a web page can
/// send `text/plain` to any address without asking, never `application/json`.
pub fn refuse_unless_json(headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let content_type = headers.get(header::CONTENT_TYPE);
    let is_json = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if is_json || (content_type.is_none() && body.is_empty()) {
        return None;
    }
    let reason = match content_type {
        None => "the body needs Content-Type: application/json".to_owned(),
        Some(given) => format!(
            "the body must be JSON with Content-Type: application/json, not '{}'",
            shorten(&String::from_utf8_lossy(given.as_bytes()))
        ),
    };
    Some(error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(text: &str) -> Authority {
        Authority::parse(text).unwrap()
    }

    #[test]
    fn authorities_are_read_with_and_without_ports() {
        assert_eq!(
            authority("LocalHost.:9090"),
            Authority {
                host: "localhost".into(),
                port: Some(9090)
            }
        );
        assert_eq!(authority("[::1]:9090").host, "::1");
        assert_eq!(authority("[::1]").port, None);
        assert_eq!(authority("::1").host, "::1");
        assert_eq!(authority("admin.example.com").port, None);
        for bad in [
            "",
            ":9090",
            "a:b",
            "a:b:c",
            "[::1",
            "[::1]x",
            "evil.example/x",
            "a b",
            "*",
        ] {
            assert!(Authority::parse(bad).is_none(), "{bad}");
        }
        assert_eq!("*".parse::<HostPattern>(), Ok(HostPattern::Any));
        assert!("http://admin.example.com".parse::<HostPattern>().is_err());
        assert!("".parse::<HostPattern>().is_err());
    }

    #[test]
    fn a_host_is_known_by_loopback_name_local_address_listen_name_or_configuration() {
        let access = AdminAccess {
            token: None,
            allowed_hosts: vec![
                "admin.example.com".parse().unwrap(),
                "proxy.example.com:8443".parse().unwrap(),
            ],
            listen_host: Some("admin.internal".into()),
        };
        let local: Option<IpAddr> = Some("192.0.2.10".parse().unwrap());
        for known in [
            "localhost",
            "localhost:9090",
            "127.0.0.1",
            "127.0.0.1:1234",
            "[::1]:9090",
            "192.0.2.10:9090",
            "admin.internal:9090",
            "admin.example.com",
            "ADMIN.example.com:443",
            "proxy.example.com:8443",
        ] {
            assert!(access.knows_host(&authority(known), local), "{known}");
        }
        for unknown in [
            "evil.example:9090",
            "evil.example",
            "192.0.2.11:9090",
            "proxy.example.com",
            "proxy.example.com:443",
            "localhost.evil.example",
        ] {
            assert!(!access.knows_host(&authority(unknown), local), "{unknown}");
        }
        let any = AdminAccess {
            allowed_hosts: vec![HostPattern::Any],
            ..AdminAccess::default()
        };
        assert!(any.knows_host(&authority("evil.example"), None));
        // An IPv4 client of a dual-stack listener reaches a v4-mapped local address.
        let mapped: Option<IpAddr> = Some("::ffff:192.0.2.10".parse().unwrap());
        assert!(AdminAccess::default().knows_host(&authority("192.0.2.10"), mapped));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn state_changes_come_from_the_listeners_own_origin_or_from_no_browser() {
        let access = AdminAccess {
            allowed_hosts: vec!["admin.example.com".parse().unwrap()],
            ..AdminAccess::default()
        };
        let host = authority("127.0.0.1:9090");
        for allowed in [
            headers(&[]),
            headers(&[("origin", "http://127.0.0.1:9090")]),
            headers(&[("origin", "https://admin.example.com")]),
            headers(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:9090"),
            ]),
            headers(&[("sec-fetch-site", "none")]),
        ] {
            assert_eq!(access.cross_origin(&allowed, &host), None, "{allowed:?}");
        }
        for refused in [
            headers(&[("origin", "http://evil.example")]),
            headers(&[("origin", "http://127.0.0.1:9091")]),
            headers(&[("origin", "http://localhost:9090")]),
            headers(&[("origin", "null")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://evil.example"),
            ]),
        ] {
            let reason = access.cross_origin(&refused, &host).unwrap_or_default();
            assert!(
                reason.starts_with("cross-origin request refused"),
                "{refused:?}"
            );
        }
        // `*` lets any Host in, not any origin.
        let any = AdminAccess {
            allowed_hosts: vec![HostPattern::Any],
            ..AdminAccess::default()
        };
        let evil = headers(&[("origin", "http://evil.example")]);
        assert!(any.cross_origin(&evil, &host).is_some());
        // The default port of the origin's scheme is the same as none.
        let plain = authority("admin.internal");
        let origin = headers(&[("origin", "http://admin.internal:80")]);
        assert_eq!(access.cross_origin(&origin, &plain), None);
    }

    #[test]
    fn json_bodies_need_a_json_content_type() {
        assert!(
            refuse_unless_json(&headers(&[("content-type", "application/json")]), b"{}").is_none()
        );
        assert!(
            refuse_unless_json(
                &headers(&[("content-type", "Application/JSON; charset=utf-8")]),
                b"{}"
            )
            .is_none()
        );
        assert!(refuse_unless_json(&headers(&[]), b"").is_none());
        for (pairs, body) in [
            (&[][..], &b"{}"[..]),
            (&[("content-type", "text/plain")][..], &b"{\"x\":1}"[..]),
            (&[("content-type", "text/plain")][..], &b""[..]),
            (
                &[("content-type", "application/x-www-form-urlencoded")][..],
                &b"a=1"[..],
            ),
            (&[("content-type", "application/jsonx")][..], &b"{}"[..]),
        ] {
            let refused = refuse_unless_json(&headers(pairs), body).unwrap();
            assert_eq!(
                refused.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{pairs:?}"
            );
        }
    }
}
