//! Outgoing email: the `Mailer` trait `email` steps send through, addresses, MIME building (lettre),
//! SMTP delivery over one pooled transport (rustls with ring), and the `.eml` outbox used when no
//! SMTP server is configured.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as MimeAttachment, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::io::AsyncWriteExt as _;

use super::BoxFuture;

pub const SMTP_PORT: u16 = 25;
pub const SUBMISSION_PORT: u16 = 587;
pub const SUBMISSIONS_PORT: u16 = 465;
/// Connections kept open to the SMTP server, shared by every run.
const POOL_MAX_CONNECTIONS: u32 = 8;
/// Servers drop idle clients after a minute or so; closing first avoids sending on a dead socket.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
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

/// One valid mailbox: `ada@example.com` or `Ada Lovelace <ada@example.com>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address(Mailbox);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an email address (write ada@example.com or Ada Lovelace <ada@example.com>)")]
pub struct AddressError(pub String);

impl Address {
    /// One address, or several separated by commas. A display name containing a comma must be
    /// quoted (`"Smith, Jo" <jo@example.com>`). Blank text is no address.
    pub fn parse_list(text: &str) -> Result<Vec<Address>, AddressError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let parsed: Mailboxes = text.parse().map_err(|_| AddressError(echo(text)))?;
        Ok(Vec::<Mailbox>::from(parsed)
            .into_iter()
            .map(Address)
            .collect())
    }

    /// The address without its display name (what goes into the SMTP envelope).
    pub fn email(&self) -> &str {
        self.0.email.as_ref()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Header names the step sets from its own keys, or that MIME building owns.
pub const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
];

/// Why a custom header name cannot be used, or `None` when it can.
pub fn header_name_problem(name: &str) -> Option<String> {
    let printable = |b: u8| (33..=126).contains(&b) && b != b':';
    if name.is_empty() || name.len() > 76 || !name.bytes().all(printable) {
        return Some(format!(
            "'{}' is not a header name: use letters, digits and '-', at most 76 characters",
            echo(name)
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Some(format!(
            "the header '{name}' is set by the email step itself; use its own key instead"
        ));
    }
    None
}

/// Why a MIME type cannot be used, or `None` when it can.
pub fn content_type_problem(text: &str) -> Option<String> {
    match ContentType::parse(text) {
        Ok(_) => None,
        Err(_) => Some(format!(
            "'{}' is not a MIME type (e.g. text/csv, application/pdf)",
            echo(text)
        )),
    }
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

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: plain connection upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://...?tls=none`: no encryption, for a relay on the same host or network.
    None,
}

/// A parsed `email.smtp` setting. Debug and Display show the password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub security: Security,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    password: Option<String>,
}

impl SmtpUrl {
    /// Parse, reading `${NAME}` in the user name and password from the environment.
    pub fn parse(text: &str) -> Result<Self, MailSetupError> {
        Self::parse_with(text, |name| std::env::var(name).ok())
    }

    /// Parse with `lookup` standing in for the environment.
    pub fn parse_with(
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, MailSetupError> {
        let fail = |message: String| MailSetupError::Smtp(message);
        // The url crate's messages never quote the input, which may hold a password.
        let url = url::Url::parse(text.trim())
            .map_err(|e| fail(format!("not a URL ({e}); write smtp://user:pass@host:587")))?;
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => {
                return Err(fail(format!(
                    "unknown scheme '{other}'; use smtp:// (STARTTLS) or smtps:// (TLS)"
                )));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| fail("no host; write smtp://host:587".to_owned()))?
            .to_owned();
        if !matches!(url.path(), "" | "/") {
            return Err(fail("takes no path after the host and port".to_owned()));
        }
        let mut security = if implicit {
            Security::Implicit
        } else {
            Security::StartTls
        };
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref(), implicit) {
                ("tls", "none", false) => security = Security::None,
                ("tls", "starttls" | "required", false) => security = Security::StartTls,
                ("tls", _, true) => {
                    return Err(fail(
                        "smtps:// is always TLS; write smtp://...?tls=none for a plain connection"
                            .to_owned(),
                    ));
                }
                ("tls", other, false) => {
                    return Err(fail(format!(
                        "tls={other} is not known; use tls=none or leave it out (STARTTLS)"
                    )));
                }
                (other, _, _) => {
                    return Err(fail(format!(
                        "unknown parameter '{other}'; only tls=none is accepted"
                    )));
                }
            }
        }
        let port = url.port().unwrap_or(match security {
            Security::StartTls => SUBMISSION_PORT,
            Security::Implicit => SUBMISSIONS_PORT,
            Security::None => SMTP_PORT,
        });
        let username = match url.username() {
            "" => None,
            raw => Some(expand_env(&percent_decode(raw).map_err(fail)?, &lookup).map_err(fail)?),
        };
        let password = match url.password() {
            None => None,
            Some(raw) => {
                Some(expand_env(&percent_decode(raw).map_err(fail)?, &lookup).map_err(fail)?)
            }
        };
        if username.is_none() && password.is_some() {
            return Err(fail("has a password but no user name".to_owned()));
        }
        Ok(Self {
            security,
            host,
            port,
            username,
            password,
        })
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// `host:port`, for messages about this server.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            Security::Implicit => "smtps",
            Security::StartTls | Security::None => "smtp",
        };
        write!(f, "{scheme}://")?;
        if let Some(user) = &self.username {
            write!(f, "{user}")?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}:{}", self.host, self.port)?;
        if self.security == Security::None {
            f.write_str("?tls=none")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `%40` -> `@`: user names are often addresses, which must be percent-encoded in a URL.
fn percent_decode(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a bad %-escape in the user name or password".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the user name or password is not UTF-8".to_owned())
}

/// `${NAME}` -> the variable's value, so a password can stay out of hookflow.yaml.
fn expand_env(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "an unclosed ${ in the user name or password".to_owned())?;
        let name = &after[..end];
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "'${{{name}}}' is not an environment variable reference"
            ));
        }
        let value =
            lookup(name).ok_or_else(|| format!("the environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Sends what `email` steps render.
pub trait Mailer: Send + Sync {
    fn send(&self, email: Email) -> BoxFuture<'_, Result<Delivery, MailError>>;
}

/// The real mailer: SMTP through one pooled lettre transport, or `.eml` files in the outbox.
pub struct LettreMailer {
    default_from: Option<Address>,
    route: Route,
    egress: crate::net::EgressPolicy,
}

enum Route {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// `host:port`, without credentials: what messages and logs name.
        server: String,
        host: String,
        port: u16,
    },
    Outbox(PathBuf),
}

impl LettreMailer {
    /// Built once per process: the SMTP pool is shared by every run.
    pub fn from_settings(settings: &EmailSettings) -> Result<Self, MailSetupError> {
        let default_from = match &settings.from {
            None => None,
            Some(text) => {
                let mut list = Address::parse_list(text).map_err(MailSetupError::From)?;
                if list.len() != 1 {
                    return Err(MailSetupError::From(AddressError(echo(text))));
                }
                list.pop()
            }
        };
        let route = match &settings.smtp {
            None => {
                tracing::info!(
                    outbox = %settings.outbox.display(),
                    "no SMTP server configured: email steps write .eml files"
                );
                Route::Outbox(settings.outbox.clone())
            }
            Some(text) => {
                let url = SmtpUrl::parse(text)?;
                tracing::info!(smtp = %url, "email steps deliver over SMTP");
                Route::Smtp {
                    transport: smtp_transport(&url, settings.timeout)?,
                    server: url.server(),
                    host: url.host.clone(),
                    port: url.port,
                }
            }
        };
        Ok(Self {
            default_from,
            route,
            egress: crate::net::EgressPolicy::default(),
        })
    }

    /// Deliver only to an SMTP server whose addresses `egress` allows.
    pub fn with_egress(mut self, egress: crate::net::EgressPolicy) -> Self {
        self.egress = egress;
        self
    }
}

/// The SMTP server's name is resolved and every address it has must be allowed before lettre
/// connects (lettre resolves it again itself; the name comes from the server's settings, never
/// from a payload).
async fn check_egress(
    egress: &crate::net::EgressPolicy,
    host: &str,
    port: u16,
    server: &str,
) -> Result<(), MailError> {
    if egress.is_open() {
        return Ok(());
    }
    let denied = |message: String| MailError::Denied {
        server: server.to_owned(),
        message,
    };
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return egress.check(host, ip).map_err(|e| denied(e.to_string()));
    }
    let addresses =
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| MailError::Connection {
                server: server.to_owned(),
                message: format!("cannot resolve {host}: {e}"),
            })?;
    for address in addresses {
        egress
            .check(host, address.ip())
            .map_err(|e| denied(e.to_string()))?;
    }
    Ok(())
}

fn smtp_transport(
    url: &SmtpUrl,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailSetupError> {
    // lettre would pick whichever rustls provider is the process default; make it ring.
    super::http::install_crypto_provider();
    let tls_parameters = || {
        TlsParameters::new(url.host.clone()).map_err(|e| {
            MailSetupError::Smtp(format!("TLS for {} cannot be set up: {e}", url.host))
        })
    };
    let tls = match url.security {
        Security::StartTls => Tls::Required(tls_parameters()?),
        Security::Implicit => Tls::Wrapper(tls_parameters()?),
        Security::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.clone())
        .port(url.port)
        .tls(tls)
        .timeout(Some(timeout))
        .pool_config(
            PoolConfig::new()
                .max_size(POOL_MAX_CONNECTIONS)
                .idle_timeout(POOL_IDLE_TIMEOUT),
        );
    if let Some(username) = &url.username {
        builder = builder.credentials(Credentials::new(
            username.clone(),
            url.password.clone().unwrap_or_default(),
        ));
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = builder.build();
    Ok(transport)
}

impl Mailer for LettreMailer {
    fn send(&self, email: Email) -> BoxFuture<'_, Result<Delivery, MailError>> {
        Box::pin(async move {
            let from = email
                .from
                .clone()
                .or_else(|| self.default_from.clone())
                .ok_or(MailError::NoFrom)?;
            match &self.route {
                Route::Smtp {
                    transport,
                    server,
                    host,
                    port,
                } => {
                    check_egress(&self.egress, host, *port, server).await?;
                    let message = build_message(&email, &from, false)?;
                    let recipients = message.envelope().to().len();
                    let response = transport
                        .send(message)
                        .await
                        .map_err(|e| classify(&e, server))?;
                    let reply = std::iter::once(response.code().to_string())
                        .chain(response.message().map(str::to_owned))
                        .collect::<Vec<_>>()
                        .join(" ");
                    Ok(Delivery::Smtp { reply, recipients })
                }
                Route::Outbox(dir) => {
                    // An .eml is a record of what would be sent: it keeps Bcc so every
                    // recipient shows.
                    let message = build_message(&email, &from, true)?;
                    let name = outbox_file_name(&email.message_id, Utc::now());
                    let path = write_atomically(dir, &name, &message.formatted()).await?;
                    Ok(Delivery::Outbox { path })
                }
            }
        })
    }
}

fn classify(err: &lettre::transport::smtp::Error, server: &str) -> MailError {
    let server = server.to_owned();
    let message = err.to_string();
    if err.is_permanent() {
        MailError::Rejected { server, message }
    } else if err.is_transient() {
        MailError::Deferred { server, message }
    } else if err.is_client() {
        MailError::Client { server, message }
    } else {
        // Network, timeout, TLS handshake, a dropped pool connection: the next attempt may pass.
        MailError::Connection { server, message }
    }
}

/// The MIME message: text and html as multipart/alternative, attachments around it as
/// multipart/mixed.
pub fn build_message(email: &Email, from: &Address, keep_bcc: bool) -> Result<Message, MailError> {
    let mut builder = Message::builder()
        .from(from.0.clone())
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()))
        .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")).to_owned());
    for address in &email.to {
        builder = builder.to(address.0.clone());
    }
    for address in &email.cc {
        builder = builder.cc(address.0.clone());
    }
    for address in &email.bcc {
        builder = builder.bcc(address.0.clone());
    }
    for address in &email.reply_to {
        builder = builder.reply_to(address.0.clone());
    }
    if keep_bcc {
        builder = builder.keep_bcc();
    }
    for (name, value) in &email.headers {
        if let Some(problem) = header_name_problem(name) {
            return Err(MailError::Invalid(problem));
        }
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| MailError::Invalid(format!("'{name}' is not a header name")))?;
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let body = match (&email.text, &email.html) {
        (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (None, Some(html)) => Body::Single(SinglePart::html(html.clone())),
        (Some(text), None) => Body::Single(SinglePart::plain(text.clone())),
        (None, None) => Body::Single(SinglePart::plain(String::new())),
    };
    let built = if email.attachments.is_empty() {
        match body {
            Body::Multi(part) => builder.multipart(part),
            Body::Single(part) => builder.singlepart(part),
        }
    } else {
        let mut mixed = match body {
            Body::Multi(part) => MultiPart::mixed().multipart(part),
            Body::Single(part) => MultiPart::mixed().singlepart(part),
        };
        for attachment in &email.attachments {
            let content_type = ContentType::parse(&attachment.content_type).map_err(|_| {
                MailError::Invalid(
                    content_type_problem(&attachment.content_type).unwrap_or_default(),
                )
            })?;
            mixed = mixed.singlepart(
                MimeAttachment::new(attachment.name.clone())
                    .body(attachment.content.clone(), content_type),
            );
        }
        builder.multipart(mixed)
    };
    built.map_err(|e| MailError::Invalid(e.to_string()))
}

enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

/// `20261130T031000.123Z-<message id>.eml`: sorted by time, and one message is recognisable by
/// its id.
pub fn outbox_file_name(message_id: &str, at: DateTime<Utc>) -> String {
    let id: String = message_id
        .trim_matches(|c| c == '<' || c == '>')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-{id}.eml", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// Write to a hidden temporary file in the same directory, flush it, then rename: a reader of the
/// outbox never sees half a message.
async fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, MailError> {
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    let fail = |at: &Path, e: std::io::Error| MailError::Outbox {
        path: at.display().to_string(),
        message: e.to_string(),
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| fail(dir, e))?;
    let written = async {
        let mut file = tokio::fs::File::create(&temporary).await?;
        file.write_all(bytes).await?;
        file.sync_all().await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(fail(&temporary, e));
    }
    tokio::fs::rename(&temporary, &path)
        .await
        .map_err(|e| fail(&path, e))?;
    Ok(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SMTP_USER" => Some("mailer@example.test".to_owned()),
            "SMTP_PASSWORD" => Some("s3cr3t-from-env".to_owned()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<SmtpUrl, MailSetupError> {
        SmtpUrl::parse_with(text, env)
    }

    #[test]
    fn smtp_is_starttls_on_the_submission_port() {
        let url = parse("smtp://user:hunter22@mail.example.test").unwrap();
        assert_eq!(url.security, Security::StartTls);
        assert_eq!(url.host, "mail.example.test");
        assert_eq!(url.port, 587);
        assert_eq!(url.username.as_deref(), Some("user"));
        assert_eq!(url.password.as_deref(), Some("hunter22"));
        let url = parse("smtp://mail.example.test:2587?tls=starttls").unwrap();
        assert_eq!((url.security, url.port), (Security::StartTls, 2587));
        assert_eq!(url.username, None);
    }

    #[test]
    fn smtps_is_implicit_tls_on_port_465() {
        let url = parse("smtps://user:pw@mail.example.test").unwrap();
        assert_eq!((url.security, url.port), (Security::Implicit, 465));
        let url = parse("smtps://mail.example.test:10465").unwrap();
        assert_eq!((url.security, url.port), (Security::Implicit, 10465));
    }

    #[test]
    fn tls_none_is_plain_smtp_on_port_25() {
        let url = parse("smtp://relay.local?tls=none").unwrap();
        assert_eq!((url.security, url.port), (Security::None, 25));
        let url = parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!(
            (url.security, url.host.as_str(), url.port),
            (Security::None, "127.0.0.1", 2525)
        );
        assert_eq!(url.to_string(), "smtp://127.0.0.1:2525?tls=none");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let message = |text: &str| parse(text).unwrap_err().to_string();
        assert!(message("http://x.test").contains("unknown scheme 'http'"));
        assert!(message("smtp://x.test?tls=maybe").contains("tls=maybe is not known"));
        assert!(message("smtps://x.test?tls=none").contains("always TLS"));
        assert!(message("smtp://x.test?pool=3").contains("unknown parameter 'pool'"));
        assert!(message("smtp://x.test/ehlo").contains("no path"));
        assert!(message("smtp://x.test:99999").contains("not a URL"));
        assert!(message("mail.example.test:587").contains("scheme"));
    }

    #[test]
    fn user_names_are_percent_decoded_and_credentials_can_come_from_the_environment() {
        let url = parse("smtp://ada%40example.test:p%25ss@mail.example.test").unwrap();
        assert_eq!(url.username.as_deref(), Some("ada@example.test"));
        assert_eq!(url.password.as_deref(), Some("p%ss"));

        let url = parse("smtp://${SMTP_USER}:${SMTP_PASSWORD}@mail.example.test").unwrap();
        assert_eq!(url.username.as_deref(), Some("mailer@example.test"));
        assert_eq!(url.password.as_deref(), Some("s3cr3t-from-env"));

        let err = parse("smtp://user:${MISSING}@mail.example.test").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`email.smtp`: the environment variable MISSING is not set"
        );
    }

    #[test]
    fn credentials_never_show_in_debug_display_or_errors() {
        let secret = "s3cr3t-from-env";
        let url = parse("smtp://${SMTP_USER}:${SMTP_PASSWORD}@mail.example.test").unwrap();
        let shown = [url.to_string(), format!("{url:?}"), url.server()];
        for text in &shown {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(
            url.to_string(),
            "smtp://mailer@example.test:***@mail.example.test:587"
        );
        assert!(format!("{url:?}").contains("password: Some(\"***\")"));

        let literal = "hunter2-literal";
        let url = parse(&format!("smtps://user:{literal}@mail.example.test")).unwrap();
        assert!(!url.to_string().contains(literal));
        assert!(!format!("{url:?}").contains(literal));
        // Errors about a URL with a password never quote it.
        for bad in [
            format!("smtp://user:{literal}@x.test?tls=maybe"),
            format!("smtp://user:{literal}@x.test:99999"),
            format!("smtp://user:{literal}@x.test/path"),
            format!("ftp://user:{literal}@x.test"),
        ] {
            let message = parse(&bad).unwrap_err().to_string();
            assert!(!message.contains(literal), "{message}");
        }
    }

    #[test]
    fn address_lists() {
        let list =
            Address::parse_list("ada@example.test, \"Smith, Jo\" <jo@example.test>").unwrap();
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["ada@example.test", "\"Smith, Jo\" <jo@example.test>"]
        );
        assert_eq!(list[1].email(), "jo@example.test");
        assert_eq!(Address::parse_list("  ").unwrap(), Vec::new());
        assert_eq!(
            Address::parse_list(" Zoë <zoe@example.test> ").unwrap()[0].to_string(),
            "Zoë <zoe@example.test>"
        );
        for bad in [
            "not an address",
            "ada@",
            "ada@example.test garbage",
            "a@x.test;b@y.test",
        ] {
            let err = Address::parse_list(bad).unwrap_err();
            assert_eq!(err.0, bad);
        }
    }

    #[test]
    fn header_names_and_content_types() {
        assert_eq!(header_name_problem("X-Order-Id"), None);
        assert!(
            header_name_problem("Subject")
                .unwrap()
                .contains("its own key")
        );
        assert!(header_name_problem("bcc").unwrap().contains("its own key"));
        assert!(
            header_name_problem("X Bad")
                .unwrap()
                .contains("not a header name")
        );
        assert!(header_name_problem("X:Bad").is_some());
        assert!(header_name_problem("").is_some());
        assert_eq!(content_type_problem("text/csv; charset=utf-8"), None);
        assert!(content_type_problem("csv").is_some());
    }

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

    #[test]
    fn messages_drop_bcc_unless_kept_and_nest_alternative_in_mixed() {
        let email = sample();
        let from = Address::parse_list("Shop <shop@example.test>")
            .unwrap()
            .remove(0);
        let message = build_message(&email, &from, false).unwrap();
        let mut recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        recipients.sort();
        assert_eq!(
            recipients,
            ["ada@example.test", "audit@example.test", "cc@example.test"]
        );
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(!text.contains("Bcc:"), "{text}");
        assert!(
            text.contains("Message-ID: <run-1.confirm@hookflow>"),
            "{text}"
        );
        assert!(text.contains("X-Order: 9999"), "{text}");
        assert!(text.contains("Reply-To: help@example.test"), "{text}");
        let mixed = text.find("multipart/mixed").expect("mixed");
        let alternative = text.find("multipart/alternative").expect("alternative");
        assert!(mixed < alternative, "{text}");
        assert!(text.contains("filename=\"order.json\""), "{text}");

        let kept =
            String::from_utf8(build_message(&email, &from, true).unwrap().formatted()).unwrap();
        assert!(kept.contains("Bcc: audit@example.test"), "{kept}");
    }

    #[test]
    fn outbox_file_names_sort_by_time_and_carry_the_id() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T03:10:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            outbox_file_name("<0190.confirm/x@hookflow>", at),
            "20261130T031000.123Z-0190.confirm_x@hookflow.eml"
        );
    }

    #[tokio::test]
    async fn the_outbox_is_created_and_written_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("nested/outbox");
        let mailer = LettreMailer::from_settings(&EmailSettings {
            smtp: None,
            from: Some("Shop <shop@example.test>".into()),
            outbox: outbox.clone(),
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        let delivery = mailer.send(sample()).await.unwrap();
        let Delivery::Outbox { path } = delivery else {
            panic!("not the outbox: {delivery:?}");
        };
        assert_eq!(path.parent(), Some(outbox.as_path()));
        let names: Vec<String> = std::fs::read_dir(&outbox)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(
            names[0].ends_with("-run-1.confirm@hookflow.eml"),
            "{names:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("From: Shop <shop@example.test>"), "{text}");
    }

    #[tokio::test]
    async fn no_sender_anywhere_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = LettreMailer::from_settings(&EmailSettings {
            smtp: None,
            from: None,
            outbox: dir.path().to_owned(),
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        let err = mailer.send(sample()).await.unwrap_err();
        assert!(matches!(err, MailError::NoFrom));
        assert!(!err.is_transient());
        assert!(err.to_string().contains("`email.from`"), "{err}");
    }

    #[tokio::test]
    async fn transports_for_all_three_forms_are_built_without_connecting() {
        for url in [
            "smtp://user:pw@mail.example.test",
            "smtps://user:pw@mail.example.test",
            "smtp://127.0.0.1:2525?tls=none",
        ] {
            let mailer = LettreMailer::from_settings(&EmailSettings {
                smtp: Some(url.to_owned()),
                from: None,
                outbox: PathBuf::from("unused"),
                timeout: Duration::from_secs(5),
            });
            assert!(mailer.is_ok(), "{url}: {:?}", mailer.err());
        }
        let err = LettreMailer::from_settings(&EmailSettings {
            smtp: Some("smtp://user:hunter2-literal@x.test?tls=maybe".to_owned()),
            from: None,
            outbox: PathBuf::from("unused"),
            timeout: Duration::from_secs(5),
        })
        .err()
        .expect("a bad URL is refused");
        assert!(!err.to_string().contains("hunter2-literal"), "{err}");
    }

    #[test]
    fn a_bad_default_sender_stops_the_setup() {
        let settings = |from: &str| EmailSettings {
            smtp: None,
            from: Some(from.to_owned()),
            outbox: PathBuf::from("unused"),
            timeout: Duration::from_secs(5),
        };
        assert!(matches!(
            LettreMailer::from_settings(&settings("nobody")),
            Err(MailSetupError::From(_))
        ));
        assert!(matches!(
            LettreMailer::from_settings(&settings("a@x.test, b@x.test")),
            Err(MailSetupError::From(_))
        ));
    }
}
