//! `ci.jenkins`: Jenkins' remote access API, `POST /job/{path}/buildWithParameters` (or `/build`
//! without parameters) with a user's API token, and the build-trigger `token` when one is set.

use base64::Engine as _;
use serde_json::{Map, Value as Json};

use super::{Endpoint, Provider, RenderedCi, encode_segment, literal, optional_text, segments};
use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::steps::http::scalar_text;
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate};

/// The keys of `ci.jenkins`.
pub const KEYS: &[&str] = &[
    "base_url",
    "job",
    "parameters",
    "user",
    "api_token",
    "token",
    "timeout",
];

#[derive(Debug)]
pub struct Build {
    job: ValueTemplate,
    parameters: Option<Vec<(String, ValueTemplate)>>,
    credentials: Option<(ValueTemplate, ValueTemplate)>,
    build_token: Option<ValueTemplate>,
    endpoint: Endpoint,
}

impl Build {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        // Jenkins has no public service: where it lives must be said.
        let fields = c.fields(node, "`ci.jenkins`", KEYS, &["base_url", "job"])?;
        let job_node = fields.get("job")?;
        let job = c.text(job_node, "`job`")?;
        if let Some(text) = literal(&job)
            && (text.starts_with("job/") || text.starts_with("/job/"))
        {
            c.push(
                crate::diag::Diagnostic::error(
                    job_node.span.clone(),
                    format!("`job` is the job's path without `job/`, not '{text}'"),
                )
                .with_hint("write folder/name; hookflow adds the /job/ parts of the URL"),
            );
            return None;
        }
        let user = optional_text(c, &fields, "user")?;
        let api_token = optional_text(c, &fields, "api_token")?;
        let credentials = match (user, api_token) {
            (Some(user), Some(token)) => Some((user, token)),
            (None, None) => None,
            _ => {
                c.error(
                    node.span.clone(),
                    "`ci.jenkins` takes `user` and `api_token` together (HTTP basic auth)",
                );
                return None;
            }
        };
        let parameters = match fields.get("parameters") {
            Some(n) => Some(c.text_map(n, "`parameters`")?),
            None => None,
        };
        Some(Self {
            job,
            parameters,
            credentials,
            build_token: optional_text(c, &fields, "token")?,
            endpoint: Endpoint::compile(c, &fields)?,
        })
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        let base = self.endpoint.base(scope, "")?;
        let job = self.job.render_string(scope)?;
        let mut path = String::new();
        // Folders nest as /job/<folder>/job/<name>.
        for segment in segments(&job, "job")? {
            path.push_str("/job/");
            path.push_str(&encode_segment(segment));
        }
        let action = if self.parameters.is_some() {
            "buildWithParameters"
        } else {
            "build"
        };
        let url = format!("{base}{path}/{action}");
        let mut request = RenderedCi::post(Provider::Jenkins, url, self.endpoint.timeout);
        if let Some(token) = &self.build_token {
            request = request.credential_query("token", token.render_string(scope)?);
        }
        if let Some((user, api_token)) = &self.credentials {
            let api_token = api_token.render_string(scope)?;
            let pair = format!("{}:{api_token}", user.render_string(scope)?);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            request = request.credential_header(
                "Authorization",
                format!("Basic {encoded}"),
                "Basic ***",
                api_token,
            );
            // The encoded pair is a credential too, wherever an error might quote it.
            request.credentials.push(encoded);
        }
        if let Some(parameters) = &self.parameters {
            let mut pairs = Vec::new();
            let mut record = Map::new();
            for (name, value) in parameters {
                match value.render(scope)? {
                    Json::Null => {}
                    // A multi-select parameter: the name repeated, as in `http` queries.
                    Json::Array(items) => {
                        let texts: Vec<String> = items.iter().map(scalar_text).collect();
                        for text in &texts {
                            pairs.push((name.clone(), text.clone()));
                        }
                        record.insert(
                            name.clone(),
                            Json::Array(texts.into_iter().map(Json::String).collect()),
                        );
                    }
                    other => {
                        let text = scalar_text(&other);
                        pairs.push((name.clone(), text.clone()));
                        record.insert(name.clone(), Json::String(text));
                    }
                }
            }
            request = request.form(&pairs, Json::Object(record))?;
        }
        Ok(request.idempotency_key(id))
    }
}
