//! Secret redaction: secret values never reach a record, a trace or an error message.

use serde_json::Value as Json;

use crate::run::{MASK, StepRecord};

/// Shorter values would blank out ordinary text (a secret `1` would hide every digit one).
const MIN_SECRET_LEN: usize = 4;

pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a String>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .cloned()
            .collect();
        // Longest first, so a secret containing another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Self { values }
    }

    pub fn redact_str(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        out
    }

    pub fn redact_json(&self, value: &Json) -> Json {
        if self.values.is_empty() {
            return value.clone();
        }
        match value {
            Json::String(s) => Json::String(self.redact_str(s)),
            Json::Array(items) => Json::Array(items.iter().map(|i| self.redact_json(i)).collect()),
            Json::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (self.redact_str(k), self.redact_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    pub fn redact_record(&self, mut record: StepRecord) -> StepRecord {
        if self.values.is_empty() {
            return record;
        }
        record.input = self.redact_json(&record.input);
        record.output = self.redact_json(&record.output);
        record.error = record.error.map(|e| self.redact_str(&e));
        for attempt in &mut record.earlier {
            attempt.error = attempt.error.as_deref().map(|e| self.redact_str(e));
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secret_values_everywhere_in_json() {
        let secrets = vec!["s3cr3t-token".to_owned(), "1".to_owned()];
        let r = Redactor::new(&secrets);
        let v = serde_json::json!({"h": {"Authorization": "Bearer s3cr3t-token"}, "n": 1, "l": ["xs3cr3t-tokenx"]});
        assert_eq!(
            r.redact_json(&v),
            serde_json::json!({"h": {"Authorization": "Bearer ***"}, "n": 1, "l": ["x***x"]})
        );
        assert_eq!(r.redact_str("a 1 b"), "a 1 b");
    }
}
