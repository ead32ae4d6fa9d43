//! Diagnostics for people: a located problem in a workflow file, rendered with the source line and a caret.

use std::fmt;
use std::sync::Arc;

/// A source file as loaded, shared by every span that points into it.
#[derive(Debug)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            path: path.into(),
            text: text.into(),
        })
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }
}

/// A position in a source file: 1-based line and column (in characters), and how many
/// characters the caret should underline.
#[derive(Debug, Clone)]
pub struct Span {
    pub file: Arc<SourceFile>,
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Span {
    pub fn new(file: &Arc<SourceFile>, line: usize, col: usize, len: usize) -> Self {
        Self {
            file: Arc::clone(file),
            line: line.max(1),
            col: col.max(1),
            len: len.max(1),
        }
    }

    /// A span for a whole file, used when there is no better position.
    pub fn file_start(file: &Arc<SourceFile>) -> Self {
        Self::new(file, 1, 1, 1)
    }

    /// The same line, shifted right by `chars` characters and `len` long.
    pub fn shifted(&self, chars: usize, len: usize) -> Self {
        Self {
            file: Arc::clone(&self.file),
            line: self.line,
            col: self.col + chars,
            len: len.max(1),
        }
    }

    /// A position `lines` lines further down, at `col`.
    pub fn moved_to(&self, line: usize, col: usize, len: usize) -> Self {
        Self::new(&self.file, line, col, len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem found while loading workflows.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// `file:line:col: error: message`, the source line, a caret under the text, and the hint.
    pub fn render(&self) -> String {
        let span = &self.span;
        let mut out = format!(
            "{}:{}:{}: {}: {}\n",
            span.file.path, span.line, span.col, self.severity, self.message
        );
        if let Some(source_line) = span.file.line(span.line) {
            let gutter = span.line.to_string();
            let pad = " ".repeat(gutter.len());
            let line_chars = source_line.chars().count();
            // Keep the caret on the line even when a span runs past its end.
            let start = span.col.min(line_chars + 1);
            let len = span.len.min((line_chars + 1).saturating_sub(start)).max(1);
            out.push_str(&format!("{pad} |\n{gutter} | {source_line}\n{pad} | "));
            out.push_str(&" ".repeat(start - 1));
            out.push_str(&"^".repeat(len));
            out.push('\n');
            if let Some(hint) = &self.hint {
                out.push_str(&format!("{pad} = hint: {hint}\n"));
            }
        } else if let Some(hint) = &self.hint {
            out.push_str(&format!("  = hint: {hint}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span = &self.span;
        write!(
            f,
            "{}:{}:{}: {}: {}",
            span.file.path, span.line, span.col, self.severity, self.message
        )
    }
}

/// Collects every problem of one load, so a user sees them all in one pass.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.push(Diagnostic::error(span, message));
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Sorted by file, then position, so output is stable whatever order checks ran in.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| {
            (&a.span.file.path, a.span.line, a.span.col).cmp(&(
                &b.span.file.path,
                b.span.line,
                b.span.col,
            ))
        });
        self.items
    }
}

/// "did you mean" for a misspelt name: the closest candidate within a small edit distance.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let distance = edit_distance(word, candidate);
        let limit = (candidate.chars().count().max(word.chars().count()) / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance: a swapped pair of letters (`emial`) counts as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A diagnostic as plain data, for the admin API and the UI: where, what, and the rendered text
/// (`file:line:col: error: message`, the source line and a caret) that `validate` prints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub severity: String,
    pub message: String,
    pub hint: Option<String>,
    pub text: String,
}

impl From<&Diagnostic> for Problem {
    fn from(d: &Diagnostic) -> Self {
        Self {
            file: d.span.file.path.clone(),
            line: d.span.line,
            col: d.span.col,
            severity: d.severity.to_string(),
            message: d.message.clone(),
            hint: d.hint.clone(),
            text: d.render(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_source_line_caret_and_hint() {
        let file = SourceFile::new("wf.yaml", "steps:\n  - emial: {}\n");
        let d = Diagnostic::error(Span::new(&file, 2, 5, 5), "unknown step kind 'emial'")
            .with_hint("did you mean 'email'?");
        assert_eq!(
            d.render(),
            "wf.yaml:2:5: error: unknown step kind 'emial'\n  |\n2 |   - emial: {}\n  |     ^^^^^\n  = hint: did you mean 'email'?\n"
        );
    }

    #[test]
    fn closest_finds_typos_but_not_unrelated_words() {
        let kinds = ["filter", "set", "template", "http", "email"];
        assert_eq!(closest("emial", kinds), Some("email"));
        assert_eq!(closest("htp", kinds), Some("http"));
        assert_eq!(closest("database", kinds), None);
        assert_eq!(
            closest("frist", ["fifth", "first", "fourth"]),
            Some("first")
        );
    }
}
