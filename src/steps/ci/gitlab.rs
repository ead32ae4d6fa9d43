//! `ci.gitlab`: GitLab's pipeline trigger API, `POST /api/v4/projects/{id}/trigger/pipeline`
//! with a pipeline trigger token, on gitlab.com or a self-managed instance (`base_url`).

use serde_json::{Map, Value as Json};

use super::{
    Endpoint, Provider, RenderedCi, encode_segment, optional_map, path_part, render_text_map,
    required_text,
};
use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate};

/// The keys of `ci.gitlab`.
pub const KEYS: &[&str] = &[
    "project",
    "ref",
    "token",
    "variables",
    "base_url",
    "timeout",
];
pub const DEFAULT_BASE_URL: &str = "https://gitlab.com";

#[derive(Debug)]
pub struct Trigger {
    project: ValueTemplate,
    git_ref: ValueTemplate,
    token: ValueTemplate,
    variables: Option<Vec<(String, ValueTemplate)>>,
    endpoint: Endpoint,
}

impl Trigger {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(node, "`ci.gitlab`", KEYS, &["project", "ref", "token"])?;
        Some(Self {
            project: required_text(c, &fields, "project")?,
            git_ref: required_text(c, &fields, "ref")?,
            token: required_text(c, &fields, "token")?,
            variables: optional_map(c, &fields, "variables")?,
            endpoint: Endpoint::compile(c, &fields)?,
        })
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        let base = self.endpoint.base(scope, DEFAULT_BASE_URL)?;
        // A numeric id, or the project's path with its `/` encoded as one segment.
        let project = path_part(&self.project, scope, "project")?;
        let url = format!(
            "{base}/api/v4/projects/{}/trigger/pipeline",
            encode_segment(project.trim())
        );
        let token = self.token.render_string(scope)?;
        let git_ref = self.git_ref.render_string(scope)?;
        let mut pairs = vec![
            ("token".to_owned(), token.clone()),
            ("ref".to_owned(), git_ref.clone()),
        ];
        let mut record = Map::new();
        record.insert("token".into(), Json::String("***".into()));
        record.insert("ref".into(), Json::String(git_ref));
        if let Some(variables) = &self.variables {
            for (name, value) in render_text_map(variables, scope)? {
                let field = format!("variables[{name}]");
                record.insert(field.clone(), Json::String(value.clone()));
                pairs.push((field, value));
            }
        }
        let mut request = RenderedCi::post(Provider::Gitlab, url, self.endpoint.timeout)
            .form(&pairs, Json::Object(record))?
            .idempotency_key(id);
        // The trigger token travels in the form, not a header: keep it out of error messages.
        request.credentials.push(token);
        Ok(request)
    }
}
