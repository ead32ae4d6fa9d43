//! The real mailer: one pooled lettre SMTP transport, or atomically written `.eml` files in
//! the outbox; SMTP errors classified as permanent or worth a retry.

use super::BoxFuture;
use super::*;
use chrono::Utc;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;

/// Connections kept open to the SMTP server, shared by every run.
const POOL_MAX_CONNECTIONS: u32 = 8;
/// Servers drop idle clients after a minute or so; closing first avoids sending on a dead socket.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

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
    crate::effects::http::install_crypto_provider();
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

#[cfg(test)]
mod tests {
    use super::*;

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
