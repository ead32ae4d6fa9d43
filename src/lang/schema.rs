//! JSON Schema (draft 2020-12) pieces for the files hookflow reads, built from the compiler's own
//! key lists: an object's properties are exactly the keys the compiler accepts there, each one
//! described, so a list that gains or loses a key without the schema following is reported as
//! drift ([`SchemaDrift`]) instead of printing a schema that lies.

use serde::de::{DeserializeOwned, Visitor};
use serde_json::{Map, Value as Json, json};

use super::compile::RETRY_KEYS;

/// The JSON Schema dialect of every schema hookflow prints.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// A duration as workflows and `hookflow.yaml` write it (see `units::parse_duration`).
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*(ms|s|m|h|d)?\s*$";
/// A size (see `units::parse_size`): bytes, or a number and a unit in any case.
pub const SIZE_PATTERN: &str = r"^\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*([Bb]|[KkMmGg]([Ii]?[Bb])?)?\s*$";
/// A workflow's or a step's name (see `compile::valid_name`).
pub const NAME_PATTERN: &str = r"^[A-Za-z0-9._-]+$";
/// A string holding template syntax.
pub const TEMPLATE_PATTERN: &str = r"\{\{|\{%";

/// A key list of the compiler and the name it is written under in the source.
#[derive(Debug, Clone)]
pub struct KeyList {
    pub name: String,
    pub keys: Vec<&'static str>,
}

impl KeyList {
    pub fn new(name: impl Into<String>, keys: &[&'static str]) -> Self {
        // `stringify!` spaces a path out (`ci :: PROVIDERS`): names read as written.
        let name: String = name.into().chars().filter(|c| !c.is_whitespace()).collect();
        Self {
            name,
            keys: keys.to_vec(),
        }
    }
}

/// `key_list!(steps::http::KEYS)`: the constant's keys, named as written.
macro_rules! key_list {
    ($($segment:ident)::+) => {
        $crate::lang::schema::KeyList::new(stringify!($($segment)::+), $($segment)::+)
    };
}
pub(crate) use key_list;

/// One object of a schema as built: which key list it came from, and what it requires.
#[derive(Debug, Clone)]
pub struct ObjectRecord {
    pub list: String,
    pub keys: Vec<&'static str>,
    pub required: Vec<&'static str>,
}

/// The schema and the compiler's key lists disagree.
#[derive(Debug, thiserror::Error)]
#[error("the schema does not match the compiler's key lists:\n  {}", .0.join("\n  "))]
pub struct SchemaDrift(pub Vec<String>);

/// Collects the objects of a schema and every disagreement with the key lists they come from.
#[derive(Debug, Default)]
pub struct Builder {
    problems: Vec<String>,
    objects: Vec<ObjectRecord>,
}

impl Builder {
    /// An object whose keys are exactly `list`'s, each described in `described` (in the list's
    /// order); any other key is refused, as the compiler refuses it.
    pub fn object(
        &mut self,
        list: KeyList,
        required: &[&'static str],
        described: Vec<(&'static str, Json)>,
    ) -> Json {
        let mut properties = Map::new();
        for key in &list.keys {
            match described.iter().find(|(name, _)| name == key) {
                Some((_, schema)) => {
                    if schema.get("description").and_then(Json::as_str).is_none() {
                        self.problems
                            .push(format!("`{}` key '{key}' has no description", list.name));
                    }
                    properties.insert((*key).to_owned(), schema.clone());
                }
                None => self.problems.push(format!(
                    "`{}` has the key '{key}', which the schema does not describe",
                    list.name
                )),
            }
        }
        for (name, _) in &described {
            if !list.keys.contains(name) {
                self.problems.push(format!(
                    "the schema describes '{name}', which `{}` does not have",
                    list.name
                ));
            }
        }
        for name in required {
            if !list.keys.contains(name) {
                self.problems.push(format!(
                    "the schema requires '{name}', which `{}` does not have",
                    list.name
                ));
            }
        }
        self.objects.push(ObjectRecord {
            list: list.name,
            keys: list.keys,
            required: required.to_vec(),
        });
        let mut object = json!({ "type": "object", "properties": properties });
        if !required.is_empty() {
            object["required"] = json!(required);
        }
        object["additionalProperties"] = Json::Bool(false);
        object
    }

    /// The objects built so far, for tests that hold them to the compiler's sources.
    pub fn objects(&self) -> &[ObjectRecord] {
        &self.objects
    }

    /// The finished schema, or every disagreement found while building it.
    pub fn finish(self, schema: Json) -> Result<Json, SchemaDrift> {
        if self.problems.is_empty() {
            Ok(schema)
        } else {
            Err(SchemaDrift(self.problems))
        }
    }
}

/// `schema` with a description (and the schema's other keys kept).
pub fn describe(mut schema: Json, description: &str) -> Json {
    if let Json::Object(map) = &mut schema {
        map.insert("description".into(), Json::String(description.to_owned()));
    }
    schema
}

/// `schema` with examples, which editors offer when completing.
pub fn examples(mut schema: Json, examples: Json) -> Json {
    if let Json::Object(map) = &mut schema {
        map.insert("examples".into(), examples);
    }
    schema
}

/// Text: a string, or a number or boolean the compiler takes as its text. Strings may be
/// templates.
pub fn text() -> Json {
    json!({ "type": ["string", "number", "boolean"] })
}

/// Any value: a constant, a template (typed when it is exactly `{{ expr }}`), or
/// `{jsonpath: ...}`.
pub fn value() -> Json {
    json!({})
}

/// A mapping of names to values.
pub fn mapping(values: Json) -> Json {
    json!({ "type": "object", "additionalProperties": values })
}

pub fn boolean() -> Json {
    json!({ "type": "boolean" })
}

/// A whole number from `min` (and up to `max`, when given).
/// A rate: a count above 0 per second, minute or hour (`50/s`, `600/m`, `1000/h`).
pub fn rate() -> Json {
    json!({ "type": "string", "pattern": r"^\s*[0-9.]+\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$" })
}

pub fn integer(min: i64, max: Option<i64>) -> Json {
    let mut schema = json!({ "type": "integer", "minimum": min });
    if let Some(max) = max {
        schema["maximum"] = json!(max);
    }
    schema
}

pub fn duration() -> Json {
    json!({
        "anyOf": [
            { "type": "string", "pattern": DURATION_PATTERN },
            { "type": "number", "minimum": 0 }
        ]
    })
}

pub fn size() -> Json {
    json!({
        "anyOf": [
            { "type": "string", "pattern": SIZE_PATTERN },
            { "type": "integer", "minimum": 1 }
        ]
    })
}

/// A name: letters, digits, `-`, `_` and `.`.
pub fn name() -> Json {
    json!({ "type": "string", "pattern": NAME_PATTERN })
}

/// A string with template syntax (`{{ ... }}` or `{% ... %}`).
pub fn template() -> Json {
    json!({ "type": "string", "pattern": TEMPLATE_PATTERN })
}

/// One of `values`, exactly as written.
pub fn one_of(values: &[&str]) -> Json {
    json!({ "enum": values })
}

/// One of `values` in any case: completion offers them as written.
pub fn one_of_any_case(values: &[&str]) -> Json {
    let alternatives: Vec<String> = values
        .iter()
        .map(|value| {
            value
                .chars()
                .map(|c| match (c.to_ascii_uppercase(), c.to_ascii_lowercase()) {
                    (upper, lower) if upper != lower => format!("[{upper}{lower}]"),
                    _ => regex_escape(c),
                })
                .collect()
        })
        .collect();
    json!({
        "anyOf": [
            { "enum": values },
            { "type": "string", "pattern": format!("^({})$", alternatives.join("|")) }
        ]
    })
}

fn regex_escape(c: char) -> String {
    if c.is_ascii_alphanumeric() || c == '_' {
        c.to_string()
    } else {
        format!("\\{c}")
    }
}

/// `item`, or a list of them.
pub fn one_or_list(item: Json) -> Json {
    json!({ "anyOf": [item.clone(), { "type": "array", "items": item }] })
}

/// An HTTP status (`409`) or a class of them (`4xx`), as `expect` and `retry.on` take them.
pub fn status_pattern() -> Json {
    json!({
        "anyOf": [
            { "type": "integer", "minimum": 100, "maximum": 599 },
            { "type": "string", "pattern": r"^\s*([1-5][0-9][0-9]|[1-5][xX][xX])\s*$" }
        ]
    })
}

/// A reference to a definition of the same schema.
pub fn reference(name: &str) -> Json {
    json!({ "$ref": format!("#/$defs/{name}") })
}

/// `retry:`, of a workflow or a step ([`RETRY_KEYS`]).
pub fn retry(b: &mut Builder) -> Json {
    let described = vec![
        (
            "attempts",
            examples(
                describe(
                    integer(1, Some(100)),
                    "Tries in all, the first one included. Default `1` (no retry).",
                ),
                json!([3]),
            ),
        ),
        (
            "backoff",
            describe(
                one_of(&["exponential", "fixed"]),
                "`exponential`: a random wait up to `initial` x 2^(n-1), capped at `max`; `fixed`: `initial` every time. Default `exponential`.",
            ),
        ),
        (
            "initial",
            examples(
                describe(
                    duration(),
                    "The first delay (its ceiling, for `exponential`). Default `1s`.",
                ),
                json!(["2s"]),
            ),
        ),
        (
            "max",
            examples(
                describe(duration(), "The longest delay. Default `5m`."),
                json!(["5m"]),
            ),
        ),
        (
            "on",
            examples(
                describe(
                    one_or_list(status_pattern()),
                    "HTTP answers to retry besides the transient ones (connection errors, timeouts, 408, 429, 5xx): a status (`409`) or a class (`4xx`).",
                ),
                json!([[409]]),
            ),
        ),
    ];
    describe(
        b.object(key_list!(RETRY_KEYS), &[], described),
        "When and how often a failed step is tried again.",
    )
}

/// The field names serde reads for `T` (a struct deriving `Deserialize`): the keys a
/// `deny_unknown_fields` struct accepts, from the struct itself.
pub fn struct_keys<T: DeserializeOwned>() -> Vec<&'static str> {
    let mut fields = None;
    // The probe always ends in an error once it has seen the field list.
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields.unwrap_or_default().to_vec()
}

/// A deserializer that only notes the field list a struct asks for.
struct FieldProbe<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct ProbeDone;

impl std::fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field list noted")
    }
}

impl std::error::Error for ProbeDone {}

impl serde::de::Error for ProbeDone {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        ProbeDone
    }
}

impl<'de> serde::Deserializer<'de> for FieldProbe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeDone> {
        *self.0 = Some(fields);
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::units::{parse_duration, parse_size};

    #[test]
    fn an_undescribed_or_unknown_key_is_drift() {
        const KEYS: &[&str] = &["a", "b"];
        let mut b = Builder::default();
        let schema = b.object(
            key_list!(KEYS),
            &["c"],
            vec![("a", describe(text(), "A.")), ("z", describe(text(), "Z."))],
        );
        let drift = b.finish(schema).unwrap_err().0;
        assert_eq!(
            drift,
            [
                "`KEYS` has the key 'b', which the schema does not describe",
                "the schema describes 'z', which `KEYS` does not have",
                "the schema requires 'c', which `KEYS` does not have",
            ]
        );
    }

    #[test]
    fn the_patterns_accept_what_the_units_parse() {
        let duration = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in ["30s", "500ms", "1.5s", "2d", " 5 m ", "10", ".5h", "1."] {
            assert!(parse_duration(text).is_some(), "{text}");
            assert!(duration.is_match(text), "{text}");
        }
        for text in ["soon", "5w", "1e3s", "-1s", ""] {
            assert!(parse_duration(text).is_none(), "{text}");
            assert!(!duration.is_match(text), "{text}");
        }
        let size = regex::Regex::new(SIZE_PATTERN).unwrap();
        for text in ["1024", "512KiB", "1MiB", "10MB", "1gib", "5 k", "3b"] {
            assert!(parse_size(text).is_some(), "{text}");
            assert!(size.is_match(text), "{text}");
        }
        for text in ["lots", "1TB", "5kibs", ""] {
            assert!(parse_size(text).is_none(), "{text}");
            assert!(!size.is_match(text), "{text}");
        }
    }

    #[test]
    fn any_case_values_match_in_any_case_only() {
        let schema = one_of_any_case(&["GET", "POST"]);
        let pattern = regex::Regex::new(schema["anyOf"][1]["pattern"].as_str().unwrap()).unwrap();
        for ok in ["GET", "get", "PoSt"] {
            assert!(pattern.is_match(ok), "{ok}");
        }
        for bad in ["GETS", "PUT", ""] {
            assert!(!pattern.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn struct_keys_are_the_fields_serde_reads() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Example {
            first: u32,
            #[serde(rename = "second_name")]
            second: Option<String>,
        }
        assert_eq!(struct_keys::<Example>(), ["first", "second_name"]);
    }
}
