//! A provider's answer judged: whether the build started, the output each provider's answer
//! gives (build number, URL, state), and a short, tag-free message from an error body.

use super::*;

/// How much of a provider's error text goes into the step's error.
pub(super) const MESSAGE_LIMIT: usize = 300;

/// The step's result from the provider's answer, or from the failure to get one.
pub(super) fn judge(
    rendered: &RenderedCi,
    result: Result<HttpResponse, HttpError>,
) -> Result<Json, StepError> {
    let provider = rendered.provider;
    let response = result.map_err(|e| StepError {
        message: format!(
            "{}: {} {}: {}",
            provider.as_str(),
            rendered.method,
            rendered.shown_url,
            rendered.mask(&e.to_string())
        ),
        output: None,
        transient: e.is_transient(),
    })?;
    let status = response.status;
    let output = output(provider, &http::response_output(&response));
    if rendered.expect.iter().any(|p| p.matches(status)) {
        return Ok(output);
    }
    let said = if (300..400).contains(&status) {
        output["headers"]["location"]
            .as_str()
            .map(|to| format!("redirected to {to}; point `base_url` at the final address"))
    } else {
        provider_message(&output["response"])
    };
    let mut message = format!("{}: {status}", provider.as_str());
    if let Some(reason) = reason_phrase(status) {
        message.push(' ');
        message.push_str(reason);
    }
    if let Some(said) = said {
        message.push_str(": ");
        message.push_str(&rendered.mask(&said));
    }
    Err(StepError {
        message,
        output: Some(output),
        transient: status >= 500 || status == 408 || status == 429,
    })
}

/// The step's output from the answer (`{status, headers, body}` as `http` reads it): `status`,
/// `url` (the started build's page, when the provider gives one), `response`, `headers`, and
/// each provider's own fields (null when the answer lacks them, so templates can test them).
pub(super) fn output(provider: Provider, answer: &Json) -> Json {
    let body = &answer["body"];
    let field = |name: &str| body.get(name).cloned().unwrap_or(Json::Null);
    let mut out = Map::new();
    out.insert("status".into(), answer["status"].clone());
    out.insert("url".into(), Json::Null);
    out.insert("response".into(), body.clone());
    out.insert("headers".into(), answer["headers"].clone());
    let mut extra = |name: &str, value: Json| {
        out.insert(name.to_owned(), value);
    };
    match provider {
        Provider::GithubActions => {
            extra("url", field("html_url"));
            extra("run_id", field("workflow_run_id"));
            extra("run_url", field("run_url"));
            extra("html_url", field("html_url"));
        }
        Provider::Gitlab => {
            extra("url", field("web_url"));
            extra("id", field("id"));
            extra("web_url", field("web_url"));
        }
        Provider::Jenkins => {
            let queue = answer["headers"]
                .get("location")
                .cloned()
                .unwrap_or(Json::Null);
            extra("url", queue.clone());
            extra("queue_url", queue);
        }
        Provider::Buildkite => {
            extra("url", field("web_url"));
            extra("web_url", field("web_url"));
            extra("number", field("number"));
        }
        Provider::Circleci => {
            extra("id", field("id"));
            extra("number", field("number"));
        }
        Provider::GithubDispatch | Provider::Generic => {}
    }
    Json::Object(out)
}

/// What the provider said about a failure, in one line: GitHub `{message, errors}`, GitLab
/// `{message}` (text, or a mapping of fields to messages) or `{error, error_description}`,
/// Buildkite `{message, errors}`, CircleCI `{message}`, Jenkins an HTML page or text.
pub(super) fn provider_message(body: &Json) -> Option<String> {
    let text = match body {
        Json::Object(map) => {
            let mut text = map
                .get("message")
                .or_else(|| map.get("error"))
                .and_then(flatten);
            if let Some(description) = map.get("error_description").and_then(Json::as_str) {
                text = Some(match text {
                    Some(t) => format!("{t}: {description}"),
                    None => description.to_owned(),
                });
            }
            if let Some(details) = map.get("errors").and_then(error_details) {
                text = Some(match text {
                    Some(t) => format!("{t} ({details})"),
                    None => details,
                });
            }
            text
        }
        Json::String(text) => text_message(text),
        _ => None,
    }?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    })
}

/// A message that may be text, a list, or a mapping of fields to messages, as one line.
pub(super) fn flatten(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(flatten).collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        Json::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .filter_map(|(k, v)| flatten(v).map(|v| format!("{k}: {v}")))
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        other => Some(other.to_string()),
    }
}

/// GitHub and Buildkite list validation problems in `errors`: text, or `{field, code, message}`.
pub(super) fn error_details(errors: &Json) -> Option<String> {
    let items = errors.as_array()?;
    let parts: Vec<String> = items
        .iter()
        .filter_map(|item| match item {
            Json::Object(map) => {
                if let Some(message) = map.get("message").and_then(Json::as_str) {
                    return Some(message.to_owned());
                }
                let words: Vec<&str> = ["field", "code"]
                    .iter()
                    .filter_map(|k| map.get(*k).and_then(Json::as_str))
                    .collect();
                if words.is_empty() {
                    flatten(item)
                } else {
                    Some(words.join(" "))
                }
            }
            other => flatten(other),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The first line that says something: an HTML page's `<title>` (Jenkins and proxies answer
/// with pages), else its first line of text; plain text's first non-empty line.
pub(super) fn text_message(text: &str) -> Option<String> {
    let looks_html = text.trim_start().starts_with('<');
    if looks_html {
        let lower = text.to_ascii_lowercase();
        if let Some(start) = lower.find("<title>") {
            let rest = &text[start + "<title>".len()..];
            let end = rest
                .to_ascii_lowercase()
                .find("</title>")
                .unwrap_or(rest.len());
            let title = decode_entities(rest[..end].trim());
            if !title.is_empty() {
                return Some(title);
            }
        }
        return strip_tags(text)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(decode_entities);
    }
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

pub(super) fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                // A closed element ends a line of text, so block elements do not run together.
                out.push('\n');
            }
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out
}

pub(super) fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The standard reason phrase, so errors read `401 Unauthorized`.
pub(super) fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

// --- pieces the providers share ---
