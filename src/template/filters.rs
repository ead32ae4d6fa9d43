//! Template filters and functions beyond minijinja's built-ins (json, yaml, base64, hashes, dates, JSONPath).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::format::StrftimeItems;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use minijinja::value::{Kwargs, Serde, Value, ValueKind};
use minijinja::value::{Rest, StringInput, ValueOrKwargs};
use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize as _;
use sha2::{Digest, Sha256};

use crate::jsonpath::JsonPath;

const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Wider indents are never useful and a huge one would let a template allocate without bound.
const MAX_JSON_INDENT: usize = 32;

/// Paths in templates are almost always literals, so a small cache catches nearly every call.
const JSONPATH_CACHE_CAPACITY: usize = 256;

/// Error values echo at most this much of the offending input, so a stray map cannot flood logs.
const MAX_ECHO_CHARS: usize = 80;

// Senders disagree on padding and alphabet (JWT-style payloads are URL-safe without padding),
// so decoding accepts either alphabet with or without `=`.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

static JSONPATH_CACHE: LazyLock<PathCache> =
    LazyLock::new(|| PathCache::new(JSONPATH_CACHE_CAPACITY));

/// Adds this project's filters and functions to `env`.
pub fn register(env: &mut Environment<'static>) {
    env.add_filter("json", json);
    env.add_filter("fromjson", fromjson);
    env.add_filter("yaml", yaml);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("hmac_sha256", hmac_sha256);
    env.add_filter("sha256", sha256);
    env.add_filter("date", date);
    env.add_filter("jsonpath", jsonpath);
    env.add_function("jsonpath", jsonpath);
    env.add_function("now", now);
    // minijinja's own serializers, with the size check every conversion of a whole value gets.
    env.add_filter("tojson", tojson);
    env.add_filter("string", string);
    env.add_filter("pprint", pprint);
    // Text of a value as printing gives it, never Python's `True` or `None`.
    env.add_filter("join", join);
    env.add_filter("upper", upper);
    env.add_filter("lower", lower);
    env.add_filter("capitalize", capitalize);
    env.add_filter("title", title);
    env.add_filter("trim", trim);
    env.add_filter("replace", replace);
    env.add_filter("format", format);
}

/// A null, a boolean, a list or a map as the text printing gives it; other values as they are.
/// minijinja's text filters would read them in Python's words (`NONE`, `True`).
fn printable(value: &Value) -> Value {
    super::json_text(value).map_or_else(|| value.clone(), Value::from)
}

/// `upper`, `lower`, `capitalize`, `title`, `trim`: minijinja's, on the printed text.
fn upper(state: &minijinja::State, value: &Value) -> Result<Value, Error> {
    let value = printable(value);
    Ok(minijinja::filters::upper(StringInput::new(state, &value)?))
}

fn lower(state: &minijinja::State, value: &Value) -> Result<Value, Error> {
    let value = printable(value);
    Ok(minijinja::filters::lower(StringInput::new(state, &value)?))
}

fn capitalize(state: &minijinja::State, value: &Value) -> Result<Value, Error> {
    let value = printable(value);
    Ok(minijinja::filters::capitalize(StringInput::new(
        state, &value,
    )?))
}

/// `replace(old, new, count)`: on the printed text; `count` (also a keyword) replaces only the
/// first `count` occurrences.
fn replace(
    value: &Value,
    from: &Value,
    to: &Value,
    count: Option<i64>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let count = match count {
        Some(count) => Some(count),
        None => kwargs.get::<Option<i64>>("count")?,
    };
    kwargs.assert_all_used()?;
    let text = |v: &Value| printable(v).to_string();
    let (text, from, to) = (text(value), text(from), text(to));
    Ok(Value::from(
        match count.and_then(|c| usize::try_from(c).ok()) {
            Some(count) => text.replacen(&from, &to, count),
            None => text.replace(&from, &to),
        },
    ))
}

/// `format(args...)`: minijinja's printf-style formatting, each argument as printing writes it.
fn format(
    state: &mut minijinja::State,
    format_str: &Value,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    let args = args
        .0
        .into_iter()
        .map(|arg| {
            let value = arg.into_value();
            let value = if value.is_kwargs() {
                value
            } else {
                printable(&value)
            };
            ValueOrKwargs::from(value)
        })
        .collect();
    minijinja::filters::format(state, format_str, Rest(args))
}

fn title(value: &Value) -> String {
    let value = printable(value);
    minijinja::filters::title(std::borrow::Cow::Owned(value.to_string()))
}

fn trim(
    state: &minijinja::State,
    value: &Value,
    chars: Option<std::borrow::Cow<'_, str>>,
) -> Result<Value, Error> {
    let value = printable(value);
    Ok(minijinja::filters::trim(
        StringInput::new(state, &value)?,
        chars,
    ))
}

/// `tojson`, `string`, `pprint`: minijinja's filters, once the value is known to fit.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    super::size::check(value)?;
    minijinja::filters::tojson(value, indent, kwargs)
}

/// `string`: the text printing the value gives (`true`, `["a",1]`, a null as nothing), where
/// minijinja's would write Python's `True`, `['a', 1]` and `None`.
fn string(state: &minijinja::State, value: &Value) -> Result<Value, Error> {
    super::size::check(value)?;
    match super::json_text(value) {
        Some(text) => Ok(Value::from(text)),
        None => minijinja::filters::string(state, value),
    }
}

/// `join(joiner, attribute)`: minijinja's, each item written as printing writes it; an
/// undefined item is an error, as printing it is.
fn join(
    state: &mut minijinja::State,
    value: &Value,
    joiner: Option<Value>,
    attribute: Option<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let joiner = match joiner {
        Some(joiner) => Some(joiner),
        None => kwargs.get::<Option<Value>>("d")?,
    };
    let attribute = match attribute {
        Some(attribute) => Some(attribute),
        None => kwargs.get::<Option<String>>("attribute")?,
    };
    kwargs.assert_all_used()?;
    let no_kwargs = Kwargs::from_iter(std::iter::empty::<(&str, Value)>());
    let joiner = joiner
        .as_ref()
        .map(|j| minijinja::value::StringInput::new(state, j))
        .transpose()?;
    let iterable = matches!(
        value.kind(),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map | ValueKind::String
    );
    if !iterable {
        // minijinja's error for what cannot be joined.
        return minijinja::filters::join(state, value, joiner, None, no_kwargs);
    }
    super::size::check(value)?;
    let mut items = Vec::new();
    for item in value.try_iter()? {
        let item = match &attribute {
            Some(path) => item_at(&item, path),
            None => item,
        };
        if item.is_undefined() {
            return Err(Error::from(ErrorKind::UndefinedError));
        }
        items.push(super::json_text(&item).map_or(item, Value::from));
    }
    minijinja::filters::join(state, &Value::from(items), joiner, None, no_kwargs)
}

/// `attribute='a.b.0'` as minijinja's filters read it: keys, and indexes where a part is a number.
fn item_at(item: &Value, path: &str) -> Value {
    let mut value = item.clone();
    for part in path.split('.') {
        let next = match part.parse::<usize>() {
            Ok(index) => value.get_item_by_index(index),
            Err(_) => value.get_attr(part),
        };
        value = next.unwrap_or(Value::UNDEFINED);
    }
    value
}

fn pprint(value: &Value) -> Result<String, Error> {
    super::size::check(value)?;
    Ok(minijinja::filters::pprint(value))
}

fn invalid(detail: impl Into<Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::InvalidOperation, detail)
}

/// `fromjson(text)`: parse JSON text into a value (GitHub's form-encoded `payload=` field,
/// JSON carried inside a string field).
fn fromjson(value: &Value) -> Result<Value, Error> {
    defined(value)?;
    let Some(text) = value.as_str() else {
        return Err(invalid(format!(
            "fromjson: expected a string, got {}",
            kind(value)
        )));
    };
    serde_json::from_str::<serde_json::Value>(text)
        .map(|parsed| Value::from(Serde(parsed)))
        .map_err(|e| invalid(format!("fromjson: invalid JSON: {e}")))
}

/// `json(value, indent=none)`: compact JSON, or pretty-printed with `indent` spaces.
fn json(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<String, Error> {
    super::size::check(value)?;
    let kw_indent: Option<Value> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let indent = match (indent, kw_indent) {
        (Some(_), Some(_)) => return Err(invalid("json: indent given twice")),
        (Some(v), None) | (None, Some(v)) => v,
        (None, None) => Value::from(()),
    };
    let indent = if indent.is_none() {
        None
    } else {
        let width = indent
            .is_integer()
            .then(|| indent.as_usize())
            .flatten()
            .filter(|n| *n <= MAX_JSON_INDENT);
        match width {
            Some(n) => Some(n),
            None => {
                return Err(invalid(format!(
                    "json: indent must be an integer from 0 to {MAX_JSON_INDENT}, got {}",
                    echo(&indent)
                )));
            }
        }
    };
    let cannot =
        |err: serde_json::Error| invalid(format!("json: cannot serialize {}: {err}", kind(value)));
    match indent {
        None => serde_json::to_string(value).map_err(cannot),
        Some(n) => {
            let spaces = " ".repeat(n);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            let mut out = Vec::new();
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            value.serialize(&mut serializer).map_err(cannot)?;
            // serde_json only ever writes UTF-8; the check costs nothing next to serializing.
            String::from_utf8(out).map_err(|_| invalid("json: serializer produced invalid UTF-8"))
        }
    }
}

/// `yaml(value)`: the value as a YAML document.
fn yaml(value: &Value) -> Result<String, Error> {
    super::size::check(value)?;
    serde_saphyr::to_string(value)
        .map_err(|err| invalid(format!("yaml: cannot serialize {}: {err}", kind(value))))
}

/// `b64encode(value)`: standard base64 with padding.
fn b64encode(value: &Value) -> Result<String, Error> {
    Ok(STANDARD.encode(text_bytes("b64encode", "value", value)?))
}

/// `b64decode(value)`: standard or URL-safe base64, padding optional, decoding to UTF-8 text.
fn b64decode(value: &Value) -> Result<String, Error> {
    // Line-wrapped (MIME-style) base64 is common in payloads; whitespace is never data.
    let compact: Vec<u8> = text_bytes("b64decode", "value", value)?
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let decoded = match STANDARD_LENIENT.decode(&compact) {
        Ok(bytes) => bytes,
        Err(standard_err) => match URL_SAFE_LENIENT.decode(&compact) {
            Ok(bytes) => bytes,
            Err(url_err) => {
                // Report against the alphabet the input evidently uses, so the offset makes sense.
                let looks_url_safe = compact.iter().any(|b| matches!(b, b'-' | b'_'));
                let err = if looks_url_safe {
                    url_err
                } else {
                    standard_err
                };
                return Err(invalid(format!(
                    "b64decode: input is not valid base64: {err}"
                )));
            }
        },
    };
    String::from_utf8(decoded).map_err(|err| {
        invalid(format!(
            "b64decode: decoded data is not valid UTF-8 text (bad byte at offset {})",
            err.utf8_error().valid_up_to()
        ))
    })
}

/// `hmac_sha256(value, key)`: lowercase hex HMAC-SHA256, as webhook signature headers carry it.
fn hmac_sha256(value: &Value, key: &Value) -> Result<String, Error> {
    let data = text_bytes("hmac_sha256", "value", value)?;
    let key = text_bytes("hmac_sha256", "key", key)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|err| invalid(format!("hmac_sha256: unusable key: {err}")))?;
    mac.update(data);
    Ok(to_hex(&mac.finalize().into_bytes()))
}

/// `sha256(value)`: lowercase hex SHA-256.
fn sha256(value: &Value) -> Result<String, Error> {
    Ok(to_hex(&Sha256::digest(text_bytes(
        "sha256", "value", value,
    )?)))
}

/// `date(value, format="%Y-%m-%dT%H:%M:%SZ")`: reformat a timestamp in UTC with strftime.
fn date(value: &Value, format: Option<&str>, kwargs: Kwargs) -> Result<String, Error> {
    let kw_format: Option<&str> = kwargs.get("format")?;
    kwargs.assert_all_used()?;
    let format = match (format, kw_format) {
        (Some(_), Some(_)) => return Err(invalid("date: format given twice")),
        (Some(f), None) | (None, Some(f)) => f,
        (None, None) => DEFAULT_DATE_FORMAT,
    };
    // chrono only notices a bad specifier while displaying, and `to_string` turns that into a
    // panic; parsing first turns it into a template error instead.
    let items = StrftimeItems::new(format).parse().map_err(|_| {
        invalid(format!(
            "date: invalid format string {format:?} (unknown or incomplete % specifier)"
        ))
    })?;
    let when = to_datetime(value)?;
    let mut out = String::new();
    write!(out, "{}", when.format_with_items(items.iter()))
        .map_err(|_| invalid(format!("date: cannot format {when} with {format:?}")))?;
    Ok(out)
}

fn to_datetime(value: &Value) -> Result<DateTime<Utc>, Error> {
    defined(value)?;
    let parsed = match value.kind() {
        ValueKind::Number if value.is_integer() => value.as_i64().and_then(from_unix_seconds),
        ValueKind::Number => f64::try_from(value.clone()).ok().and_then(from_unix_float),
        ValueKind::String => value.as_str().and_then(parse_date_text),
        _ => None,
    };
    parsed.ok_or_else(|| {
        invalid(format!(
            "date: cannot read {} as a date (expected an RFC 3339 timestamp, a YYYY-MM-DD date \
             or unix seconds)",
            echo(value)
        ))
    })
}

fn parse_date_text(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(when) = DateTime::parse_from_rfc3339(text) {
        return Some(when.to_utc());
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return day.and_hms_opt(0, 0, 0).map(|midnight| midnight.and_utc());
    }
    // Timestamp headers (Slack's X-Slack-Request-Timestamp, for one) arrive as strings.
    if let Ok(secs) = text.parse::<i64>() {
        return from_unix_seconds(secs);
    }
    text.parse::<f64>().ok().and_then(from_unix_float)
}

fn from_unix_seconds(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

fn from_unix_float(secs: f64) -> Option<DateTime<Utc>> {
    // `as` saturates, and a saturated value is out of chrono's range, so it is rejected below;
    // NaN would silently become 0 though, hence the explicit check.
    if !secs.is_finite() {
        return None;
    }
    DateTime::from_timestamp_micros((secs * 1e6).round() as i64)
}

/// `jsonpath(value, path)`: nothing -> none, one node -> that node, several -> a list.
fn jsonpath(value: &Value, path: &str) -> Result<Value, Error> {
    let compiled = JSONPATH_CACHE.get_or_compile(path)?;
    super::size::check(value)?;
    let document = serde_json::to_value(value).map_err(|err| {
        invalid(format!(
            "jsonpath: cannot convert {} to JSON: {err}",
            kind(value)
        ))
    })?;
    Ok(Value::from(Serde(compiled.select(&document))))
}

/// `now()`: the current UTC time as RFC 3339 at second precision, ready for `| date(...)`.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Compiled JSONPath queries keyed by their text; emptied wholesale when full, which is
/// cheaper and simpler than LRU bookkeeping for a set that is normally tiny.
struct PathCache {
    capacity: usize,
    paths: Mutex<HashMap<String, Arc<JsonPath>>>,
}

impl PathCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            paths: Mutex::new(HashMap::new()),
        }
    }

    fn get_or_compile(&self, path: &str) -> Result<Arc<JsonPath>, Error> {
        if let Some(hit) = self.lock().get(path) {
            return Ok(Arc::clone(hit));
        }
        // Compile without holding the lock; a racing duplicate compile is harmless.
        let compiled =
            Arc::new(JsonPath::compile(path).map_err(|err| invalid(format!("jsonpath: {err}")))?);
        let mut paths = self.lock();
        if paths.len() >= self.capacity {
            paths.clear();
        }
        paths.insert(path.to_owned(), Arc::clone(&compiled));
        Ok(compiled)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<JsonPath>>> {
        // A panic elsewhere cannot leave a map of immutable compiled paths half-updated.
        self.paths.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The bytes behind a string or bytes value; anything else is refused rather than guessed at.
fn text_bytes<'v>(filter: &str, what: &str, value: &'v Value) -> Result<&'v [u8], Error> {
    defined(value)?;
    value.as_bytes().ok_or_else(|| {
        invalid(format!(
            "{filter}: {what} must be a string or bytes, got {}",
            kind(value)
        ))
    })
}

/// An undefined input is the undefined-value error printing it would be, which names what is
/// missing, rather than a complaint about its type.
fn defined(value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    Ok(())
}

/// A value's type in an error message, in JSON's words (`null`, not `none`).
fn kind(value: &Value) -> String {
    match value.kind() {
        ValueKind::None => "null".to_owned(),
        ValueKind::Bool => "boolean".to_owned(),
        ValueKind::Seq => "list".to_owned(),
        ValueKind::Map => "mapping".to_owned(),
        other => other.to_string(),
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// A value in an error message, as JSON writes it (`null`, `true`, `"text"`), shortened.
fn echo(value: &Value) -> String {
    if super::size::check(value).is_err() {
        return format!("a {} too large to show", kind(value));
    }
    let shown = serde_json::to_string(value).unwrap_or_else(|_| value.to_string());
    match shown.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}...", &shown[..cut]),
        None => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use minijinja::{AutoEscape, UndefinedBehavior, context};
    use serde_json::json;

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(50_000));
        register(&mut env);
        env
    }

    fn render(source: &str, ctx: Value) -> String {
        match env().render_str(source, ctx) {
            Ok(out) => out,
            Err(err) => panic!("rendering {source:?} failed: {err:#}"),
        }
    }

    /// The error's kind must be `InvalidOperation`; returns its detail text.
    fn render_err(source: &str, ctx: Value) -> String {
        let err = env()
            .render_str(source, ctx)
            .expect_err("rendering should have failed");
        assert_eq!(err.kind(), ErrorKind::InvalidOperation, "{err:#}");
        err.detail().unwrap_or_default().to_owned()
    }

    fn eval(expr: &str, ctx: Value) -> Value {
        let env = env();
        let compiled = env.compile_expression(expr).expect("expression compiles");
        compiled.eval(ctx).expect("expression evaluates")
    }

    fn doc() -> Value {
        Value::from(Serde(json!({
            "zeta": {"y": [1, 2], "x": null},
            "alpha": "a\"b",
            "commits": [{"id": "c1"}, {"id": "c2"}],
        })))
    }

    /// minijinja keeps map insertion order only with its `preserve_order` feature; without it
    /// maps iterate in key order. `json` must print whichever order the value has.
    fn maps_keep_insertion_order() -> bool {
        let probe = Value::from(Serde(json!({"b": 1, "a": 2})));
        let first = probe.try_iter().ok().and_then(|mut keys| keys.next());
        first.as_ref().and_then(Value::as_str) == Some("b")
    }

    #[test]
    fn json_is_compact_by_default() {
        let expected = if maps_keep_insertion_order() {
            r#"{"zeta":{"y":[1,2],"x":null},"alpha":"a\"b","commits":[{"id":"c1"},{"id":"c2"}]}"#
        } else {
            r#"{"alpha":"a\"b","commits":[{"id":"c1"},{"id":"c2"}],"zeta":{"x":null,"y":[1,2]}}"#
        };
        assert_eq!(render("{{ d | json }}", context! { d => doc() }), expected);
        assert_eq!(
            render("{{ d | json(none) }}", context! { d => doc() }),
            expected
        );
        assert_eq!(
            render("{{ {'a': 1, 'b': [1, 2]} | json }}", context! {}),
            r#"{"a":1,"b":[1,2]}"#
        );
        assert_eq!(
            render("{{ 'x' | json }}|{{ 1.5 | json }}", context! {}),
            r#""x"|1.5"#
        );
    }

    #[test]
    fn json_pretty_prints_with_the_given_indent() {
        let expected = if maps_keep_insertion_order() {
            "{\n  \"zeta\": {\n    \"y\": [\n      1,\n      2\n    ],\n    \"x\": null\n  },\n  \
             \"alpha\": \"a\\\"b\",\n  \"commits\": [\n    {\n      \"id\": \"c1\"\n    },\n    \
             {\n      \"id\": \"c2\"\n    }\n  ]\n}"
        } else {
            "{\n  \"alpha\": \"a\\\"b\",\n  \"commits\": [\n    {\n      \"id\": \"c1\"\n    },\n    \
             {\n      \"id\": \"c2\"\n    }\n  ],\n  \"zeta\": {\n    \"x\": null,\n    \"y\": [\n      \
             1,\n      2\n    ]\n  }\n}"
        };
        assert_eq!(
            render("{{ d | json(2) }}", context! { d => doc() }),
            expected
        );
        assert_eq!(
            render("{{ d | json(indent=2) }}", context! { d => doc() }),
            expected
        );
        assert_eq!(
            render("{{ {'k': [1]} | json(4) }}", context! {}),
            "{\n    \"k\": [\n        1\n    ]\n}"
        );
    }

    #[test]
    fn json_rejects_bad_indents() {
        assert_eq!(
            render_err("{{ 1 | json('x') }}", context! {}),
            "json: indent must be an integer from 0 to 32, got \"x\""
        );
        assert_eq!(
            render_err("{{ 1 | json(1000) }}", context! {}),
            "json: indent must be an integer from 0 to 32, got 1000"
        );
        assert_eq!(
            render_err("{{ 1 | json(2, indent=2) }}", context! {}),
            "json: indent given twice"
        );
    }

    #[test]
    fn yaml_renders_a_document() {
        let out = render(
            "{{ d | yaml }}",
            context! { d => Value::from(Serde(json!({"list": [1, 2], "name": "x"}))) },
        );
        assert_eq!(out, "list:\n- 1\n- 2\nname: x\n");
    }

    #[test]
    fn base64_round_trips_text() {
        assert_eq!(
            render("{{ 'hello world' | b64encode }}", context! {}),
            "aGVsbG8gd29ybGQ="
        );
        assert_eq!(render("{{ 'ü' | b64encode }}", context! {}), "w7w=");
        assert_eq!(
            render(
                "{{ b | b64encode }}",
                context! { b => Value::from_bytes(vec![0xff, 0xfe]) }
            ),
            "//4="
        );
        assert_eq!(
            render("{{ 'aGVsbG8gd29ybGQ=' | b64decode }}", context! {}),
            "hello world"
        );
        assert_eq!(render("{{ 'w7w=' | b64decode }}", context! {}), "ü");
    }

    #[test]
    fn base64_decoding_accepts_url_safe_and_missing_padding() {
        assert_eq!(
            render("{{ '<<???>>' | b64encode }}", context! {}),
            "PDw/Pz8+Pg=="
        );
        assert_eq!(
            render("{{ 'PDw_Pz8-Pg' | b64decode }}", context! {}),
            "<<???>>"
        );
        assert_eq!(
            render("{{ 'PDw_Pz8-Pg==' | b64decode }}", context! {}),
            "<<???>>"
        );
        assert_eq!(
            render("{{ 'PDw/Pz8+Pg' | b64decode }}", context! {}),
            "<<???>>"
        );
        assert_eq!(
            render("{{ 'aGVsbG8g\nd29ybGQ=' | b64decode }}", context! {}),
            "hello world"
        );
    }

    #[test]
    fn base64_errors_are_template_errors() {
        assert_eq!(
            render_err("{{ 'not base64!' | b64decode }}", context! {}),
            "b64decode: input is not valid base64: Invalid symbol 33, offset 9."
        );
        assert_eq!(
            render_err("{{ '//4=' | b64decode }}", context! {}),
            "b64decode: decoded data is not valid UTF-8 text (bad byte at offset 0)"
        );
        assert_eq!(
            render_err("{{ 12 | b64encode }}", context! {}),
            "b64encode: value must be a string or bytes, got number"
        );
    }

    #[test]
    fn hmac_sha256_matches_published_vectors() {
        // RFC 4231 test case 2.
        assert_eq!(
            render(
                "{{ 'what do ya want for nothing?' | hmac_sha256('Jefe') }}",
                context! {}
            ),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // GitHub's "Validating webhook deliveries" example.
        assert_eq!(
            render(
                "{{ event.raw | hmac_sha256(secrets.KEY) }}",
                context! {
                    event => context! { raw => "Hello, World!" },
                    secrets => context! { KEY => "It's a Secret to Everybody" },
                }
            ),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            render_err("{{ 'x' | hmac_sha256(none) }}", context! {}),
            "hmac_sha256: key must be a string or bytes, got null"
        );
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            render("{{ 'abc' | sha256 }}", context! {}),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            render("{{ '' | sha256 }}", context! {}),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn date_reads_unix_seconds() {
        assert_eq!(
            render("{{ 0 | date }}", context! {}),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            render("{{ 1700000000 | date }}", context! {}),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            render("{{ 1700000000.25 | date('%H:%M:%S%.3f') }}", context! {}),
            "22:13:20.250"
        );
        assert_eq!(
            render("{{ '1700000000' | date('%Y-%m-%d') }}", context! {}),
            "2023-11-14"
        );
        assert_eq!(
            render("{{ -86400 | date('%Y-%m-%d') }}", context! {}),
            "1969-12-31"
        );
    }

    #[test]
    fn date_converts_rfc3339_offsets_to_utc() {
        assert_eq!(
            render("{{ '2024-03-10T01:30:00+02:00' | date }}", context! {}),
            "2024-03-09T23:30:00Z"
        );
        assert_eq!(
            render(
                "{{ '2024-03-10T12:30:00.5-05:30' | date('%d %b %Y %H:%M') }}",
                context! {}
            ),
            "10 Mar 2024 18:00"
        );
    }

    #[test]
    fn date_reads_plain_dates_as_utc_midnight() {
        assert_eq!(
            render("{{ '2024-02-29' | date }}", context! {}),
            "2024-02-29T00:00:00Z"
        );
        assert_eq!(
            render(
                "{{ '2024-02-29' | date(format='%d/%m/%Y %A') }}",
                context! {}
            ),
            "29/02/2024 Thursday"
        );
    }

    #[test]
    fn date_rejects_bad_formats_without_panicking() {
        assert_eq!(
            render_err("{{ 0 | date('%Q') }}", context! {}),
            r#"date: invalid format string "%Q" (unknown or incomplete % specifier)"#
        );
        assert_eq!(
            render_err("{{ 0 | date('%Y-%') }}", context! {}),
            r#"date: invalid format string "%Y-%" (unknown or incomplete % specifier)"#
        );
        assert_eq!(
            render_err("{{ 0 | date('%Y', format='%Y') }}", context! {}),
            "date: format given twice"
        );
    }

    #[test]
    fn date_rejects_unparseable_input() {
        let expected_tail =
            " as a date (expected an RFC 3339 timestamp, a YYYY-MM-DD date or unix seconds)";
        assert_eq!(
            render_err("{{ 'yesterday' | date }}", context! {}),
            format!("date: cannot read \"yesterday\"{expected_tail}")
        );
        assert_eq!(
            render_err("{{ '2024-02-30' | date }}", context! {}),
            format!("date: cannot read \"2024-02-30\"{expected_tail}")
        );
        assert_eq!(
            render_err("{{ none | date }}", context! {}),
            format!("date: cannot read null{expected_tail}")
        );
        assert_eq!(
            render_err("{{ 1e300 | date }}", context! {}),
            format!("date: cannot read 1e+300{expected_tail}")
        );
    }

    #[test]
    fn now_is_rfc3339_seconds_in_utc() {
        let before = Utc::now().year();
        let stamp = render("{{ now() }}", context! {});
        let after = Utc::now().year();
        assert_eq!(stamp.len(), "2026-11-30T03:10:00Z".len(), "{stamp}");
        assert!(stamp.ends_with('Z'), "{stamp}");
        assert!(DateTime::parse_from_rfc3339(&stamp).is_ok(), "{stamp}");

        let year: i32 = render("{{ now() | date('%Y') }}", context! {})
            .parse()
            .expect("a year");
        assert!(year == before || year == after, "{year}");
    }

    #[test]
    fn jsonpath_one_match_is_the_value() {
        assert_eq!(
            render("{{ d | jsonpath('$.alpha') }}", context! { d => doc() }),
            "a\"b"
        );
        assert_eq!(
            eval("d | jsonpath('$.zeta.y')", context! { d => doc() }),
            Value::from(vec![1, 2])
        );
    }

    #[test]
    fn jsonpath_several_matches_are_a_list() {
        assert_eq!(
            eval("d | jsonpath('$.commits[*].id')", context! { d => doc() }),
            Value::from(vec!["c1", "c2"])
        );
        assert_eq!(
            render(
                "{{ d | jsonpath('$.commits[*].id') | join(',') }}",
                context! { d => doc() }
            ),
            "c1,c2"
        );
    }

    #[test]
    fn jsonpath_wildcards_give_a_list_even_for_one_match() {
        let one = context! { d => Value::from(Serde(json!({"items": [{"id": 1}]}))) };
        assert_eq!(
            eval("d | jsonpath('$.items[*].id')", one),
            Value::from(vec![1])
        );
    }

    #[test]
    fn fromjson_parses_text_and_refuses_garbage() {
        let ctx = context! { p => r#"{"ref": "refs/heads/main", "n": [1, 2]}"# };
        assert_eq!(
            render("{{ (p | fromjson).ref }}", ctx.clone()),
            "refs/heads/main"
        );
        assert_eq!(eval("(p | fromjson).n", ctx), Value::from(vec![1, 2]));
        let err = render_err("{{ '{nope' | fromjson }}", context! {});
        assert!(err.contains("fromjson: invalid JSON"), "{err}");
    }

    #[test]
    fn jsonpath_no_match_is_none() {
        assert!(eval("d | jsonpath('$.missing')", context! { d => doc() }).is_none());
        assert_eq!(
            render(
                "{{ d | jsonpath('$.missing') is none }}",
                context! { d => doc() }
            ),
            "True"
        );
    }

    #[test]
    fn jsonpath_works_as_a_function() {
        assert_eq!(
            eval(
                "jsonpath(x, '$.a')",
                context! { x => Value::from(Serde(json!({"a": 7}))) }
            ),
            Value::from(7)
        );
        assert_eq!(
            render(
                "{{ jsonpath(d, '$.commits[1].id') }}",
                context! { d => doc() }
            ),
            "c2"
        );
    }

    #[test]
    fn jsonpath_reports_bad_paths() {
        let detail = render_err(
            "{{ d | jsonpath('$.a[?@.b ==]') }}",
            context! { d => doc() },
        );
        assert!(
            detail.starts_with("jsonpath: invalid JSONPath `$.a[?@.b ==]`: "),
            "{detail}"
        );
        let detail = render_err("{{ jsonpath(d, 'a.b') }}", context! { d => doc() });
        assert!(detail.contains("starts with `$`"), "{detail}");
    }

    #[test]
    fn path_cache_reuses_and_empties_when_full() {
        let cache = PathCache::new(2);
        let first = cache.get_or_compile("$.a").expect("valid path");
        let again = cache.get_or_compile("$.a").expect("valid path");
        assert!(Arc::ptr_eq(&first, &again));
        assert!(cache.get_or_compile("$[").is_err());
        assert_eq!(cache.lock().len(), 1, "failed compiles are not cached");

        cache.get_or_compile("$.b").expect("valid path");
        assert_eq!(cache.lock().len(), 2);
        cache.get_or_compile("$.c").expect("valid path");
        assert_eq!(
            cache.lock().len(),
            1,
            "a full cache is emptied before inserting"
        );
        let recompiled = cache.get_or_compile("$.a").expect("valid path");
        assert!(!Arc::ptr_eq(&first, &recompiled));
        assert_eq!(recompiled.as_str(), "$.a");
    }
}
