//! The `email.smtp` URL: scheme, security, host, port and credentials (from the URL or the
//! environment), never shown in full.

use super::*;
use std::fmt;

pub const SMTP_PORT: u16 = 25;
pub const SUBMISSION_PORT: u16 = 587;
pub const SUBMISSIONS_PORT: u16 = 465;

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
    pub(super) password: Option<String>,
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
}
