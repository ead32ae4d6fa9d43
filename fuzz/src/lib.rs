//! What the fuzz targets share: cutting one input into the parts a target needs.
//!
//! Inputs are text-like on purpose, so seeds built from real payloads and workflows read as
//! what they are, and the fuzzer's mutations stay close to what a sender or an author writes.

/// The first line (without its `\n`) and everything after it; no `\n` gives an empty rest.
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// The lines before the first empty line, and the bytes after that empty line.
pub fn split_head(data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut lines = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (line, after) = split_line(rest);
        rest = after;
        if line.is_empty() || line == b"\r" {
            break;
        }
        lines.push(line);
    }
    (lines, rest)
}

/// `name: value` (the value's leading spaces dropped); `None` without a `:`.
pub fn name_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = line.iter().position(|&b| b == b':')?;
    let value = &line[at + 1..];
    let skip = value.iter().take_while(|&&b| b == b' ').count();
    Some((&line[..at], &value[skip..]))
}

/// The bytes before the first NUL, and those after it (`None` without a NUL).
pub fn split_nul(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    }
}
