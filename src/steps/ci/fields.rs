//! The providers' shared keys: required and optional text templates, maps of them, and their
//! rendering.

use super::*;

/// The text of a template that has no template syntax, to check it at load time.
pub(super) fn literal(template: &ValueTemplate) -> Option<&str> {
    match template {
        ValueTemplate::Literal(Json::String(s)) => Some(s),
        _ => None,
    }
}

/// A required text key: compiled as a template (numbers are taken as text).
pub(super) fn required_text(
    c: &mut Compiler,
    fields: &Fields<'_>,
    key: &str,
) -> Option<ValueTemplate> {
    c.text(fields.get(key)?, &format!("`{key}`"))
}

pub(super) fn optional_text(
    c: &mut Compiler,
    fields: &Fields<'_>,
    key: &str,
) -> Option<Option<ValueTemplate>> {
    match fields.get(key) {
        Some(n) => c.text(n, &format!("`{key}`")).map(Some),
        None => Some(None),
    }
}

pub(super) fn optional_map(
    c: &mut Compiler,
    fields: &Fields<'_>,
    key: &str,
) -> Option<Option<Vec<(String, ValueTemplate)>>> {
    match fields.get(key) {
        Some(n) => c.text_map(n, &format!("`{key}`")).map(Some),
        None => Some(None),
    }
}

/// A mapping whose values keep their types (JSON bodies).
pub(super) fn render_map(
    entries: &[(String, ValueTemplate)],
    scope: &Scope<'_>,
) -> Result<Map<String, Json>, StepError> {
    let mut out = Map::new();
    for (name, value) in entries {
        out.insert(name.clone(), value.render(scope)?);
    }
    Ok(out)
}

/// A mapping whose values are sent as text (environment variables, form fields); a `null`
/// leaves its entry out, so a template can make one optional.
pub(super) fn render_text_map(
    entries: &[(String, ValueTemplate)],
    scope: &Scope<'_>,
) -> Result<Vec<(String, String)>, StepError> {
    let mut out = Vec::new();
    for (name, value) in entries {
        match value.render(scope)? {
            Json::Null => {}
            other => out.push((name.clone(), http::scalar_text(&other))),
        }
    }
    Ok(out)
}
