//! The outside world a step touches, behind traits: the engine and steps never name a network crate.

pub mod clock;
pub mod fake;
pub mod http;
pub mod mail;
pub mod process;
pub mod rate;
mod roots;
pub mod stand_in;

use std::sync::Arc;
use std::time::Duration;

use crate::future::BoxFuture;

/// One outgoing HTTP request, fully rendered.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    pub follow_redirects: bool,
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The egress policy forbids the address: asking again changes nothing.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Other(String),
}

impl HttpError {
    /// Worth another attempt: the target may answer next time.
    pub fn is_transient(&self) -> bool {
        !matches!(self, HttpError::InvalidRequest(_) | HttpError::Denied(_))
    }
}

pub trait HttpClient: Send + Sync {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>>;
}

/// Everything a step may use to act on the world.
#[derive(Clone)]
pub struct Effects {
    pub http: Arc<dyn HttpClient>,
    /// Outgoing email of `email` steps: SMTP, or `.eml` files in the outbox.
    pub mail: Arc<dyn mail::Mailer>,
    /// Local commands of `exec` steps.
    pub process: Arc<dyn process::ProcessRunner>,
    /// What "now" is for due times, deadlines and timestamps.
    pub clock: Arc<dyn clock::Clock>,
    /// Outgoing rate limits: the buckets steps take turns from and the per-host limits.
    pub rate: rate::RateGate,
    /// Per-step stand-ins for the world (`hookflow test`, dry runs): when set, each step with
    /// effects acts through the effects these give for it, never through the ones above.
    pub stand_ins: Option<Arc<dyn stand_in::StandIns>>,
}

/// Why the outside world could not be set up from the settings.
#[derive(Debug, thiserror::Error)]
pub enum EffectsError {
    #[error("outgoing HTTP: {0}")]
    Http(#[from] HttpError),
    #[error("outgoing email: {0}")]
    Mail(#[from] mail::MailSetupError),
}

impl Effects {
    /// The real implementations: HTTP and mail within `egress`, processes run by tokio.
    pub fn new(
        egress: crate::net::EgressPolicy,
        email: &mail::EmailSettings,
    ) -> Result<Self, EffectsError> {
        Ok(Self {
            http: Arc::new(http::ReqwestClient::with_egress(egress.clone())?),
            mail: Arc::new(mail::LettreMailer::from_settings(email)?.with_egress(egress)),
            process: Arc::new(process::TokioProcessRunner),
            clock: Arc::new(clock::SystemClock),
            rate: rate::RateGate {
                email_host: rate::smtp_host(email.smtp.as_deref()),
                ..rate::RateGate::default()
            },
            stand_ins: None,
        })
    }
}
