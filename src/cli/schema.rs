//! `hookflow schema`: the JSON Schema of a workflow file, or with `--settings` of
//! `hookflow.yaml`, printed for editors (the YAML language server's `$schema=` line).

use std::io::Write;
use std::process::ExitCode;

use super::SchemaArgs;
use crate::settings::schema::settings_schema;
use crate::workflow::schema::workflow_schema;

pub fn schema(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let text = render(args.settings)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The schema as printed (and committed under docs/schema/): indented JSON and a final newline.
pub fn render(settings: bool) -> anyhow::Result<String> {
    let schema = if settings {
        settings_schema()?
    } else {
        workflow_schema()?
    };
    Ok(serde_json::to_string_pretty(&schema)? + "\n")
}
