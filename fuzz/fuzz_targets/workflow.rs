//! Workflow files: bytes -> YAML -> compile -> routes, as `validate` and `serve` load them.
//!
//! Input: one workflow file, or two separated by a NUL byte (so route conflicts and calls
//! between workflows are reached too). Every diagnostic is rendered, caret and all.
#![no_main]

use hookflow::diag::SourceFile;
use hookflow::workflow::{CompileOptions, load_sources};
use hookflow_fuzz::split_nul;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, second) = split_nul(data);
    let mut sources = vec![SourceFile::new(
        "first.yaml",
        String::from_utf8_lossy(first).into_owned(),
    )];
    if let Some(second) = second {
        sources.push(SourceFile::new(
            "second.yaml",
            String::from_utf8_lossy(second).into_owned(),
        ));
    }
    let files = sources.len();
    // `exec` enabled, so its steps are compiled rather than refused outright.
    let options = CompileOptions {
        exec_enabled: true,
        ..CompileOptions::default()
    };
    let loaded = load_sources(sources, &options);
    assert_eq!(loaded.files, files);
    for diagnostic in loaded.diagnostics.iter() {
        let rendered = diagnostic.render();
        assert!(rendered.contains(&diagnostic.message));
    }
    if !loaded.diagnostics.has_errors() {
        assert_eq!(loaded.registry.workflows.len(), files);
    }
    // Every bound path is one its own route matches, with one value per parameter.
    for route in loaded.registry.routes.iter() {
        let path = route.pattern.as_str();
        let (found, _) = loaded
            .registry
            .routes
            .find(path)
            .expect("a route's own path finds a route");
        assert!(found.pattern.matches(path).is_some());
    }
});
