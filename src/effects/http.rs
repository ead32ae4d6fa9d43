//! The real HTTP client: one shared reqwest client with rustls, used by every `http` and `ci`
//! step, with the egress policy enforced where the address is known: in the DNS resolver (so a
//! name that resolves somewhere else on the next lookup, DNS rebinding, is still judged on the
//! address actually connected to), and before sending to an address written in the URL (which
//! reqwest connects to without asking the resolver), including each redirect's target.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::{BoxFuture, HttpClient, HttpError, HttpRequest, HttpResponse};
use crate::net::{EgressDenied, EgressPolicy};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 5;

/// Two clients because reqwest fixes the redirect policy per client; both share the TLS settings
/// (and so one copy of the system's roots).
pub struct ReqwestClient {
    no_redirects: reqwest::Client,
    follow_redirects: reqwest::Client,
    egress: Arc<EgressPolicy>,
}

impl ReqwestClient {
    /// A client that may reach any address.
    pub fn new() -> Result<Self, HttpError> {
        Self::with_egress(EgressPolicy::default())
    }

    /// A client that connects only where `egress` allows.
    pub fn with_egress(egress: EgressPolicy) -> Result<Self, HttpError> {
        install_crypto_provider();
        let egress = Arc::new(egress);
        let tls = super::roots::client_config()
            .map_err(|e| HttpError::Other(format!("cannot set up TLS: {e}")))?;
        let build = |policy: reqwest::redirect::Policy| {
            let mut builder = reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .redirect(policy);
            if !egress.is_open() {
                // Through a proxy, the resolver would judge the proxy's address, not the target's.
                builder = builder
                    .no_proxy()
                    .dns_resolver(Arc::new(EgressResolver(Arc::clone(&egress))));
            }
            builder
                .build()
                .map_err(|e| HttpError::Other(format!("cannot build the HTTP client: {e}")))
        };
        let redirect_egress = Arc::clone(&egress);
        let follow = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match literal_address(attempt.url()).map(|ip| redirect_egress.check("", ip)) {
                Some(Err(denied)) => attempt.error(denied),
                _ => attempt.follow(),
            }
        });
        Ok(Self {
            no_redirects: build(reqwest::redirect::Policy::none())?,
            follow_redirects: build(follow)?,
            egress,
        })
    }
}

/// The address a URL names directly (`http://10.0.0.1/`, `http://[::1]/`), which reqwest
/// connects to without resolving.
fn literal_address(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Resolves names with the system resolver and keeps only the addresses the policy allows; when
/// none is left, the connection fails with the first refusal.
struct EgressResolver(Arc<EgressPolicy>);

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut allowed = Vec::with_capacity(resolved.len());
            let mut refused = None;
            for address in resolved {
                match policy.check(&host, address.ip()) {
                    Ok(()) => allowed.push(address),
                    Err(denied) => {
                        refused.get_or_insert(denied);
                    }
                }
            }
            match (allowed.is_empty(), refused) {
                (true, Some(denied)) => {
                    Err(Box::new(denied) as Box<dyn std::error::Error + Send + Sync>)
                }
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// reqwest is built without a default crypto provider so the whole graph uses ring only.
pub fn install_crypto_provider() {
    // Installing twice fails harmlessly: the first provider stays, which is the same one.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpClient for ReqwestClient {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        Box::pin(async move {
            let client = if request.follow_redirects {
                &self.follow_redirects
            } else {
                &self.no_redirects
            };
            let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
                HttpError::InvalidRequest(format!("bad method '{}'", request.method))
            })?;
            let url = reqwest::Url::parse(&request.url).map_err(|e| {
                HttpError::InvalidRequest(format!("bad URL '{}': {e}", request.url))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(HttpError::InvalidRequest(format!(
                    "URL scheme '{}' is not http or https",
                    url.scheme()
                )));
            }
            if let Some(ip) = literal_address(&url) {
                self.egress
                    .check("", ip)
                    .map_err(|denied| HttpError::Denied(denied.to_string()))?;
            }
            let mut builder = client.request(method, url).timeout(request.timeout);
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            if let Some(body) = request.body {
                builder = builder.body(body);
            }
            let response = builder
                .send()
                .await
                .map_err(|e| classify(e, request.timeout))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = response
                .bytes()
                .await
                .map_err(|e| classify(e, request.timeout))?
                .to_vec();
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        })
    }
}

fn classify(err: reqwest::Error, timeout: Duration) -> HttpError {
    if let Some(denied) = egress_denial(&err) {
        HttpError::Denied(denied.to_string())
    } else if err.is_timeout() {
        HttpError::Timeout(timeout)
    } else if err.is_connect() {
        HttpError::Connect(error_chain(&err))
    } else if err.is_builder() {
        HttpError::InvalidRequest(error_chain(&err))
    } else {
        HttpError::Other(error_chain(&err))
    }
}

/// The egress refusal somewhere in the error's causes (from the resolver or a redirect).
fn egress_denial<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressDenied> {
    let mut current = Some(err);
    while let Some(error) = current {
        if let Some(denied) = error.downcast_ref::<EgressDenied>() {
            return Some(denied);
        }
        current = error.source();
    }
    None
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
