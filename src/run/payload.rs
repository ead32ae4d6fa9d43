//! A payload saved to files: the body's exact bytes in `X.<ext>`, and the request headers beside
//! it in `X.headers.json` (one JSON object, header name -> text). `hookflow run`, `test` and
//! `send` read this format; `runs event --save` and the UI's event page write it from a stored
//! event, without the headers that carry a signature or a credential.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use super::Event;

/// What a headers file's name adds to its payload's name without the extension.
pub const HEADERS_SUFFIX: &str = ".headers.json";

/// A request body and the headers it is sent with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedPayload {
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// In the order written, names as written (a name appears once).
    pub headers: Vec<(String, String)>,
}

/// A headers file that is not one JSON object of names to text.
#[derive(Debug, thiserror::Error)]
pub enum HeadersFileError {
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("not one JSON object of header names to values")]
    NotAnObject,
    #[error("the value of {0} is not text")]
    NotText(String),
}

/// A payload file (or its headers file) that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a headers file: {source}")]
    Headers {
        path: String,
        source: HeadersFileError,
    },
}

/// The headers file of a body file: `X.json` -> `X.headers.json`, in the same folder.
pub fn headers_path(body: &Path) -> PathBuf {
    let stem = body
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    body.with_file_name(format!("{stem}{HEADERS_SUFFIX}"))
}

/// Headers a listener sets or recomputes for each request: saving them would only be wrong later.
const PER_CONNECTION: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "accept-encoding",
];

/// Whether a header carries a signature or a credential: a captured signature is useless on a
/// new request (it is signed again), and a credential must not be written to a file. Every
/// signature header of `verify`'s schemes is one of these (a test there holds it).
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || [
        "signature",
        "token",
        "secret",
        "password",
        "hmac",
        "api-key",
        "apikey",
    ]
    .iter()
    .any(|part| name.contains(part))
}

impl SavedPayload {
    /// A body file and its headers file when there is one. Without a `Content-Type` among the
    /// headers, one is guessed from the body file's extension ([`content_type_for`]).
    pub fn read(path: &Path) -> Result<Self, PayloadFileError> {
        let unreadable = |path: &Path, source| PayloadFileError::Read {
            path: path.display().to_string(),
            source,
        };
        let body = std::fs::read(path).map_err(|e| unreadable(path, e))?;
        let headers_file = headers_path(path);
        let headers = match std::fs::read_to_string(&headers_file) {
            Ok(text) => Self::parse_headers(&text).map_err(|source| PayloadFileError::Headers {
                path: headers_file.display().to_string(),
                source,
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(unreadable(&headers_file, err)),
        };
        let mut payload = SavedPayload { body, headers };
        if payload.content_type().is_none() {
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if let Some(guess) = content_type_for(extension, &payload.body) {
                payload.set_header("content-type", guess);
            }
        }
        Ok(payload)
    }

    /// A stored event as a payload to save: its exact body bytes, and its headers less the
    /// per-connection ones and those [`is_credential_header`] names. Values the store masked
    /// stay masked.
    pub fn of_event(event: &Event) -> Self {
        let headers = event
            .headers
            .iter()
            .filter(|(name, _)| {
                !PER_CONNECTION.contains(&name.as_str()) && !is_credential_header(name)
            })
            .map(|(name, value)| (name.clone(), text_of(value)))
            .collect();
        Self {
            body: event.raw.clone(),
            headers,
        }
    }

    /// A header's value, its name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Set a header, replacing one of the same name in any case.
    pub fn set_header(&mut self, name: &str, value: &str) {
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, existing)) => value.clone_into(existing),
            None => self.headers.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Remove a header, its name in any case; whether there was one.
    pub fn remove_header(&mut self, name: &str) -> bool {
        let before = self.headers.len();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.len() != before
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The body file's extension: `json` or `xml` by the content type, else `txt`.
    pub fn extension(&self) -> &'static str {
        let essence = self
            .content_type()
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or(ct)
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let subtype = essence.split_once('/').map_or("", |(_, s)| s);
        if subtype == "json" || subtype.ends_with("+json") {
            "json"
        } else if subtype == "xml" || subtype.ends_with("+xml") {
            "xml"
        } else {
            "txt"
        }
    }

    /// The headers file's text: one JSON object, two-space indented, with a final newline.
    pub fn headers_json(&self) -> String {
        let map: Map<String, Json> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), Json::String(value.clone())))
            .collect();
        let mut text = serde_json::to_string_pretty(&Json::Object(map)).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Read a headers file's text: numbers and booleans are taken as their text.
    pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, HeadersFileError> {
        let value: Json = serde_json::from_str(text).map_err(HeadersFileError::Json)?;
        let Json::Object(map) = value else {
            return Err(HeadersFileError::NotAnObject);
        };
        map.into_iter()
            .map(|(name, value)| match value {
                Json::String(text) => Ok((name, text)),
                Json::Number(_) | Json::Bool(_) => Ok((name, value.to_string())),
                _ => Err(HeadersFileError::NotText(name)),
            })
            .collect()
    }
}

/// The name a run's event is saved under by default, `<workflow>-<short id>`: the run id's first
/// 13 characters, its creation time to the millisecond (ids are UUIDv7), which `runs show` also
/// takes as a prefix. Only file-name-safe characters are kept.
pub fn saved_name(workflow: &str, run_id: &str) -> String {
    let short: String = run_id.chars().take(13).collect();
    format!("{workflow}-{short}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The content type a payload file's extension implies, when its headers give none. A `.txt`
/// body shaped like a form (`a=1&b=2`, as Slack and Twilio send) is a form; any other is text.
pub fn content_type_for(extension: &str, body: &[u8]) -> Option<&'static str> {
    match extension.to_ascii_lowercase().as_str() {
        "json" => Some("application/json"),
        "xml" => Some("application/xml"),
        "txt" if looks_like_a_form(body) => Some("application/x-www-form-urlencoded"),
        "txt" => Some("text/plain"),
        _ => None,
    }
}

fn looks_like_a_form(body: &[u8]) -> bool {
    !body.is_empty()
        && body.split(|&b| b == b'&').all(|pair| {
            pair.contains(&b'=')
                && pair
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"=%+-._~*".contains(&b))
        })
}

/// A stored header value as text (the store keeps text; anything else is shown as JSON).
fn text_of(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Trigger;

    fn event(headers: &[(&str, &str)], raw: &[u8]) -> Event {
        let mut event = Event::without_request(Trigger::Webhook, Json::Null, raw.to_vec());
        for (name, value) in headers {
            event
                .headers
                .insert((*name).to_owned(), Json::String((*value).to_owned()));
        }
        event
    }

    #[test]
    fn an_event_keeps_its_bytes_and_loses_its_credentials() {
        let saved = SavedPayload::of_event(&event(
            &[
                ("host", "127.0.0.1:8080"),
                ("content-type", "application/json; charset=utf-8"),
                ("content-length", "13"),
                ("x-github-event", "push"),
                ("x-hub-signature-256", "sha256=abc"),
                ("authorization", "Bearer t"),
                ("x-gitlab-token", "***"),
                ("x-masked", "***"),
            ],
            b"{\"a\": 1}\n",
        ));
        assert_eq!(saved.body, b"{\"a\": 1}\n");
        assert_eq!(
            saved.headers,
            vec![
                (
                    "content-type".to_owned(),
                    "application/json; charset=utf-8".to_owned()
                ),
                ("x-github-event".to_owned(), "push".to_owned()),
                ("x-masked".to_owned(), "***".to_owned()),
            ]
        );
        assert_eq!(saved.extension(), "json");
        let text = saved.headers_json();
        assert_eq!(SavedPayload::parse_headers(&text).unwrap(), saved.headers);
    }

    #[test]
    fn the_extension_follows_the_content_type() {
        let with = |ct: &str| SavedPayload {
            body: Vec::new(),
            headers: vec![("Content-Type".to_owned(), ct.to_owned())],
        };
        assert_eq!(with("application/vnd.api+json").extension(), "json");
        assert_eq!(with("text/xml; charset=utf-8").extension(), "xml");
        assert_eq!(with("application/x-www-form-urlencoded").extension(), "txt");
        assert_eq!(SavedPayload::default().extension(), "txt");
        assert_eq!(
            content_type_for("txt", b"token=x&text=&response_url=https%3A%2F%2Fh"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(content_type_for("txt", b"hello world"), Some("text/plain"));
        assert_eq!(content_type_for("bin", b""), None);
    }

    #[test]
    fn the_default_name_is_the_workflow_and_the_run_ids_millisecond() {
        assert_eq!(
            saved_name("github-push", "0198f2c4-1a2b-7c3d-8e4f-001122334455"),
            "github-push-0198f2c4-1a2b"
        );
        assert_eq!(saved_name("a b/c", "x\"y"), "a_b_c-x_y");
    }

    #[test]
    fn headers_files_are_objects_of_text() {
        assert_eq!(
            SavedPayload::parse_headers(r#"{"X-Attempt": 2, "X-Test": true}"#).unwrap(),
            vec![
                ("X-Attempt".to_owned(), "2".to_owned()),
                ("X-Test".to_owned(), "true".to_owned())
            ]
        );
        assert!(matches!(
            SavedPayload::parse_headers("[]"),
            Err(HeadersFileError::NotAnObject)
        ));
        assert!(matches!(
            SavedPayload::parse_headers(r#"{"a": null}"#),
            Err(HeadersFileError::NotText(name)) if name == "a"
        ));
        let mut saved = SavedPayload::default();
        saved.set_header("X-GitHub-Event", "push");
        saved.set_header("x-github-event", "ping");
        assert_eq!(saved.header("X-GITHUB-EVENT"), Some("ping"));
        assert!(saved.remove_header("X-Github-Event"));
        assert!(saved.headers.is_empty());
    }
}
