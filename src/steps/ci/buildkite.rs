//! `ci.buildkite`: Buildkite's REST API, `POST /v2/organizations/{org}/pipelines/{pipeline}/builds`
//! with an API access token.

use serde_json::{Map, Value as Json};

use super::{
    Endpoint, Provider, RenderedCi, encode_segment, optional_map, optional_text, path_part,
    render_text_map, required_text,
};
use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate};

/// The keys of `ci.buildkite`.
pub const KEYS: &[&str] = &[
    "organization",
    "pipeline",
    "token",
    "commit",
    "branch",
    "message",
    "author",
    "env",
    "meta_data",
    "clean_checkout",
    "base_url",
    "timeout",
];
/// The keys of `author`.
pub const AUTHOR_KEYS: &[&str] = &["name", "email"];
pub const DEFAULT_BASE_URL: &str = "https://api.buildkite.com";

#[derive(Debug)]
pub struct Build {
    organization: ValueTemplate,
    pipeline: ValueTemplate,
    token: ValueTemplate,
    commit: ValueTemplate,
    branch: ValueTemplate,
    message: Option<ValueTemplate>,
    author: Option<(ValueTemplate, ValueTemplate)>,
    env: Option<Vec<(String, ValueTemplate)>>,
    meta_data: Option<Vec<(String, ValueTemplate)>>,
    clean_checkout: Option<bool>,
    endpoint: Endpoint,
}

impl Build {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(
            node,
            "`ci.buildkite`",
            KEYS,
            &["organization", "pipeline", "token", "commit", "branch"],
        )?;
        let author = match fields.get("author") {
            Some(n) => {
                let author = c.fields(n, "`author`", AUTHOR_KEYS, &["name", "email"])?;
                Some((
                    required_text(c, &author, "name")?,
                    required_text(c, &author, "email")?,
                ))
            }
            None => None,
        };
        let clean_checkout = match fields.get("clean_checkout") {
            Some(n) => Some(c.bool(n, "`clean_checkout`")?),
            None => None,
        };
        Some(Self {
            organization: required_text(c, &fields, "organization")?,
            pipeline: required_text(c, &fields, "pipeline")?,
            token: required_text(c, &fields, "token")?,
            commit: required_text(c, &fields, "commit")?,
            branch: required_text(c, &fields, "branch")?,
            message: optional_text(c, &fields, "message")?,
            author,
            env: optional_map(c, &fields, "env")?,
            meta_data: optional_map(c, &fields, "meta_data")?,
            clean_checkout,
            endpoint: Endpoint::compile(c, &fields)?,
        })
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        let base = self.endpoint.base(scope, DEFAULT_BASE_URL)?;
        let url = format!(
            "{base}/v2/organizations/{}/pipelines/{}/builds",
            encode_segment(path_part(&self.organization, scope, "organization")?.trim()),
            encode_segment(path_part(&self.pipeline, scope, "pipeline")?.trim()),
        );
        let text = |t: &ValueTemplate| t.render_string(scope).map(Json::String);
        let mut body = Map::new();
        body.insert("commit".into(), text(&self.commit)?);
        body.insert("branch".into(), text(&self.branch)?);
        if let Some(message) = &self.message {
            body.insert("message".into(), text(message)?);
        }
        if let Some((name, email)) = &self.author {
            body.insert(
                "author".into(),
                serde_json::json!({ "name": text(name)?, "email": text(email)? }),
            );
        }
        // Environment variables and meta-data are text on Buildkite's side.
        for (key, entries) in [("env", &self.env), ("meta_data", &self.meta_data)] {
            if let Some(entries) = entries {
                let map: Map<String, Json> = render_text_map(entries, scope)?
                    .into_iter()
                    .map(|(k, v)| (k, Json::String(v)))
                    .collect();
                body.insert(key.into(), Json::Object(map));
            }
        }
        if let Some(clean) = self.clean_checkout {
            body.insert("clean_checkout".into(), Json::Bool(clean));
        }
        let token = self.token.render_string(scope)?;
        RenderedCi::post(Provider::Buildkite, url, self.endpoint.timeout)
            .credential_header(
                "Authorization",
                format!("Bearer {token}"),
                "Bearer ***",
                token,
            )
            .json(Json::Object(body))
            .map(|r| r.idempotency_key(id))
    }
}
