//! Test results for people and for CI: lines like `cargo test`'s (each case, then the failures
//! with expected against actual as a diff at the place of the expectation, then the totals),
//! and JUnit XML.

use std::fmt::Write as _;
use std::time::Duration;

use super::{CaseResult, FileResult, Verdict};
use crate::testkit::Failure;

/// The line printed as a case finishes: `test <name> ... ok (0.3 ms)`.
pub fn case_line(case: &CaseResult) -> String {
    let verdict = match case.verdict {
        Verdict::Passed => "ok",
        Verdict::Failed(_) => "FAILED",
        Verdict::Error(_) => "ERROR",
    };
    format!(
        "test {} ... {verdict} ({:.1} ms)",
        case.name,
        case.duration.as_secs_f64() * 1000.0
    )
}

/// The failures section and the totals line, after every file ran.
pub fn summary(files: &[FileResult], elapsed: Duration) -> String {
    let mut out = String::new();
    let failing: Vec<String> = files.iter().flat_map(failure_blocks).collect();
    if !failing.is_empty() {
        out.push_str("\nfailures:\n");
        for block in &failing {
            out.push('\n');
            out.push_str(block);
        }
    }
    let passed: usize = files.iter().map(FileResult::passed).sum();
    let failed: usize = files.iter().map(FileResult::failed).sum();
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    let _ = writeln!(
        out,
        "\ntest result: {verdict}. {passed} passed, {failed} failed; {} file(s), finished in {:.2} s",
        files.len(),
        elapsed.as_secs_f64()
    );
    out
}

fn failure_blocks(file: &FileResult) -> Vec<String> {
    let mut blocks = Vec::new();
    if !file.problems.is_empty() {
        blocks.push(format!(
            "---- {} ----\n{}",
            file.path,
            file.problems.concat()
        ));
    }
    for case in &file.cases {
        let body = match &case.verdict {
            Verdict::Passed => continue,
            Verdict::Error(error) => format!("error: {error}\n"),
            Verdict::Failed(failures) => failures.iter().map(failure_text).collect(),
        };
        blocks.push(format!("---- {}: {} ----\n{body}", file.path, case.name));
    }
    blocks
}

/// `file:line:col: what`, then the expected lines with `-` and the actual ones with `+`.
pub fn failure_text(failure: &Failure) -> String {
    let at = &failure.at;
    let mut out = format!(
        "{}:{}:{}: {}\n",
        at.file.path, at.line, at.col, failure.what
    );
    for line in failure.expected.lines() {
        let _ = writeln!(out, "  - {line}");
    }
    for line in failure.actual.lines() {
        let _ = writeln!(out, "  + {line}");
    }
    if failure.actual.is_empty() {
        out.push_str("  + (nothing)\n");
    }
    out
}

/// JUnit XML: one `testsuite` per file, one `testcase` per case.
pub fn junit(files: &[FileResult], elapsed: Duration) -> String {
    let tests: usize = files
        .iter()
        .map(|f| f.cases.len() + usize::from(!f.problems.is_empty()))
        .sum();
    let failed: usize = files.iter().map(FileResult::failed).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"hookflow\" tests=\"{tests}\" failures=\"{failed}\" time=\"{:.3}\">",
        elapsed.as_secs_f64()
    );
    for file in files {
        suite(&mut out, file);
    }
    out.push_str("</testsuites>\n");
    out
}

fn suite(out: &mut String, file: &FileResult) {
    let path = escape(&file.path);
    let time: f64 = file.cases.iter().map(|c| c.duration.as_secs_f64()).sum();
    let tests = file.cases.len() + usize::from(!file.problems.is_empty());
    let _ = writeln!(
        out,
        "  <testsuite name=\"{path}\" tests=\"{tests}\" failures=\"{}\" time=\"{time:.3}\">",
        file.failed()
    );
    if !file.problems.is_empty() {
        let text = escape(&file.problems.concat());
        let _ = writeln!(
            out,
            "    <testcase name=\"(test file)\" classname=\"{path}\" time=\"0\">\n      <failure message=\"the test file cannot run\">{text}</failure>\n    </testcase>"
        );
    }
    for case in &file.cases {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{path}\" time=\"{:.3}\"",
            escape(&case.name),
            case.duration.as_secs_f64()
        );
        let (message, text) = match &case.verdict {
            Verdict::Passed => {
                out.push_str("/>\n");
                continue;
            }
            Verdict::Error(error) => ("the case could not run".to_owned(), error.clone()),
            Verdict::Failed(failures) => (
                format!("{} expectation(s) not met", failures.len()),
                failures.iter().map(failure_text).collect(),
            ),
        };
        let _ = writeln!(
            out,
            ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
            escape(&message),
            escape(&text)
        );
    }
    out.push_str("  </testsuite>\n");
}

/// Text as XML character data or an attribute value; characters XML 1.0 cannot hold are
/// dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
