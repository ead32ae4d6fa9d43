//! Payload files as the commands read and write them: a body file `X.<ext>` and, beside it, an
//! optional `X.headers.json` (the format of `run::payload`). `run`, `test` and `send` read them;
//! `runs event --save` writes them.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::run::SavedPayload;

pub use crate::run::payload::headers_path;

/// A body file and its headers file when there is one (see [`SavedPayload::read`]).
pub fn read(path: &Path) -> anyhow::Result<SavedPayload> {
    Ok(SavedPayload::read(path)?)
}

/// Write `<dir>/<name>.<ext>` (the body's bytes) and `<dir>/<name>.headers.json`, creating
/// `dir` when needed; the two paths written.
pub fn write(dir: &Path, name: &str, payload: &SavedPayload) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let body = dir.join(format!("{name}.{}", payload.extension()));
    let headers = headers_path(&body);
    std::fs::write(&body, &payload.body)
        .with_context(|| format!("cannot write {}", body.display()))?;
    std::fs::write(&headers, payload.headers_json())
        .with_context(|| format!("cannot write {}", headers.display()))?;
    Ok((body, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_file_and_its_headers_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let payload = SavedPayload {
            body: b"{\"ref\": \"refs/heads/main\"}".to_vec(),
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-github-event".to_owned(), "push".to_owned()),
            ],
        };
        let (body, headers) = write(dir.path(), "github-push-0198f2c4", &payload).unwrap();
        assert_eq!(body, dir.path().join("github-push-0198f2c4.json"));
        assert_eq!(
            headers,
            dir.path().join("github-push-0198f2c4.headers.json")
        );
        assert_eq!(read(&body).unwrap(), payload);
    }

    #[test]
    fn without_a_headers_file_the_content_type_is_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slash_command.txt");
        std::fs::write(&path, "token=x&command=%2Fdeploy").unwrap();
        let read = read(&path).unwrap();
        assert_eq!(
            read.content_type(),
            Some("application/x-www-form-urlencoded")
        );
        std::fs::write(headers_path(&path), "[1]").unwrap();
        let err = super::read(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("slash_command.headers.json is not a headers file"),
            "{err:#}"
        );
    }
}
