//! The real HTTP client: one shared reqwest client with rustls, used by every `http` step.

use std::time::Duration;

use super::{BoxFuture, HttpClient, HttpError, HttpRequest, HttpResponse};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Two clients because reqwest fixes the redirect policy per client; both share nothing else.
pub struct ReqwestClient {
    no_redirects: reqwest::Client,
    follow_redirects: reqwest::Client,
}

impl ReqwestClient {
    pub fn new() -> Result<Self, HttpError> {
        install_crypto_provider();
        let build = |policy: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .redirect(policy)
                .build()
                .map_err(|e| HttpError::Other(format!("cannot build the HTTP client: {e}")))
        };
        Ok(Self {
            no_redirects: build(reqwest::redirect::Policy::none())?,
            follow_redirects: build(reqwest::redirect::Policy::limited(5))?,
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
    if err.is_timeout() {
        HttpError::Timeout(timeout)
    } else if err.is_connect() {
        HttpError::Connect(error_chain(&err))
    } else if err.is_builder() {
        HttpError::InvalidRequest(error_chain(&err))
    } else {
        HttpError::Other(error_chain(&err))
    }
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
