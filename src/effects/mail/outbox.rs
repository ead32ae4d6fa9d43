//! The outbox: `.eml` files named to sort by time and carry the message id, written to a
//! temporary file and renamed so a reader never sees half a message.

use super::*;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt as _;

/// `20261130T031000.123Z-<message id>.eml`: sorted by time, and one message is recognisable by
/// its id.
pub fn outbox_file_name(message_id: &str, at: DateTime<Utc>) -> String {
    let id: String = message_id
        .trim_matches(|c| c == '<' || c == '>')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-{id}.eml", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// Write to a hidden temporary file in the same directory, flush it, then rename: a reader of the
/// outbox never sees half a message.
pub(super) async fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<PathBuf, MailError> {
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    let fail = |at: &Path, e: std::io::Error| MailError::Outbox {
        path: at.display().to_string(),
        message: e.to_string(),
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| fail(dir, e))?;
    let written = async {
        let mut file = tokio::fs::File::create(&temporary).await?;
        file.write_all(bytes).await?;
        file.sync_all().await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(fail(&temporary, e));
    }
    tokio::fs::rename(&temporary, &path)
        .await
        .map_err(|e| fail(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_file_names_sort_by_time_and_carry_the_id() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T03:10:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            outbox_file_name("<0190.confirm/x@hookflow>", at),
            "20261130T031000.123Z-0190.confirm_x@hookflow.eml"
        );
    }
}
