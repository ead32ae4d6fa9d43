//! Outgoing email: the `Mailer` trait `email` steps send through, addresses, MIME building (lettre),
//! SMTP delivery over one pooled transport (rustls with ring), and the `.eml` outbox used when no
//! SMTP server is configured.

use std::path::PathBuf;
use std::time::Duration;

use super::BoxFuture;

mod address;
mod mime;
mod outbox;
mod smtp_url;
mod transport;

pub use address::*;
pub use mime::*;
pub use outbox::*;
pub use smtp_url::*;
pub use transport::*;

/// Error messages echo at most this much of a bad value, so a payload cannot flood a record.
const MAX_ECHO_CHARS: usize = 120;

/// How `email` steps deliver: SMTP when `smtp` is set, else `.eml` files in `outbox`.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub smtp: Option<String>,
    pub from: Option<String>,
    pub outbox: PathBuf,
    pub timeout: Duration,
}

/// One message, fully rendered.
#[derive(Debug, Clone)]
pub struct Email {
    /// With its angle brackets: `<run.step@hookflow>`.
    pub message_id: String,
    /// `None`: the server's default sender.
    pub from: Option<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

/// Where a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the SMTP server, with its reply (`250 2.0.0 Ok: queued as ...`).
    Smtp { reply: String, recipients: usize },
    /// Written as an `.eml` file.
    Outbox { path: PathBuf },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum MailError {
    #[error(
        "no sender: give the step a `from`, or set `email.from` in hookflow.yaml for every email step"
    )]
    NoFrom,
    #[error("the message cannot be built: {0}")]
    Invalid(String),
    /// A 5xx reply: sending the same message again gets the same answer.
    #[error("{server} rejected the message: {message}")]
    Rejected { server: String, message: String },
    /// A 4xx reply: the server asks to try again later.
    #[error("{server} deferred the message: {message}")]
    Deferred { server: String, message: String },
    #[error("cannot deliver to {server}: {message}")]
    Connection { server: String, message: String },
    /// The client cannot proceed with this server as configured (no common AUTH mechanism).
    #[error("{server}: {message}")]
    Client { server: String, message: String },
    #[error("cannot write the outbox file {path}: {message}")]
    Outbox { path: String, message: String },
    /// The egress policy forbids the SMTP server's address.
    #[error("cannot deliver to {server}: {message}")]
    Denied { server: String, message: String },
}

impl MailError {
    /// Worth another attempt: the server or the disk may accept it next time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MailError::Deferred { .. } | MailError::Connection { .. } | MailError::Outbox { .. }
        )
    }
}

/// Why mail delivery could not be set up from the server settings. Never contains a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailSetupError {
    #[error("`email.smtp`: {0}")]
    Smtp(String),
    #[error("`email.from`: {0}")]
    From(AddressError),
}

/// Sends what `email` steps render.
pub trait Mailer: Send + Sync {
    fn send(&self, email: Email) -> BoxFuture<'_, Result<Delivery, MailError>>;
}

/// At most `MAX_ECHO_CHARS` of a value, for error messages.
fn echo(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_ECHO_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}

/// An email with every part, for the tests of each part of the mailer.
#[cfg(test)]
fn sample() -> Email {
    let one = |s: &str| Address::parse_list(s).unwrap().remove(0);
    Email {
        message_id: "<run-1.confirm@hookflow>".into(),
        from: None,
        to: vec![one("Ada <ada@example.test>")],
        cc: vec![one("cc@example.test")],
        bcc: vec![one("audit@example.test")],
        reply_to: vec![one("help@example.test")],
        subject: "Bestellung für Zoë ✓".into(),
        text: Some("plain body".into()),
        html: Some("<p>html body</p>".into()),
        headers: vec![("X-Order".into(), "9999".into())],
        attachments: vec![Attachment {
            name: "order.json".into(),
            content_type: "application/json".into(),
            content: b"{\"id\":1}".to_vec(),
        }],
    }
}
