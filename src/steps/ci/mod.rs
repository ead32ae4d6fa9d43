//! `ci`: start a build on a CI provider, one sub-key per provider (each in its own file), each
//! sending exactly the request the provider's public API documents; `generic` is any HTTP call.

pub mod buildkite;
pub mod circleci;
pub mod github;
pub mod gitlab;
pub mod jenkins;

mod answer;
mod fields;
mod paths;
mod sample;

use answer::*;
use fields::*;
use paths::*;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::effects::{Effects, HttpError, HttpRequest, HttpResponse};
use crate::lang::compile::{Compiler, Fields};
use crate::lang::yaml::Node;
use crate::run::StatusPattern;
use crate::steps::http::{self, HttpStep, RenderedHttp};
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate};

/// The keys of a `ci` step: one provider each.
pub const PROVIDERS: &[&str] = &[
    "github_actions",
    "github_dispatch",
    "gitlab",
    "jenkins",
    "buildkite",
    "circleci",
    "generic",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GithubActions,
    GithubDispatch,
    Gitlab,
    Jenkins,
    Buildkite,
    Circleci,
    Generic,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GithubActions => "github_actions",
            Provider::GithubDispatch => "github_dispatch",
            Provider::Gitlab => "gitlab",
            Provider::Jenkins => "jenkins",
            Provider::Buildkite => "buildkite",
            Provider::Circleci => "circleci",
            Provider::Generic => "generic",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            Provider::GithubActions,
            Provider::GithubDispatch,
            Provider::Gitlab,
            Provider::Jenkins,
            Provider::Buildkite,
            Provider::Circleci,
            Provider::Generic,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

#[derive(Debug)]
pub struct CiStep {
    call: Call,
}

/// Each provider boxed: their compiled forms differ a lot in size, and a step is compiled once.
#[derive(Debug)]
enum Call {
    GithubActions(Box<github::Actions>),
    GithubDispatch(Box<github::Dispatch>),
    Gitlab(Box<gitlab::Trigger>),
    Jenkins(Box<jenkins::Build>),
    Buildkite(Box<buildkite::Build>),
    Circleci(Box<circleci::Pipeline>),
    Generic(Box<HttpStep>),
}

impl CiStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(node, "`ci`", PROVIDERS, &[])?;
        let given: Vec<&str> = PROVIDERS
            .iter()
            .copied()
            .filter(|p| fields.has(p))
            .collect();
        let name = match given.as_slice() {
            [one] => *one,
            [] => {
                // Unknown keys were already reported with a hint; only an empty `ci` is new.
                if node.as_map().is_none_or(|entries| entries.is_empty()) {
                    c.error(
                        node.span.clone(),
                        format!("`ci` needs one provider: {}", PROVIDERS.join(", ")),
                    );
                }
                return None;
            }
            [first, second, ..] => {
                let span = fields.key(second)?.span.clone();
                c.error(
                    span,
                    format!("`ci` takes one provider, but has both '{first}' and '{second}'"),
                );
                return None;
            }
        };
        let body = fields.get(name)?;
        let call = match Provider::parse(name)? {
            Provider::GithubActions => {
                Call::GithubActions(Box::new(github::Actions::compile(c, body)?))
            }
            Provider::GithubDispatch => {
                Call::GithubDispatch(Box::new(github::Dispatch::compile(c, body)?))
            }
            Provider::Gitlab => Call::Gitlab(Box::new(gitlab::Trigger::compile(c, body)?)),
            Provider::Jenkins => Call::Jenkins(Box::new(jenkins::Build::compile(c, body)?)),
            Provider::Buildkite => Call::Buildkite(Box::new(buildkite::Build::compile(c, body)?)),
            Provider::Circleci => Call::Circleci(Box::new(circleci::Pipeline::compile(c, body)?)),
            Provider::Generic => {
                Call::Generic(Box::new(HttpStep::compile_as(c, body, "`ci.generic`")?))
            }
        };
        Some(Self { call })
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        let (provider, result) = match &self.call {
            Call::GithubActions(call) => (Provider::GithubActions, call.render(scope, id)),
            Call::GithubDispatch(call) => (Provider::GithubDispatch, call.render(scope, id)),
            Call::Gitlab(call) => (Provider::Gitlab, call.render(scope, id)),
            Call::Jenkins(call) => (Provider::Jenkins, call.render(scope, id)),
            Call::Buildkite(call) => (Provider::Buildkite, call.render(scope, id)),
            Call::Circleci(call) => (Provider::Circleci, call.render(scope, id)),
            Call::Generic(call) => (
                Provider::Generic,
                call.render(scope, id).map(RenderedCi::from_http),
            ),
        };
        // Every error names the provider, like the errors of the answer do.
        result
            .map(|rendered| rendered.with_traceparent(id.traceparent))
            .map_err(|mut err| {
                err.message = format!("{}: {}", provider.as_str(), err.message);
                err
            })
    }
}

/// One header of the request; credentials carry what the record shows instead.
#[derive(Debug, Clone)]
struct Header {
    name: String,
    value: String,
    shown: Option<String>,
}

/// The provider's request, fully rendered: what is sent, and what the record shows.
#[derive(Debug, Clone)]
pub struct RenderedCi {
    provider: Provider,
    method: String,
    url: String,
    /// The URL as recorded: a credential in the query shows as `***`.
    shown_url: String,
    headers: Vec<Header>,
    body: Option<Vec<u8>>,
    /// The body as recorded: JSON stays JSON, a form is a mapping, credentials are `***`.
    body_record: Json,
    timeout: Duration,
    follow_redirects: bool,
    expect: Vec<StatusPattern>,
    /// Credential values, kept out of error messages even when they are not declared secrets.
    credentials: Vec<String>,
}

impl RenderedCi {
    /// The URL called (with any credential in its query: not for records).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A POST that counts any 2xx as success (what every provider here answers on success).
    fn post(provider: Provider, url: String, timeout: Duration) -> Self {
        Self {
            provider,
            method: "POST".to_owned(),
            shown_url: url.clone(),
            url,
            headers: Vec::new(),
            body: None,
            body_record: Json::Null,
            timeout,
            follow_redirects: false,
            expect: vec![StatusPattern::Class(2)],
            credentials: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.to_owned(),
            value: value.into(),
            shown: None,
        });
        self
    }

    /// A header holding a credential: sent as `value`, recorded as `shown`.
    fn credential_header(mut self, name: &str, value: String, shown: &str, secret: String) -> Self {
        self.headers.push(Header {
            name: name.to_owned(),
            value,
            shown: Some(shown.to_owned()),
        });
        self.credentials.push(secret);
        self
    }

    /// A credential in the query string (`?token=...`), recorded as `***`.
    fn credential_query(mut self, name: &str, value: String) -> Self {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let encoded = serde_urlencoded::to_string([(name, value.as_str())]).unwrap_or_default();
        self.url.push(separator);
        self.url.push_str(&encoded);
        self.shown_url.push(separator);
        self.shown_url.push_str(&format!("{name}=***"));
        self.credentials.push(value);
        self
    }

    fn json(mut self, body: Json) -> Result<Self, StepError> {
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| StepError::permanent(format!("cannot encode the JSON body: {e}")))?;
        self = self.header("Content-Type", "application/json");
        self.body = Some(bytes);
        self.body_record = body;
        Ok(self)
    }

    /// A form body; `record` is how the record shows it (with credentials masked).
    fn form(mut self, pairs: &[(String, String)], record: Json) -> Result<Self, StepError> {
        let encoded = serde_urlencoded::to_string(pairs)
            .map_err(|e| StepError::permanent(format!("cannot encode the form: {e}")))?;
        self = self.header("Content-Type", "application/x-www-form-urlencoded");
        self.body = Some(encoded.into_bytes());
        self.body_record = record;
        Ok(self)
    }

    /// The same key as `http` steps: a provider or a proxy can recognise a request sent again.
    fn idempotency_key(self, id: &StepIdentity<'_>) -> Self {
        self.header("Idempotency-Key", format!("{}.{}", id.run_id, id.step_name))
    }

    fn from_http(request: RenderedHttp) -> Self {
        let mut headers: Vec<Header> = request
            .headers
            .into_iter()
            .map(|(name, value)| Header {
                name,
                value,
                shown: None,
            })
            .collect();
        let mut credentials = Vec::new();
        if let Some((scheme, secret)) = request.authorization {
            headers.push(Header {
                name: "Authorization".to_owned(),
                value: format!("{scheme} {secret}"),
                shown: Some(format!("{scheme} ***")),
            });
            credentials.push(secret);
        }
        Self {
            provider: Provider::Generic,
            method: request.method,
            shown_url: request.url.clone(),
            url: request.url,
            headers,
            body: request.body,
            body_record: request.body_record,
            timeout: request.timeout,
            follow_redirects: request.follow_redirects,
            expect: request.expect,
            credentials,
        }
    }

    pub fn to_json(&self) -> Json {
        let headers: Map<String, Json> = self
            .headers
            .iter()
            .map(|h| {
                let shown = h.shown.as_ref().unwrap_or(&h.value);
                (h.name.clone(), Json::String(shown.clone()))
            })
            .collect();
        serde_json::json!({
            "provider": self.provider.as_str(),
            "method": self.method,
            "url": self.shown_url,
            "headers": headers,
            "body": self.body_record,
        })
    }

    /// The step's span as `traceparent`, when traces are on and the request has none yet.
    fn with_traceparent(mut self, traceparent: Option<&str>) -> Self {
        if let Some(value) = traceparent
            && !self
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("traceparent"))
        {
            self.headers.push(Header {
                name: "traceparent".to_owned(),
                value: value.to_owned(),
                shown: None,
            });
        }
        self
    }

    /// `text` with every credential replaced by `***` (a transport error may quote the URL).
    /// Like the engine's redaction, values under 4 characters are left alone: masking every `a`
    /// would garble the message and hide nothing.
    fn mask(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.credentials {
            if secret.chars().count() >= 4 {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

/// Send the request and judge the provider's answer.
pub async fn execute(rendered: RenderedCi, effects: &Effects) -> Result<Json, StepError> {
    let outgoing = HttpRequest {
        method: rendered.method.clone(),
        url: rendered.url.clone(),
        headers: rendered
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        body: rendered.body.clone(),
        timeout: rendered.timeout,
        follow_redirects: rendered.follow_redirects,
    };
    let result = effects.http.send(outgoing).await;
    judge(&rendered, result)
}

/// What the provider would answer this request on success, for dry runs and tests.
pub fn sample_answer(rendered: &RenderedCi) -> HttpResponse {
    sample::answer(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("build.yml"), "build.yml");
        assert_eq!(encode_segment("mike/diaspora"), "mike%2Fdiaspora");
        assert_eq!(encode_segment("my job #2"), "my%20job%20%232");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn path_parts_are_names() {
        assert_eq!(
            segments("gh/acme/shop", "project").ok(),
            Some(vec!["gh", "acme", "shop"])
        );
        assert_eq!(
            segments("/folder/job/", "job").ok(),
            Some(vec!["folder", "job"])
        );
        assert!(segments("a//b", "job").is_err());
        assert!(segments("a/../admin", "job").is_err());
        assert!(segments("./a", "job").is_err());
        assert!(segments("", "job").is_err());
        assert!(check_segment("..", "repo", "..").is_err());
        assert!(check_segment("...", "repo", "...").is_ok());
    }

    #[test]
    fn base_urls_must_be_http() {
        assert!(check_base_url("https://ghe.example.test/api/v3").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("https://").is_err());
        assert!(check_base_url("api.github.com").is_err());
    }

    #[test]
    fn provider_messages() {
        // GitHub
        let github = json!({
            "message": "Unexpected inputs provided: [\"sha\"]",
            "documentation_url": "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event",
            "status": "422"
        });
        assert_eq!(
            provider_message(&github).as_deref(),
            Some("Unexpected inputs provided: [\"sha\"]")
        );
        let validation = json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Dispatch", "field": "event_type", "code": "missing_field"}]
        });
        assert_eq!(
            provider_message(&validation).as_deref(),
            Some("Validation Failed (event_type missing_field)")
        );
        // GitLab: text, a mapping of fields, or an OAuth-style error.
        assert_eq!(
            provider_message(&json!({"message": "404 Not Found"})).as_deref(),
            Some("404 Not Found")
        );
        assert_eq!(
            provider_message(&json!({"message": {"base": ["Reference not found"]}})).as_deref(),
            Some("base: Reference not found")
        );
        assert_eq!(
            provider_message(&json!({"error": "ref is missing"})).as_deref(),
            Some("ref is missing")
        );
        assert_eq!(
            provider_message(
                &json!({"error": "invalid_token", "error_description": "Token was revoked"})
            )
            .as_deref(),
            Some("invalid_token: Token was revoked")
        );
        // Buildkite
        assert_eq!(
            provider_message(
                &json!({"message": "Validation failed", "errors": ["Branch can't be blank"]})
            )
            .as_deref(),
            Some("Validation failed (Branch can't be blank)")
        );
        // Jenkins: its pages carry the reason in the title.
        let page = "<html>\n<head>\n<title>Error 403 No valid crumb was included in the request</title>\n</head>\n<body><h2>HTTP ERROR 403</h2></body></html>";
        assert_eq!(
            provider_message(&json!(page)).as_deref(),
            Some("Error 403 No valid crumb was included in the request")
        );
        assert_eq!(
            provider_message(&json!(
                "<html><body><p>Nothing is submitted</p></body></html>"
            ))
            .as_deref(),
            Some("Nothing is submitted")
        );
        assert_eq!(
            provider_message(&json!("\n\nJob not found\nmore detail")).as_deref(),
            Some("Job not found")
        );
        assert_eq!(provider_message(&json!({"other": 1})), None);
        assert_eq!(provider_message(&Json::Null), None);
        let long = "x".repeat(1000);
        assert_eq!(
            provider_message(&json!(long)).map(|m| m.len()),
            Some(MESSAGE_LIMIT + 3)
        );
    }

    fn answer(status: u16, content_type: &str, body: &str) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn refusals_are_permanent_and_outages_transient() {
        let request = RenderedCi::post(
            Provider::Buildkite,
            "https://api.buildkite.test/v2/organizations/o/pipelines/p/builds".to_owned(),
            Duration::from_secs(5),
        )
        .credential_header(
            "Authorization",
            "Bearer bk-secret".to_owned(),
            "Bearer ***",
            "bk-secret".to_owned(),
        );
        let ok = judge(
            &request,
            answer(201, "application/json", r#"{"number": 7}"#),
        );
        assert_eq!(ok.map(|o| o["number"].clone()).ok(), Some(json!(7)));
        for (status, transient) in [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (422, false),
            (408, true),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
        ] {
            let err = judge(
                &request,
                answer(status, "application/json", r#"{"message":"no"}"#),
            )
            .expect_err("not a 2xx");
            assert_eq!(err.transient, transient, "{status}");
            assert!(
                err.message.starts_with(&format!("buildkite: {status} ")),
                "{}",
                err.message
            );
            assert_eq!(
                err.output.as_ref().map(|o| o["status"].clone()),
                Some(json!(status))
            );
        }
        // A redirect is not followed: the error says where it pointed.
        let moved = judge(
            &request,
            Ok(HttpResponse {
                status: 301,
                headers: vec![("location".to_owned(), "https://new.test/v2".to_owned())],
                body: Vec::new(),
            }),
        )
        .expect_err("3xx");
        assert_eq!(
            moved.message,
            "buildkite: 301 Moved Permanently: redirected to https://new.test/v2; point `base_url` at the final address"
        );
        // Transport errors: a connection is worth retrying, a malformed request is not; a
        // credential quoted by the error is masked.
        let refused = judge(
            &request,
            Err(HttpError::Connect(
                "tcp connect error (bk-secret)".to_owned(),
            )),
        )
        .expect_err("no answer");
        assert!(refused.transient);
        assert_eq!(
            refused.message,
            "buildkite: POST https://api.buildkite.test/v2/organizations/o/pipelines/p/builds: could not connect: tcp connect error (***)"
        );
        let invalid = judge(
            &request,
            Err(HttpError::InvalidRequest("bad URL".to_owned())),
        )
        .expect_err("no answer");
        assert!(!invalid.transient);
        // A provider echoing the credential back does not put it in the error.
        let echoed = judge(
            &request,
            answer(401, "text/plain", "token bk-secret is revoked"),
        )
        .expect_err("401");
        assert_eq!(
            echoed.message,
            "buildkite: 401 Unauthorized: token *** is revoked"
        );
    }

    #[test]
    fn records_show_credentials_as_stars() {
        let id = StepIdentity {
            run_id: "0197",
            step_name: "build",
            traceparent: None,
        };
        let request = RenderedCi::post(
            Provider::Jenkins,
            "https://ci.test/job/a/build".to_owned(),
            Duration::from_secs(5),
        )
        .credential_query("token", "build-secret".to_owned())
        .credential_header(
            "Authorization",
            "Basic dTpw".to_owned(),
            "Basic ***",
            "p".to_owned(),
        )
        .idempotency_key(&id);
        assert_eq!(
            request.url,
            "https://ci.test/job/a/build?token=build-secret"
        );
        assert_eq!(
            request.to_json(),
            json!({
                "provider": "jenkins",
                "method": "POST",
                "url": "https://ci.test/job/a/build?token=***",
                "headers": { "Authorization": "Basic ***", "Idempotency-Key": "0197.build" },
                "body": null,
            })
        );
    }

    #[test]
    fn the_steps_span_goes_out_as_traceparent_unless_one_is_set() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let post = || {
            RenderedCi::post(
                Provider::Buildkite,
                "https://ci.test/builds".to_owned(),
                Duration::from_secs(5),
            )
        };
        let traced = post().with_traceparent(Some(traceparent));
        let sent: Vec<(&str, &str)> = traced
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(sent, [("traceparent", traceparent)]);
        // Traces off: nothing added.
        assert!(post().with_traceparent(None).headers.is_empty());
        // A `ci.generic` request whose workflow set its own keeps it.
        let own = traced.with_traceparent(Some("00-other"));
        assert_eq!(own.headers.len(), 1);
        assert_eq!(own.headers[0].value, traceparent);
    }

    #[test]
    fn outputs_name_what_each_provider_started() {
        let answer =
            |body: Json, headers: Json| json!({"status": 201, "headers": headers, "body": body});
        let gitlab = output(
            Provider::Gitlab,
            &answer(
                json!({"id": 287, "web_url": "https://gitlab.example.test/mike/diaspora/-/pipelines/287"}),
                json!({}),
            ),
        );
        assert_eq!(gitlab["id"], 287);
        assert_eq!(gitlab["url"], gitlab["web_url"]);
        let jenkins = output(
            Provider::Jenkins,
            &answer(
                Json::Null,
                json!({"location": "https://ci.example.test/queue/item/42/"}),
            ),
        );
        assert_eq!(
            jenkins["queue_url"],
            "https://ci.example.test/queue/item/42/"
        );
        assert_eq!(jenkins["url"], jenkins["queue_url"]);
        let github = output(Provider::GithubActions, &answer(Json::Null, json!({})));
        assert_eq!(github["run_id"], Json::Null);
        assert_eq!(github["url"], Json::Null);
        assert_eq!(github["status"], 201);
    }
}
