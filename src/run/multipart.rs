//! `multipart/form-data` bodies (RFC 7578): the parts between the boundaries. Text parts become
//! the fields of `event.body`; parts with a file name are `event.files`. Both are read from the
//! event's raw bytes, so a stored event gives the same files after a restart.

use base64::Engine as _;
use serde_json::{Map, Value as Json};

/// Most parts one body may have.
pub const MAX_PARTS: usize = 256;
/// Most bytes of one part's headers.
pub const MAX_PART_HEADERS: usize = 8192;

/// One part: its field name, its file name when it is a file, its type and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: &'a [u8],
}

/// Why a multipart body cannot be read. `Display` is short and safe to send back in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the Content-Type has no boundary parameter")]
    NoBoundary,
    #[error("the body does not start with its boundary")]
    NoFirstBoundary,
    #[error("the body ends before its closing boundary")]
    Unterminated,
    #[error("part {0} has malformed headers")]
    PartHeaders(usize),
    #[error("part {0} has no name (Content-Disposition: form-data; name=\"...\")")]
    NoName(usize),
    #[error("more than {MAX_PARTS} parts")]
    TooManyParts,
    #[error("part {0} has more than {MAX_PART_HEADERS} bytes of headers")]
    HeadersTooLarge(usize),
}

/// Whether a Content-Type is `multipart/form-data`.
pub fn is_multipart(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("multipart/form-data")
}

/// The `boundary` parameter of a Content-Type, unquoted.
pub fn boundary(content_type: &str) -> Option<String> {
    params(content_type)
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value)
        .filter(|b| !b.is_empty() && b.len() <= 70)
}

/// The parts of `raw`, in order.
pub fn parts<'a>(content_type: &str, raw: &'a [u8]) -> Result<Vec<Part<'a>>, MultipartError> {
    let boundary = boundary(content_type).ok_or(MultipartError::NoBoundary)?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // The preamble before the first boundary is ignored (RFC 2046).
    let first = if raw.starts_with(delimiter) {
        0
    } else {
        find(raw, &[b"\r\n", delimiter].concat(), 0).ok_or(MultipartError::NoFirstBoundary)? + 2
    };
    let mut at = first + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if raw[at..].starts_with(b"--") {
            return Ok(parts);
        }
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let number = parts.len() + 1;
        let headers_start = skip_line_end(raw, at).ok_or(MultipartError::Unterminated)?;
        let headers_end = find(raw, b"\r\n\r\n", headers_start)
            .map(|end| end + 2)
            .or_else(|| {
                raw[headers_start..]
                    .starts_with(b"\r\n")
                    .then_some(headers_start)
            })
            .ok_or(MultipartError::Unterminated)?;
        if headers_end - headers_start > MAX_PART_HEADERS {
            return Err(MultipartError::HeadersTooLarge(number));
        }
        let data_start = headers_end + 2;
        let data_end = find(raw, &[b"\r\n", delimiter].concat(), data_start)
            .ok_or(MultipartError::Unterminated)?;
        let headers = std::str::from_utf8(&raw[headers_start..headers_end])
            .map_err(|_| MultipartError::PartHeaders(number))?;
        parts.push(part(headers, &raw[data_start..data_end], number)?);
        at = data_end + 2 + delimiter.len();
    }
}

/// The text parts as `event.body`: each name to its text, or to a list when it repeats.
pub fn fields(parts: &[Part<'_>]) -> Map<String, Json> {
    let mut fields = Map::new();
    for part in parts.iter().filter(|p| p.filename.is_none()) {
        let value = Json::String(String::from_utf8_lossy(part.data).into_owned());
        match fields.get_mut(&part.name) {
            Some(Json::Array(values)) => values.push(value),
            Some(existing) => *existing = Json::Array(vec![existing.take(), value]),
            None => {
                fields.insert(part.name.clone(), value);
            }
        }
    }
    fields
}

/// The file parts as `event.files`: `name` (the field), `filename`, `content_type`, `size` and
/// the bytes as `base64`.
pub fn files(parts: &[Part<'_>]) -> Vec<Json> {
    parts
        .iter()
        .filter_map(|part| {
            let filename = part.filename.as_ref()?;
            Some(serde_json::json!({
                "name": part.name,
                "filename": filename,
                "content_type": part.content_type.as_deref().unwrap_or("application/octet-stream"),
                "size": part.data.len(),
                "base64": base64::engine::general_purpose::STANDARD.encode(part.data),
            }))
        })
        .collect()
}

/// One part from its header block and its bytes.
fn part<'a>(headers: &str, data: &'a [u8], number: usize) -> Result<Part<'a>, MultipartError> {
    let mut disposition = None;
    let mut content_type = None;
    for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(MultipartError::PartHeaders(number))?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-disposition" => disposition = Some(value.trim().to_owned()),
            "content-type" => content_type = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let params = params(&disposition.ok_or(MultipartError::NoName(number))?);
    let get = |key: &str| {
        params
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.clone())
    };
    let name = get("name").ok_or(MultipartError::NoName(number))?;
    // RFC 7578 says senders use `filename`; `filename*` (RFC 5987) wins when both are sent.
    let filename = get("filename*")
        .and_then(|v| extended_value(&v))
        .or_else(|| get("filename"));
    Ok(Part {
        name,
        filename,
        content_type,
        data,
    })
}

/// `value; a=1; b="two; three"` -> `[(a, 1), (b, two; three)]`: the parameters after the first
/// `;`, with quoted strings unquoted (`\"` inside them unescaped).
fn params(header: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = match header.split_once(';') {
        Some((_, rest)) => rest,
        None => return out,
    };
    while let Some((name, after)) = rest.split_once('=') {
        let name = name.trim().trim_start_matches(';').trim().to_owned();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => quoted_string(quoted),
            None => match after.split_once(';') {
                Some((value, next)) => (value.trim().to_owned(), next),
                None => (after.trim().to_owned(), ""),
            },
        };
        out.push((name, value));
        rest = next;
    }
    out
}

/// The text of a quoted string (after its opening quote) and what follows its closing quote.
fn quoted_string(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => {
                let rest = &text[i + 1..];
                return (value, rest.split_once(';').map_or("", |(_, next)| next));
            }
            c => value.push(c),
        }
    }
    (value, "")
}

/// `UTF-8''na%C3%AFve.txt` -> `naïve.txt` (RFC 5987); `None` for another charset.
fn extended_value(value: &str) -> Option<String> {
    let mut pieces = value.splitn(3, '\'');
    let charset = pieces.next()?;
    let _language = pieces.next()?;
    let encoded = pieces.next()?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let bytes: Vec<u8> =
        url::form_urlencoded::parse(format!("x={}", encoded.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(bytes).ok()
}

/// After a boundary: optional spaces, then CRLF; where the next line starts.
fn skip_line_end(raw: &[u8], mut at: usize) -> Option<usize> {
    while raw.get(at).is_some_and(|b| *b == b' ' || *b == b'\t') {
        at += 1;
    }
    raw[at..].starts_with(b"\r\n").then_some(at + 2)
}

/// The first place of `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=\"----X\"";

    fn body(parts: &[&str]) -> Vec<u8> {
        let mut out = b"preamble\r\n".to_vec();
        for part in parts {
            out.extend_from_slice(b"------X\r\n");
            out.extend_from_slice(part.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"------X--\r\n");
        out
    }

    #[test]
    fn fields_and_files_are_read_with_their_names_and_types() {
        let raw = body(&[
            "Content-Disposition: form-data; name=\"title\"\r\n\r\nRelease 1.2",
            "Content-Disposition: form-data; name=\"tag\"\r\n\r\nv1",
            "Content-Disposition: form-data; name=\"tag\"\r\n\r\nlatest",
            "Content-Disposition: form-data; name=\"asset\"; filename=\"notes; \\\"v1\\\".txt\"\r\nContent-Type: text/plain\r\n\r\nline 1\r\nline 2",
            "Content-Disposition: form-data; name=\"logo\"; filename=\"a.png\"; filename*=UTF-8''na%C3%AFve.png\r\n\r\n\u{0}\u{1}",
        ]);
        let parts = parts(TYPE, &raw).expect("parts");
        assert_eq!(parts.len(), 5);
        let fields = fields(&parts);
        assert_eq!(fields["title"], "Release 1.2");
        assert_eq!(fields["tag"], serde_json::json!(["v1", "latest"]));
        assert!(!fields.contains_key("asset"));
        let files = files(&parts);
        assert_eq!(files[0]["filename"], "notes; \"v1\".txt");
        assert_eq!(files[0]["content_type"], "text/plain");
        assert_eq!(files[0]["size"], 14);
        assert_eq!(files[0]["base64"], "bGluZSAxDQpsaW5lIDI=");
        assert_eq!(files[1]["filename"], "naïve.png");
        assert_eq!(files[1]["content_type"], "application/octet-stream");
    }

    #[test]
    fn broken_bodies_are_refused_with_a_reason() {
        assert_eq!(
            parts("multipart/form-data", b"x"),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            parts(TYPE, b"no boundary here"),
            Err(MultipartError::NoFirstBoundary)
        );
        let unterminated = b"------X\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue";
        assert_eq!(parts(TYPE, unterminated), Err(MultipartError::Unterminated));
        let nameless = body(&["Content-Type: text/plain\r\n\r\nx"]);
        assert_eq!(parts(TYPE, &nameless), Err(MultipartError::NoName(1)));
        let many: Vec<String> = (0..=MAX_PARTS)
            .map(|i| format!("Content-Disposition: form-data; name=\"f{i}\"\r\n\r\n{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(parts(TYPE, &body(&many)), Err(MultipartError::TooManyParts));
    }

    #[test]
    fn an_empty_form_has_no_parts() {
        assert_eq!(parts(TYPE, b"------X--\r\n").expect("parts"), Vec::new());
        assert!(is_multipart("Multipart/Form-Data; boundary=a"));
        assert!(!is_multipart("multipart/mixed; boundary=a"));
    }
}
