//! Webhook routes: path patterns with `{params}`, and the table that maps a request path to the
//! workflows bound to it (several workflows on one path each get a run).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diag::{Diagnostic, Diagnostics};
use crate::workflow::{RateLimit, RespondMode, Workflow};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A path such as `/hooks/{tenant}/orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    text: String,
    segments: Vec<Segment>,
}

impl RoutePattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("webhook path '{text}' must start with '/'"));
        }
        let mut segments = Vec::new();
        for part in text.trim_end_matches('/').split('/').skip(1) {
            if part.is_empty() {
                return Err(format!("webhook path '{text}' has an empty segment ('//')"));
            }
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "path parameter '{{{name}}}' must be a name of letters, digits and '_'"
                    ));
                }
                if segments.contains(&Segment::Param(name.to_owned())) {
                    return Err(format!("path parameter '{{{name}}}' appears twice"));
                }
                segments.push(Segment::Param(name.to_owned()));
            } else if part.contains('{') || part.contains('}') {
                return Err(format!(
                    "path segment '{part}' mixes text and a parameter; a parameter is a whole segment"
                ));
            } else {
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pattern with parameter names erased: two patterns with one shape match the same paths.
    fn shape(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(_) => out.push_str("{}"),
            }
        }
        out
    }

    fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    /// The parameters when `path` matches.
    pub fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let trimmed = path.trim_end_matches('/');
        let parts: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').skip(1).collect()
        };
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) if part.is_empty() => return None,
                Segment::Param(name) => {
                    params.insert(name.clone(), percent_decode(part));
                }
            }
        }
        Some(params)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One path and every workflow bound to it.
#[derive(Debug)]
pub struct Route {
    pub pattern: RoutePattern,
    pub workflows: Vec<Arc<Workflow>>,
    pub respond: RespondMode,
    pub max_body: usize,
    /// One bucket for the path, whichever workflow a request starts.
    pub rate_limit: Option<RateLimit>,
}

impl Route {
    /// The workflows that accept `method`, and the methods any of them accept (for 405's Allow).
    pub fn bound(&self, method: &str) -> Vec<&Arc<Workflow>> {
        self.workflows
            .iter()
            .filter(|w| {
                w.webhook
                    .as_ref()
                    .is_some_and(|t| t.methods.iter().any(|m| m == method))
            })
            .collect()
    }

    pub fn allowed_methods(&self) -> Vec<String> {
        let mut methods: Vec<String> = self
            .workflows
            .iter()
            .filter_map(|w| w.webhook.as_ref())
            .flat_map(|t| t.methods.iter().cloned())
            .collect();
        methods.sort();
        methods.dedup();
        methods
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Group workflows by path, reporting bindings that cannot share a path.
    pub fn build<'a>(&mut self, workflows: impl Iterator<Item = &'a Arc<Workflow>>) -> Diagnostics {
        let mut diagnostics = Diagnostics::default();
        let mut by_shape: BTreeMap<String, usize> = BTreeMap::new();
        for workflow in workflows {
            let Some(trigger) = &workflow.webhook else {
                continue;
            };
            let shape = trigger.path.shape();
            let Some(&index) = by_shape.get(&shape) else {
                by_shape.insert(shape, self.routes.len());
                self.routes.push(Route {
                    pattern: trigger.path.clone(),
                    workflows: vec![Arc::clone(workflow)],
                    respond: trigger.respond,
                    max_body: trigger.max_body,
                    rate_limit: trigger.rate_limit.clone(),
                });
                continue;
            };
            let route = &mut self.routes[index];
            let first = &route.workflows[0];
            let conflict = if route.pattern != trigger.path {
                Some(format!(
                    "path '{}' matches the same requests as '{}' in workflow '{}' but names its parameters differently",
                    trigger.path.as_str(),
                    route.pattern.as_str(),
                    first.name
                ))
            } else if route.respond != trigger.respond {
                Some(format!(
                    "workflow '{}' also binds '{}' with a different `respond` mode; one request gets one answer",
                    first.name,
                    trigger.path.as_str()
                ))
            } else if trigger.respond == RespondMode::Sync {
                Some(format!(
                    "workflow '{}' also binds '{}' with `respond: sync`; a sync route has exactly one workflow",
                    first.name,
                    trigger.path.as_str()
                ))
            } else if route.max_body != trigger.max_body {
                Some(format!(
                    "workflow '{}' also binds '{}' with a different `max_body` ({} vs {} bytes)",
                    first.name,
                    trigger.path.as_str(),
                    route.max_body,
                    trigger.max_body
                ))
            } else if verify_text(first) != trigger.verify.as_ref().map(|v| v.text.as_str()) {
                // One request is checked once, so every workflow on the path must trust the
                // same senders; a workflow without `verify` would accept what another refuses.
                Some(format!(
                    "workflow '{}' also binds '{}' with a different `verify`; workflows sharing a path must verify alike",
                    first.name,
                    trigger.path.as_str()
                ))
            } else if route.rate_limit != trigger.rate_limit {
                Some(format!(
                    "workflow '{}' also binds '{}' with a different `rate_limit`; a path has one limit",
                    first.name,
                    trigger.path.as_str()
                ))
            } else if first.webhook.as_ref().map(|t| t.xml) != Some(trigger.xml) {
                Some(format!(
                    "workflow '{}' also binds '{}' with a different `xml` mode; one body is parsed once",
                    first.name,
                    trigger.path.as_str()
                ))
            } else if schema_text(first) != trigger.schema.as_ref().map(|s| s.text.as_str()) {
                // One body is checked once and answered once: a workflow without the schema
                // would accept what another refuses.
                Some(format!(
                    "workflow '{}' also binds '{}' with a different `schema`; workflows sharing a path must check bodies alike",
                    first.name,
                    trigger.path.as_str()
                ))
            } else {
                None
            };
            match conflict {
                Some(message) => diagnostics.push(
                    Diagnostic::error(trigger.span.clone(), message).with_hint(format!(
                        "see {}:{}",
                        first
                            .webhook
                            .as_ref()
                            .map(|t| t.span.file.path.clone())
                            .unwrap_or_default(),
                        first.webhook.as_ref().map(|t| t.span.line).unwrap_or(1)
                    )),
                ),
                None => route.workflows.push(Arc::clone(workflow)),
            }
        }
        // Most literal segments first, so `/a/b` wins over `/a/{x}`.
        self.routes
            .sort_by_key(|r| std::cmp::Reverse(r.pattern.literal_count()));
        diagnostics
    }

    pub fn find(&self, path: &str) -> Option<(&Route, BTreeMap<String, String>)> {
        self.routes
            .iter()
            .find_map(|route| route.pattern.matches(path).map(|params| (route, params)))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

fn schema_text(workflow: &Workflow) -> Option<&str> {
    workflow
        .webhook
        .as_ref()
        .and_then(|t| t.schema.as_ref())
        .map(|s| s.text.as_str())
}

fn verify_text(workflow: &Workflow) -> Option<&str> {
    workflow
        .webhook
        .as_ref()
        .and_then(|t| t.verify.as_ref())
        .map(|v| v.text.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_paths_and_extract_params() {
        let p = RoutePattern::parse("/hooks/{tenant}/orders").unwrap();
        let params = p.matches("/hooks/acme%20co/orders").unwrap();
        assert_eq!(params.get("tenant").map(String::as_str), Some("acme co"));
        assert!(p.matches("/hooks/acme/orders/").is_some());
        assert!(p.matches("/hooks/acme").is_none());
        assert!(p.matches("/hooks//orders").is_none());
    }

    #[test]
    fn bad_patterns_are_rejected() {
        assert!(RoutePattern::parse("hooks").is_err());
        assert!(RoutePattern::parse("/a//b").is_err());
        assert!(RoutePattern::parse("/a/x{id}").is_err());
        assert!(RoutePattern::parse("/a/{id}/{id}").is_err());
    }
}
