//! URLs built from rendered values: the provider's base URL checked at load, and each path
//! segment (a project, a branch) checked and percent-encoded so a value cannot change the path.

use super::*;

/// Where a provider's API lives and how long a request may take: `base_url` and `timeout`.
#[derive(Debug)]
pub(super) struct Endpoint {
    pub(super) base_url: Option<ValueTemplate>,
    pub(super) timeout: Duration,
}

impl Endpoint {
    pub(super) fn compile(c: &mut Compiler, fields: &Fields<'_>) -> Option<Self> {
        let base_url = match fields.get("base_url") {
            Some(n) => {
                c.warn_if_host_from_payload(n, "`base_url`");
                let template = c.text(n, "`base_url`")?;
                if let Some(text) = literal(&template)
                    && let Err(problem) = check_base_url(text)
                {
                    c.error(n.span.clone(), problem);
                    return None;
                }
                Some(template)
            }
            None => None,
        };
        let timeout = match fields.get("timeout") {
            Some(n) => c.duration(n, "`timeout`")?,
            None => http::DEFAULT_TIMEOUT,
        };
        Some(Self { base_url, timeout })
    }

    /// The API root without a trailing `/`: `base_url`, else the provider's public service.
    pub(super) fn base(&self, scope: &Scope<'_>, default: &str) -> Result<String, StepError> {
        let base = match &self.base_url {
            Some(template) => template.render_string(scope)?,
            None => default.to_owned(),
        };
        check_base_url(&base).map_err(StepError::permanent)?;
        Ok(base.trim_end_matches('/').to_owned())
    }
}

pub(super) fn check_base_url(text: &str) -> Result<(), String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(format!(
            "`base_url` must be an http:// or https:// URL, not '{text}'"
        )),
    }
}

/// Render a text value that becomes one URL path segment.
pub(super) fn path_part(
    template: &ValueTemplate,
    scope: &Scope<'_>,
    key: &str,
) -> Result<String, StepError> {
    let text = template.render_string(scope)?;
    check_segment(text.trim(), key, &text)?;
    Ok(text.trim().to_owned())
}

/// A path segment must be a name: not empty, and not `.` or `..`, which URL parsers resolve
/// (even percent-encoded) and which would let a payload value climb to another API route.
pub(super) fn check_segment(segment: &str, key: &str, whole: &str) -> Result<(), StepError> {
    match segment {
        "" => Err(StepError::permanent(format!(
            "`{key}` has an empty part: '{whole}'"
        ))),
        "." | ".." => Err(StepError::permanent(format!(
            "`{key}` has a '{segment}' part: '{whole}'"
        ))),
        _ => Ok(()),
    }
}

/// Percent-encode one URL path segment: everything but RFC 3986 unreserved characters, so a
/// `/` inside a name (a GitLab project path) cannot change the route.
pub(super) fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A path of segments separated by `/` (`gh/acme/shop`, `folder/job`), each one a name.
pub(super) fn segments<'t>(text: &'t str, key: &str) -> Result<Vec<&'t str>, StepError> {
    let parts: Vec<&str> = text.trim().trim_matches('/').split('/').collect();
    for part in &parts {
        check_segment(part.trim(), key, text)?;
    }
    Ok(parts)
}
