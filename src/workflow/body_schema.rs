//! `on.webhook.schema`: the JSON Schema a webhook's parsed body must match, written inline or
//! in a file beside the workflow, compiled once at load and checked at the door, where a body
//! that does not match is refused with its violations before anything is stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value as Json;

use crate::diag::{Diagnostic, SourceFile, Span};
use crate::lang::compile::Compiler;
use crate::lang::yaml::{self, Node, NodeValue};

/// The most violations one refusal lists; a body can break a schema in many places at once.
pub const MAX_VIOLATIONS: usize = 20;

/// The most problems with one schema `validate` reports, so a wrong schema stays readable.
const MAX_SCHEMA_PROBLEMS: usize = 5;

/// A compiled schema. Cheap to clone: the compiled form is shared.
#[derive(Clone)]
pub struct BodySchema {
    compiled: Arc<boon::Schemas>,
    index: boon::SchemaIndex,
    /// The schema as canonical JSON: workflows sharing a path must have the same one, since one
    /// request is checked once for all of them.
    pub text: String,
    /// Where it is written: `inline`, or the file as the workflow names it.
    pub origin: String,
}

impl std::fmt::Debug for BodySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySchema")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// One way a body breaks its schema, as the sender is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Where in the body, as a JSON Pointer (`/line_items/0/price`; empty for the whole body).
    pub path: String,
    pub message: String,
    /// Which keyword of the schema failed, as a JSON Pointer into the schema
    /// (`/properties/line_items/items/properties/price/type`). Never a piece of the body, so
    /// the rejected-requests record can keep it.
    #[serde(skip)]
    pub keyword: String,
}

impl BodySchema {
    /// The body's violations, at most [`MAX_VIOLATIONS`], in the schema's order; empty when it
    /// matches.
    pub fn check(&self, body: &Json) -> Vec<Violation> {
        let Err(error) = self.compiled.validate(body, self.index) else {
            return Vec::new();
        };
        let mut violations = Vec::new();
        collect_leaves(&error, &mut violations);
        if violations.is_empty() {
            // A failure with no finer cause (a `false` schema): the whole body is wrong.
            violations.push(violation(&error));
        }
        violations.truncate(MAX_VIOLATIONS);
        violations
    }
}

/// The errors with no cause below them: the specific reasons, not "validation failed".
fn collect_leaves(error: &boon::ValidationError<'_, '_>, out: &mut Vec<Violation>) {
    if out.len() >= MAX_VIOLATIONS {
        return;
    }
    if error.causes.is_empty() {
        out.push(violation(error));
    }
    for cause in &error.causes {
        collect_leaves(cause, out);
    }
}

fn violation(error: &boon::ValidationError<'_, '_>) -> Violation {
    let base = error
        .schema_url
        .split_once('#')
        .map_or("", |(_, pointer)| pointer);
    let keyword = match error.kind.keyword_path() {
        Some(path) => format!("{base}/{path}"),
        None => base.to_owned(),
    };
    Violation {
        path: error.instance_location.to_string(),
        message: one_line(&error.kind.to_string()),
        keyword,
    }
}

/// A message on one line: its first and last lines (a regex error draws a caret between).
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [first, .., last] => format!("{first} {last}"),
    }
}

/// `schema:`: a mapping (the schema itself) or a file path relative to the workflow file.
pub(super) fn compile_body_schema(c: &mut Compiler, node: &Node) -> Option<BodySchema> {
    match &node.value {
        NodeValue::Map(_) => {
            let base = absolute(Path::new(&c.file.path));
            compile_schema_node(c, node, &base, "inline".to_owned())
        }
        NodeValue::Str(relative) => {
            let path = directory_of(&c.file.path).join(relative);
            let shown = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(err) => {
                    c.push(
                        Diagnostic::error(
                            node.span.clone(),
                            format!("cannot read the schema file {shown}: {err}"),
                        )
                        .with_hint("`schema` is a JSON Schema, or a JSON or YAML file relative to the workflow file"),
                    );
                    return None;
                }
            };
            let file = SourceFile::new(shown, text);
            if let Some(problem) = json_syntax_problem(&file, &path) {
                c.push(problem);
                return None;
            }
            // Read as YAML (JSON is YAML) for the positions that place a problem in the file.
            let root = match yaml::parse(&file) {
                Ok(root) => root,
                Err(problem) => {
                    c.push(problem);
                    return None;
                }
            };
            compile_schema_node(c, &root, &absolute(&path), relative.clone())
        }
        _ => {
            c.error(
                node.span.clone(),
                format!(
                    "`schema` is a JSON Schema (a mapping) or the path of a schema file, not {}",
                    node.kind_name()
                ),
            );
            None
        }
    }
}

/// A `.json` file is held to JSON, which YAML would read more leniently (a trailing comma).
fn json_syntax_problem(file: &Arc<SourceFile>, path: &Path) -> Option<Diagnostic> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if !is_json {
        return None;
    }
    let err = serde_json::from_str::<serde::de::IgnoredAny>(&file.text).err()?;
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let reason = full.strip_suffix(&suffix).unwrap_or(&full);
    Some(Diagnostic::error(
        Span::new(file, err.line(), err.column(), 1),
        format!("invalid JSON: {reason}"),
    ))
}

fn directory_of(file: &str) -> PathBuf {
    Path::new(file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Compiles the schema written at `root` (in the workflow or in its own file), reporting what
/// is wrong with it at the place it is written.
fn compile_schema_node(
    c: &mut Compiler,
    root: &Node,
    location: &Path,
    origin: String,
) -> Option<BodySchema> {
    if root.as_map().is_none() {
        c.error(
            root.span.clone(),
            format!(
                "a webhook schema is a JSON Schema object, not {}",
                root.kind_name()
            ),
        );
        return None;
    }
    let schema = root.to_json();
    // The document's own address: relative references resolve against it, and the loader
    // below refuses every one that leaves the document.
    let url = match url::Url::from_file_path(location) {
        Ok(url) => url.to_string(),
        Err(()) => format!("file:///{}", location.display()),
    };
    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V2020_12);
    compiler.enable_format_assertions();
    compiler.use_loader(Box::new(NoExternalDocuments));
    let mut compiled = boon::Schemas::new();
    let index = match compiler.add_resource(&url, schema.clone()) {
        Ok(()) => compiler.compile(&url, &mut compiled),
        Err(err) => Err(err),
    };
    match index {
        Ok(index) => Some(BodySchema {
            compiled: Arc::new(compiled),
            index,
            text: serde_json::to_string(&schema).unwrap_or_default(),
            origin,
        }),
        Err(err) => {
            for problem in schema_problems(root, &url, &err) {
                c.push(problem);
            }
            None
        }
    }
}

/// Refuses every document but the schema itself (and the drafts' metaschemas, which boon
/// carries): the door makes no network request, and a schema is read whole at load.
struct NoExternalDocuments;

impl boon::UrlLoader for NoExternalDocuments {
    fn load(&self, url: &str) -> Result<Json, Box<dyn std::error::Error>> {
        Err(format!("{url} is outside the schema").into())
    }
}

/// What is wrong with a schema, each at the place in it that the problem names.
fn schema_problems(root: &Node, url: &str, err: &boon::CompileError) -> Vec<Diagnostic> {
    use boon::CompileError as E;
    let at = |location: &str| node_at(root, pointer_in(location, url)).span.clone();
    let hint = "a webhook schema is self-contained: put shared parts under `$defs` and refer to them as `#/$defs/name`";
    match err {
        E::ValidationError { src, .. } => metaschema_problems(root, src),
        E::LoadUrlError { url: other, .. } | E::UnsupportedUrlScheme { url: other } => {
            let (node, written) = match reference_to(root, other) {
                Some(node) => (node, node.as_str().unwrap_or(other)),
                None => (root, other.as_str()),
            };
            vec![
                Diagnostic::error(
                    node.span.clone(),
                    format!("the schema refers to {written}, outside itself"),
                )
                .with_hint(hint),
            ]
        }
        E::InvalidRegex { url, regex, src } => vec![Diagnostic::error(
            at(url),
            format!("invalid regular expression {regex:?} in the schema: {src}"),
        )],
        E::JsonPointerNotFound(location) | E::InvalidJsonPointer(location) => {
            let shown = location.strip_prefix(url).unwrap_or(location);
            vec![
                Diagnostic::error(
                    reference_to(root, location).unwrap_or(root).span.clone(),
                    format!("the schema refers to {shown}, which is not in it"),
                )
                .with_hint(hint),
            ]
        }
        other => vec![Diagnostic::error(
            root.span.clone(),
            format!("the schema cannot be compiled: {other:#}"),
        )],
    }
}

/// Problems found by checking the schema against its draft's metaschema: one diagnostic per
/// place, with every reason given for it.
fn metaschema_problems(root: &Node, error: &boon::ValidationError<'_, '_>) -> Vec<Diagnostic> {
    let mut leaves = Vec::new();
    collect_leaves(error, &mut leaves);
    let mut by_place: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order = Vec::new();
    for leaf in leaves {
        if !by_place.contains_key(&leaf.path) {
            order.push(leaf.path.clone());
        }
        by_place.entry(leaf.path).or_default().push(leaf.message);
    }
    order
        .into_iter()
        .take(MAX_SCHEMA_PROBLEMS)
        .map(|place| {
            let reasons = by_place.remove(&place).unwrap_or_default().join("; ");
            let shown = if place.is_empty() {
                "/"
            } else {
                place.as_str()
            };
            Diagnostic::error(
                node_at(root, &place).span.clone(),
                format!("not a valid JSON Schema at {shown}: {reasons}"),
            )
        })
        .collect()
}

/// The JSON Pointer part of a location in the schema document (`<url>#/properties/a`).
fn pointer_in<'a>(location: &'a str, url: &str) -> &'a str {
    location
        .strip_prefix(url)
        .unwrap_or(location)
        .split_once('#')
        .map_or("", |(_, pointer)| pointer)
}

/// The node a JSON Pointer names, or the deepest one on its way that exists.
fn node_at<'n>(root: &'n Node, pointer: &str) -> &'n Node {
    let mut node = root;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let next = match &node.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _)| k.name == token).map(|e| &e.1),
            NodeValue::Seq(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(child) => node = child,
            None => break,
        }
    }
    node
}

/// The `$ref` (or other `$` reference) that resolves to `target`, an absolute address.
fn reference_to<'n>(node: &'n Node, target: &str) -> Option<&'n Node> {
    match &node.value {
        NodeValue::Map(entries) => entries.iter().find_map(|(key, value)| {
            let resolves =
                key.name.starts_with('$') && value.as_str().is_some_and(|text| names(text, target));
            if resolves {
                Some(value)
            } else {
                reference_to(value, target)
            }
        }),
        NodeValue::Seq(items) => items.iter().find_map(|item| reference_to(item, target)),
        _ => None,
    }
}

/// Whether a reference as written (`other.json#/a`, `#/$defs/x`) can resolve to `target`.
fn names(written: &str, target: &str) -> bool {
    let (document, _) = written.split_once('#').unwrap_or((written, ""));
    let (target_document, _) = target.split_once('#').unwrap_or((target, ""));
    match document {
        "" => !written.is_empty() && target.ends_with(written),
        document => target_document.ends_with(document),
    }
}

#[cfg(test)]
mod tests;
