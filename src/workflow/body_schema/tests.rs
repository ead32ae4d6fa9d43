//! Body schemas compiled from workflows and files, and bodies held against them: what passes,
//! what is refused with which violations, and the schemas refused at load.

use serde_json::json;

use super::*;
use crate::workflow::{CompileOptions, compile_file};

/// Compiles a workflow whose `on.webhook.schema` is `schema` (YAML, indented under it),
/// written at `dir/w.yaml`; the schema or the diagnostics, rendered.
fn compile_in(dir: &Path, schema: &str) -> Result<BodySchema, String> {
    let text = format!(
        "on:\n  webhook:\n    path: /hooks/orders\n    schema:{schema}\nsteps:\n  - log: hi\n"
    );
    let path = dir.join("w.yaml");
    let file = SourceFile::new(path.display().to_string(), text);
    let (workflow, diagnostics) = compile_file(file, &CompileOptions::default());
    match workflow {
        Some(w) => Ok(w.webhook.and_then(|t| t.schema).expect("a schema")),
        None => Err(diagnostics
            .iter()
            .map(Diagnostic::render)
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

fn compile(schema: &str) -> Result<BodySchema, String> {
    compile_in(Path::new("workflows"), schema)
}

const ORDER: &str = r#"
      type: object
      required: [id, line_items]
      properties:
        id: { type: integer }
        line_items:
          type: array
          items:
            type: object
            required: [price]
            properties:
              price: { type: number, minimum: 0 }"#;

#[test]
fn a_matching_body_has_no_violations_and_a_wrong_one_names_each_place() {
    let schema = compile(ORDER).expect("compiles");
    assert_eq!(schema.origin, "inline");
    let good = json!({"id": 7, "line_items": [{"price": 10.5}, {"price": 0}]});
    assert_eq!(schema.check(&good), []);
    let bad = json!({"line_items": [{"price": 1}, {"price": "12"}, {}]});
    let violations = schema.check(&bad);
    let found: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v.path.as_str(), v.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("", "missing properties 'id'"),
            ("/line_items/1/price", "want number, but got string"),
            ("/line_items/2", "missing properties 'price'"),
        ],
        "{violations:#?}"
    );
    assert_eq!(violations[0].keyword, "/required");
    assert_eq!(
        violations[1].keyword,
        "/properties/line_items/items/properties/price/type"
    );
}

/// The rendered diagnostics of a schema that must not compile.
fn refused(dir: &Path, schema: &str) -> String {
    match compile_in(dir, schema) {
        Ok(compiled) => panic!("{schema} compiled: {compiled:?}"),
        Err(rendered) => rendered,
    }
}

#[test]
fn a_wrong_inline_schema_is_reported_where_it_is_written() {
    let dir = Path::new("workflows");
    let rendered = refused(
        dir,
        "\n      properties:\n        a: { type: numbr, minimum: x }",
    );
    assert!(
        rendered.contains("workflows/w.yaml:6:20: error: not a valid JSON Schema at /properties/a/type: value must be one of 'array', 'boolean'"),
        "{rendered}"
    );
    assert!(
        rendered.contains("workflows/w.yaml:6:36: error: not a valid JSON Schema at /properties/a/minimum: want number, but got string"),
        "{rendered}"
    );
    let rendered = refused(dir, "\n      properties:\n        a: { pattern: '(' }");
    assert!(
        rendered.contains("workflows/w.yaml:6:23: error:"),
        "{rendered}"
    );
    assert!(rendered.contains("unclosed group"), "{rendered}");
    assert!(!rendered.lines().next().unwrap_or_default().ends_with(':'));
    let rendered = refused(dir, " 42");
    assert!(
        rendered.contains("w.yaml:4:13: error: `schema` is a JSON Schema (a mapping) or the path of a schema file, not a number"),
        "{rendered}"
    );
}

#[test]
fn references_outside_the_schema_are_refused_at_the_reference() {
    let dir = Path::new("workflows");
    for (schema, message) in [
        (
            "\n      properties:\n        a: { $ref: 'https://example.com/a.json' }",
            "w.yaml:6:20: error: the schema refers to https://example.com/a.json, outside itself",
        ),
        (
            "\n      properties:\n        a: { $ref: 'other.json#/a' }",
            "w.yaml:6:20: error: the schema refers to other.json#/a, outside itself",
        ),
        (
            "\n      properties:\n        a: { $ref: '#/$defs/missing' }",
            "w.yaml:6:20: error: the schema refers to #/$defs/missing, which is not in it",
        ),
    ] {
        let rendered = refused(dir, schema);
        assert!(rendered.contains(message), "{schema}: {rendered}");
        assert!(rendered.contains("hint: a webhook schema is self-contained"));
    }
    // A local reference and a standard metaschema need nothing outside.
    let schema = compile(
        "\n      $schema: 'https://json-schema.org/draft/2020-12/schema'\n      $defs:\n        cents: { type: integer }\n      properties:\n        amount: { $ref: '#/$defs/cents' }",
    )
    .expect("compiles");
    assert_eq!(schema.check(&json!({"amount": 5})), []);
    assert_eq!(schema.check(&json!({"amount": 5.5})).len(), 1);
}

#[test]
fn a_schema_file_is_read_beside_the_workflow_and_its_problems_located_in_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("order.schema.json"),
        "{\n  \"type\": \"object\",\n  \"required\": [\"id\"]\n}\n",
    )
    .expect("write");
    let schema = compile_in(dir.path(), " order.schema.json").expect("compiles");
    assert_eq!(schema.origin, "order.schema.json");
    assert_eq!(schema.check(&json!({"id": 1})), []);
    assert_eq!(
        schema.check(&json!({}))[0].message,
        "missing properties 'id'"
    );

    std::fs::write(
        dir.path().join("order.schema.yaml"),
        "type: object\nproperties:\n  id:\n    type: [integer, strin]\n",
    )
    .expect("write");
    let rendered = refused(dir.path(), " order.schema.yaml");
    let shown = dir.path().join("order.schema.yaml").display().to_string();
    assert!(
        rendered.contains(&format!(
            "{shown}:4:11: error: not a valid JSON Schema at /properties/id/type"
        )),
        "{rendered}"
    );

    std::fs::write(
        dir.path().join("broken.json"),
        "{\n  \"type\": \"object\",\n}\n",
    )
    .expect("write");
    let rendered = refused(dir.path(), " broken.json");
    let shown = dir.path().join("broken.json").display().to_string();
    assert!(
        rendered.starts_with(&format!(
            "{shown}:3:1: error: invalid JSON: key must be a string"
        )),
        "{rendered}"
    );

    let rendered = refused(dir.path(), " missing.json");
    assert!(
        rendered.contains("w.yaml:4:13: error: cannot read the schema file"),
        "{rendered}"
    );
}
