//! `ci.circleci`: CircleCI's API v2, `POST /api/v2/project/{project-slug}/pipeline` with a
//! personal API token in `Circle-Token`.

use serde_json::{Map, Value as Json};

use super::{
    Endpoint, Provider, RenderedCi, encode_segment, optional_map, optional_text, render_map,
    required_text, segments,
};
use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate};

/// The keys of `ci.circleci`.
pub const KEYS: &[&str] = &[
    "project",
    "token",
    "branch",
    "tag",
    "parameters",
    "base_url",
    "timeout",
];
pub const DEFAULT_BASE_URL: &str = "https://circleci.com";

#[derive(Debug)]
pub struct Pipeline {
    project: ValueTemplate,
    token: ValueTemplate,
    branch: Option<ValueTemplate>,
    tag: Option<ValueTemplate>,
    parameters: Option<Vec<(String, ValueTemplate)>>,
    endpoint: Endpoint,
}

impl Pipeline {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(node, "`ci.circleci`", KEYS, &["project", "token"])?;
        if fields.has("branch") && fields.has("tag") {
            let span = fields.key("tag")?.span.clone();
            c.error(
                span,
                "`ci.circleci` takes `branch` or `tag`, not both (CircleCI refuses both)",
            );
            return None;
        }
        Some(Self {
            project: required_text(c, &fields, "project")?,
            token: required_text(c, &fields, "token")?,
            branch: optional_text(c, &fields, "branch")?,
            tag: optional_text(c, &fields, "tag")?,
            parameters: optional_map(c, &fields, "parameters")?,
            endpoint: Endpoint::compile(c, &fields)?,
        })
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        let base = self.endpoint.base(scope, DEFAULT_BASE_URL)?;
        // The slug `gh/org/repo` (or `circleci/<org id>/<project id>`) stays three segments.
        let project = self.project.render_string(scope)?;
        let slug: Vec<String> = segments(&project, "project")?
            .into_iter()
            .map(encode_segment)
            .collect();
        let url = format!("{base}/api/v2/project/{}/pipeline", slug.join("/"));
        let mut body = Map::new();
        if let Some(branch) = &self.branch {
            body.insert("branch".into(), Json::String(branch.render_string(scope)?));
        }
        if let Some(tag) = &self.tag {
            body.insert("tag".into(), Json::String(tag.render_string(scope)?));
        }
        // Pipeline parameters are typed (string, integer, boolean): values keep their types.
        if let Some(parameters) = &self.parameters {
            body.insert(
                "parameters".into(),
                Json::Object(render_map(parameters, scope)?),
            );
        }
        let token = self.token.render_string(scope)?;
        RenderedCi::post(Provider::Circleci, url, self.endpoint.timeout)
            .header("Accept", "application/json")
            .credential_header("Circle-Token", token.clone(), "***", token)
            .json(Json::Object(body))
            .map(|r| r.idempotency_key(id))
    }
}
