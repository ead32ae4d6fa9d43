//! `~` joins text as templates print it. The engine's `~` formats its operands in Python's words
//! (`None`, `True`, `[1, None]`); so, once at load, each operand of a `~` is rewritten as
//! `((operand) | string)`, and `string` prints a null as nothing and booleans, lists and maps
//! as JSON, as `{{ ... }}` does.

use std::borrow::Cow;

use super::Syntax;
use super::paths::concat_operands;

const OPEN: &str = "((";
const CLOSE: &str = ") | string)";

/// The source with every operand of `~` passed through `string`; unchanged without a `~`.
pub fn rewrite(source: &str, syntax: Syntax) -> Cow<'_, str> {
    if !source.contains('~') {
        return Cow::Borrowed(source);
    }
    let operands = concat_operands(source, syntax);
    if operands.is_empty() {
        return Cow::Borrowed(source);
    }
    // Insertions by place: at one offset closings come first (an operand ending there), then
    // openings (one starting there); an outer operand opens before and closes after an inner one.
    let mut inserts: Vec<(usize, u8, isize, &str)> = Vec::new();
    for range in &operands {
        let len = (range.end - range.start) as isize;
        inserts.push((range.start, 1, -len, OPEN));
        inserts.push((range.end, 0, len, CLOSE));
    }
    inserts.sort_unstable_by_key(|(at, order, size, _)| (*at, *order, *size));
    let mut out = String::with_capacity(source.len() + inserts.len() * CLOSE.len());
    let mut copied = 0;
    for (at, _, _, text) in inserts {
        out.push_str(&source[copied..at]);
        out.push_str(text);
        copied = at;
    }
    out.push_str(&source[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operand_is_passed_through_string() {
        assert_eq!(rewrite("{{ a }}", Syntax::Template), "{{ a }}");
        assert_eq!(
            rewrite("{{ 'x' ~ a }}", Syntax::Template),
            "{{ (('x') | string) ~ ((a) | string) }}"
        );
        assert_eq!(
            rewrite("a ~ b ~ c", Syntax::Expression),
            "((((a) | string) ~ ((b) | string)) | string) ~ ((c) | string)"
        );
        assert_eq!(
            rewrite("x + 1 ~ y | upper", Syntax::Expression),
            "x + ((1) | string) ~ ((y | upper) | string)"
        );
        // Operands are whole however the engine spans them: items, calls, parentheses.
        assert_eq!(
            rewrite("d['k'] ~ f(1, x=2) ~ [1, 2][0]", Syntax::Expression),
            "((((d['k']) | string) ~ ((f(1, x=2)) | string)) | string) ~ (([1, 2][0]) | string)"
        );
        assert_eq!(
            rewrite("(a ~ b) | upper ~ c", Syntax::Expression),
            "(((((a) | string) ~ ((b) | string)) | upper) | string) ~ ((c) | string)"
        );
        assert_eq!(
            rewrite("not a ~ b", Syntax::Expression),
            "not ((a) | string) ~ ((b) | string)"
        );
    }
}
