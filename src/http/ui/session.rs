//! Who may see the UI and whose forms it takes: the login and its session cookie (derived from
//! the admin token), the bearer header, and the CSRF token of forms (an HMAC under a
//! per-process key of a random value kept in a `SameSite=Strict` cookie).

use super::*;

pub(super) const SESSION_COOKIE: &str = "hookflow_session";

pub(super) const CSRF_COOKIE: &str = "hookflow_csrf";

impl Ui {
    pub(super) fn csrf_token(&self, nonce: &str) -> String {
        hex(&hmac(&self.csrf_key, nonce.as_bytes()))
    }

    /// The CSRF token for a page's forms, and the cookie value to set when the browser has none.
    pub(super) fn csrf_for(&self, headers: &HeaderMap) -> (String, Option<String>) {
        match cookie(headers, CSRF_COOKIE).filter(|n| n.len() == 64) {
            Some(nonce) => (self.csrf_token(&nonce), None),
            None => {
                let nonce = hex(&random_bytes());
                (self.csrf_token(&nonce), Some(nonce))
            }
        }
    }

    /// A form came from a page of this UI in this browser.
    pub(super) fn genuine(&self, headers: &HeaderMap, token: &str) -> bool {
        cookie(headers, CSRF_COOKIE)
            .is_some_and(|nonce| same_secret(token, &self.csrf_token(&nonce)))
    }

    pub(super) fn stale_form(&self) -> Response {
        self.error_page(
            StatusCode::FORBIDDEN,
            "Form refused",
            "The form is stale or did not come from this UI. Open the page again and retry.",
        )
    }
}

/// A page with forms: the CSRF cookie goes with it when the browser had none.
pub(super) fn with_csrf_cookie(response: Response, fresh: Option<String>) -> Response {
    match fresh {
        Some(nonce) => with_cookie(response, CSRF_COOKIE, &nonce),
        None => response,
    }
}

/// Let the request through when it carries the token (header, session cookie, or `?token=`
/// once, which sets the cookie); send a browser to the login form otherwise.
pub(super) async fn authorize(ui: Arc<Ui>, request: Request, next: Next) -> Response {
    let (Some(token), Some(session)) = (&ui.token, &ui.session) else {
        return next.run(request).await;
    };
    let headers = request.headers();
    if bearer_token(headers).is_some_and(|given| same_secret(given, token))
        || cookie(headers, SESSION_COOKIE).is_some_and(|given| same_secret(&given, session))
    {
        return next.run(request).await;
    }
    let uri = request.uri().clone();
    let pairs: Vec<(String, String)> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let given = pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v);
    if given.is_some_and(|given| same_secret(given, token)) {
        // The token leaves the address bar: the cookie carries the session from here on.
        let rest: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "token").collect();
        let query = serde_urlencoded::to_string(&rest).unwrap_or_default();
        let target = if query.is_empty() {
            uri.path().to_owned()
        } else {
            format!("{}?{query}", uri.path())
        };
        return with_cookie(
            Redirect::to(&target).into_response(),
            SESSION_COOKIE,
            session,
        );
    }
    if request.method() == axum::http::Method::GET {
        let next_page = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/ui/runs");
        let query = serde_urlencoded::to_string([("next", next_page)]).unwrap_or_default();
        return Redirect::to(&format!("/ui/login?{query}")).into_response();
    }
    (StatusCode::UNAUTHORIZED, "unauthorized").into_response()
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

/// Only pages of the UI are followed after a login: no open redirect.
pub(super) fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/ui/runs",
    }
}

pub(super) async fn login_page(
    Extension(ui): Extension<Arc<Ui>>,
    RawQuery(q): RawQuery,
) -> Response {
    // A query that cannot be read only loses where to go after signing in.
    let q: LoginQuery = query::read(q.as_deref()).unwrap_or_default();
    if ui.token.is_none() {
        return Redirect::to("/ui/runs").into_response();
    }
    ui.render(
        "login.html",
        json!({ "page": "login", "next": safe_next(q.next.as_deref()) }),
    )
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

pub(super) async fn login(Extension(ui): Extension<Arc<Ui>>, body: Bytes) -> Response {
    let form: LoginForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let next = safe_next(form.next.as_deref()).to_owned();
    match (&ui.token, &ui.session) {
        (Some(token), Some(session)) if same_secret(&form.token, token) => {
            with_cookie(Redirect::to(&next).into_response(), SESSION_COOKIE, session)
        }
        (Some(_), _) => ui.render_status(
            StatusCode::UNAUTHORIZED,
            "login.html",
            json!({ "page": "login", "next": next, "failed": true }),
        ),
        _ => Redirect::to(&next).into_response(),
    }
}

pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Cookies of the UI: for its pages only, out of scripts' reach, never sent by another site.
pub(super) fn with_cookie(mut response: Response, name: &str, value: &str) -> Response {
    let cookie = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub(super) fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC takes a key of any length; this branch does not happen.
        return Vec::new();
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from the operating system's generator; uuid v7's random bits if it cannot be read.
pub(super) fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        bytes[..16].copy_from_slice(a.as_bytes());
        bytes[16..].copy_from_slice(b.as_bytes());
    }
    bytes
}
