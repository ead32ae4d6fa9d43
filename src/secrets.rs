//! Where secret values come from: environment variables, or one file per secret in a directory
//! (Docker and Kubernetes secrets). Values are read when needed, so a rotated file takes effect
//! without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    /// `<dir>/<NAME>` holds the value of secret `NAME` when the environment has none.
    pub dir: Option<PathBuf>,
}

impl SecretSource {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// One secret's value: the environment variable, else the file; unset when neither exists.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Ok(value) = std::env::var(name) {
            return Some(value);
        }
        let path = self.dir.as_ref()?.join(name);
        let text = std::fs::read_to_string(path).ok()?;
        // Files written by editors and `echo` end with a newline that is not part of the secret.
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        Some(value.to_owned())
    }

    /// How to give secret `name` a value, for messages about an unset one.
    pub fn where_to_set(&self, name: &str) -> String {
        match &self.dir {
            Some(dir) => format!(
                "set {name} in the environment, or write it to {}",
                dir.join(name).display()
            ),
            None => format!(
                "set {name} in the environment, or in a secrets folder (--secrets-dir / HOOKFLOW_SECRETS_DIR) as a file named {name}"
            ),
        }
    }

    /// The values of the secrets named (those a workflow declared); unset ones are left out.
    pub fn resolve<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String>,
    ) -> BTreeMap<String, String> {
        names
            .into_iter()
            .filter_map(|name| self.get(name).map(|v| (name.clone(), v)))
            .collect()
    }

    /// The secrets named that are set nowhere, for a warning at load.
    pub fn missing<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
        names
            .into_iter()
            .filter(|name| self.get(name).is_none())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_wins_over_a_file_and_a_file_loses_its_newline() {
        let dir = std::env::temp_dir().join(format!("hookflow-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("SECRETS_TEST_FROM_FILE"), "from-file\n").unwrap();
        std::fs::write(dir.join("SECRETS_TEST_BOTH"), "file").unwrap();
        // SAFETY: a variable name only this test uses.
        unsafe { std::env::set_var("SECRETS_TEST_BOTH", "env") };
        let source = SecretSource::new(Some(dir.clone()));
        assert_eq!(
            source.get("SECRETS_TEST_FROM_FILE").as_deref(),
            Some("from-file")
        );
        assert_eq!(source.get("SECRETS_TEST_BOTH").as_deref(), Some("env"));
        assert_eq!(source.get("SECRETS_TEST_NOWHERE"), None);
        assert_eq!(SecretSource::default().get("SECRETS_TEST_FROM_FILE"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
