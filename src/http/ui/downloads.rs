//! The event page's downloads: a run's stored event as the payload files `hookflow run`, `test`
//! and `send` read (`run::payload`): the body's exact bytes, and its headers file without the
//! signature and credential headers.

use super::*;
use crate::run::SavedPayload;
use crate::run::payload::{HEADERS_SUFFIX, saved_name};

/// `GET /ui/runs/{id}/event/payload`: the body, byte for byte.
pub(super) async fn event_payload(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(id): Path<String>,
) -> Response {
    let detail = match load_run(&state, &ui, &id).await {
        Ok(detail) => detail,
        Err(page) => return page,
    };
    let payload = SavedPayload::of_event(&detail.event);
    let name = format!(
        "{}.{}",
        saved_name(&detail.run.workflow, &detail.run.id),
        payload.extension()
    );
    // Never the stored content type: a payload of HTML must not render on the admin's origin.
    attachment(&name, "application/octet-stream", payload.body)
}

/// `GET /ui/runs/{id}/event/headers`: the headers file.
pub(super) async fn event_headers(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    Path(id): Path<String>,
) -> Response {
    let detail = match load_run(&state, &ui, &id).await {
        Ok(detail) => detail,
        Err(page) => return page,
    };
    let payload = SavedPayload::of_event(&detail.event);
    let name = format!(
        "{}{HEADERS_SUFFIX}",
        saved_name(&detail.run.workflow, &detail.run.id)
    );
    attachment(
        &name,
        "application/json",
        payload.headers_json().into_bytes(),
    )
}

/// A download: `Content-Disposition: attachment` under `name` (file-name-safe characters only,
/// so it needs no escaping), never sniffed into something else.
fn attachment(name: &str, content_type: &'static str, body: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
