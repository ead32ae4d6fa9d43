//! Guards the layering of ARCHITECTURE.md ("Invariants the tidy test enforces"): which top-level
//! modules and outside crates each file under `src/` may name, and no import cycle between
//! top-level modules.
//!
//! Like rust-analyzer's `tidy`, it reads the sources instead of configuring a linter: a small
//! scanner blanks comments and string literals, then finds `crate::x`, escaping `super::` and
//! `some_crate::` paths; a name `lib.rs` re-exports (`pub use observe::metrics;`) counts as the
//! module that holds it. Test modules inside `src/` count too: they are compiled in the crate.
//! `KNOWN_DEBTS` lists the breaks still tolerated; it is empty, and only ever shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Debts to remove, not permissions: each entry is one arrow `from -> to` that today's code has
/// and the architecture forbids, either a rule below or an edge inside an import cycle. A new
/// arrow fails the test; so does an entry that no longer occurs (delete it then).
const KNOWN_DEBTS: &[&str] = &[];

/// A layering rule: no file of a module in `from` names a module or crate in `never`.
struct Rule {
    from: &'static [&'static str],
    never: &'static [&'static str],
    why: &'static str,
}

const OUTSIDE_WORLD: &[&str] = &["axum", "sqlx", "reqwest", "lettre", "hyper", "hyper_util"];

const RULES: &[Rule] = &[
    Rule {
        from: &["http"],
        never: &["engine", "steps"],
        why: "`http` never imports `engine` or `steps`: it persists the event and answers, the \
              worker executes",
    },
    Rule {
        from: &["engine", "steps", "workflow", "template"],
        never: OUTSIDE_WORLD,
        why: "`engine`, `steps`, `workflow` and `template` never name axum, sqlx, reqwest, lettre \
              or hyper: the outside world comes in through `effects`, recording through \
              `engine::Journal`",
    },
    Rule {
        from: &["store"],
        never: &["steps", "engine", "workflow", "worker", "http"],
        why: "`store` never imports `steps`, `engine`, `workflow`, `worker` or `http`: what it \
              records is the run data model in `run`, shared below all of them",
    },
    Rule {
        from: &["run", "lang", "future"],
        never: &[
            "engine", "steps", "workflow", "store", "worker", "http", "serve", "effects",
            "settings", "cli", "axum", "sqlx", "reqwest", "lettre", "hyper",
        ],
        why: "`run` (the run data model), `lang` (the workflow language's front end) and \
              `future` sit below every layer that uses them",
    },
    Rule {
        from: &[
            "diag", "effects", "engine", "future", "http", "jsonpath", "lang", "net", "observe",
            "run", "secrets", "settings", "steps", "store", "template", "verify", "worker",
            "workflow",
        ],
        never: &["serve", "cli"],
        why: "only `cli` starts the server: `serve` assembles the layers, none of them reaches \
              back up to it",
    },
    Rule {
        from: &["workflow"],
        never: &["engine", "store", "http"],
        why: "`workflow` never imports `engine`, `store` or `http`: a compiled workflow is data \
              the layers above read",
    },
];

// ---------------------------------------------------------------------------------------------
// The scanner: comments and literals blanked, then tokens, then the names paths start with.

/// What a path names first: a top-level module of this crate, or an outside crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Named {
    Module(String),
    Crate(String),
}

impl Named {
    fn name(&self) -> &str {
        match self {
            Named::Module(name) | Named::Crate(name) => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    named: Named,
    line: usize,
}

/// `source` with every comment and string or character literal replaced by spaces; line breaks
/// stay, so line numbers still hold.
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(end) = skipped_end(&chars, i) {
            out.extend(
                chars[i..end]
                    .iter()
                    .map(|&c| if c == '\n' { '\n' } else { ' ' }),
            );
            i = end;
            continue;
        }
        // Whole words at once, so a raw string's `r` is only looked for at a word's start.
        let end = if is_word_char(chars[i]) {
            word_end(&chars, i)
        } else {
            i + 1
        };
        out.extend(&chars[i..end]);
        i = end;
    }
    out
}

/// Where the comment or literal starting at `i` ends, if one starts there.
fn skipped_end(chars: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| chars.get(k).copied();
    match (chars[i], at(i + 1)) {
        ('/', Some('/')) => Some(
            chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p),
        ),
        ('/', Some('*')) => Some(block_comment_end(chars, i)),
        ('"', _) => Some(quoted_end(chars, i + 1)),
        ('\'', _) => char_literal_end(chars, i),
        ('r' | 'b' | 'c', _) => raw_string_end(chars, i),
        _ => None,
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn word_end(chars: &[char], start: usize) -> usize {
    chars[start..]
        .iter()
        .position(|&c| !is_word_char(c))
        .map_or(chars.len(), |p| start + p)
}

/// Block comments nest in Rust.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let (mut depth, mut j) = (0usize, start);
    while j + 1 < chars.len() {
        match (chars[j], chars[j + 1]) {
            ('/', '*') => (depth, j) = (depth + 1, j + 2),
            ('*', '/') => {
                (depth, j) = (depth - 1, j + 2);
                if depth == 0 {
                    return j;
                }
            }
            _ => j += 1,
        }
    }
    chars.len()
}

/// The end of a `"` string whose contents start at `j` (escapes skipped).
fn quoted_end(chars: &[char], mut j: usize) -> usize {
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 2,
            '"' => return j + 1,
            _ => j += 1,
        }
    }
    chars.len()
}

/// A character literal (`'a'`, `'\n'`, `'\''`), or `None` for a lifetime or a label.
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    match (chars.get(i + 1), chars.get(i + 2)) {
        (Some('\\'), _) => {
            let rest = chars.get(i + 3..)?;
            rest.iter().position(|&c| c == '\'').map(|p| i + 3 + p + 1)
        }
        (Some(_), Some('\'')) => Some(i + 3),
        _ => None,
    }
}

/// A raw string (`r"…"`, `r#"…"#`, `br#"…"#`, `cr"…"`) starting at `i`.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let r = if matches!(chars[i], 'b' | 'c') {
        i + 1
    } else {
        i
    };
    if chars.get(r) != Some(&'r') {
        return None;
    }
    let hashes = chars[r + 1..].iter().take_while(|&&c| c == '#').count();
    let open = r + 1 + hashes;
    if chars.get(open) != Some(&'"') {
        return None;
    }
    let closing: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let body = open + 1;
    let end = (body..chars.len()).find(|&j| chars[j..].starts_with(&closing));
    Some(end.map_or(chars.len(), |j| j + closing.len()))
}

#[derive(Debug)]
struct Token {
    text: String,
    line: usize,
}

/// Words, `::`, and single punctuation characters, each with its 1-based line.
fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < chars.len() {
        let end = match chars[i] {
            '\n' => {
                line += 1;
                i + 1
            }
            c if c.is_whitespace() => i + 1,
            c if is_word_char(c) => word_end(&chars, i),
            ':' if chars.get(i + 1) == Some(&':') => i + 2,
            _ => i + 1,
        };
        if !chars[i].is_whitespace() {
            out.push(Token {
                text: chars[i..end].iter().collect(),
                line,
            });
        }
        i = end;
    }
    out
}

/// The module the code at a token is in: the file's module plus the inline `mod x { }` blocks
/// open there, so `super::` in a `mod tests` leaves the test module first.
struct Scope {
    path: Vec<String>,
    depth: usize,
    inline_opened_at: Vec<usize>,
}

impl Scope {
    fn of_file(module: &[&str]) -> Self {
        let path = module.iter().map(|s| s.to_string()).collect();
        Scope {
            path,
            depth: 0,
            inline_opened_at: Vec::new(),
        }
    }

    fn step(&mut self, tokens: &[Token], i: usize) {
        match tokens[i].text.as_str() {
            "{" => {
                self.depth += 1;
                if i >= 2 && tokens[i - 2].text == "mod" {
                    self.path.push(tokens[i - 1].text.clone());
                    self.inline_opened_at.push(self.depth);
                }
            }
            "}" => {
                if self.inline_opened_at.last() == Some(&self.depth) {
                    self.inline_opened_at.pop();
                    self.path.pop();
                }
                self.depth = self.depth.saturating_sub(1);
            }
            _ => {}
        }
    }
}

/// Every top-level module (`crate::x`, or `super::` past the top) and every crate of `crates`
/// that the code of a file in `module` (`["http", "ui"]` for `src/http/ui.rs`) names.
fn imports(source: &str, module: &[&str], crates: &[&str]) -> Vec<Import> {
    let tokens = tokens(&blank_comments_and_literals(source));
    let mut scope = Scope::of_file(module);
    let mut found = Vec::new();
    for i in 0..tokens.len() {
        scope.step(&tokens, i);
        let after = |k: usize| tokens.get(k).map(|t| t.text.as_str());
        let before = i.checked_sub(1).and_then(&after);
        if matches!(before, Some("::" | "$")) {
            continue; // inside a path, or a macro's `$crate`
        }
        let word = tokens[i].text.as_str();
        if after(i + 1) == Some("::") && word == "crate" {
            found.extend(heads(&tokens, i + 2).into_iter().map(module_import));
        } else if after(i + 1) == Some("::") && word == "super" {
            found.extend(
                leaving_supers(&tokens, i, &scope.path)
                    .into_iter()
                    .map(module_import),
            );
        } else if crates.contains(&word) && (after(i + 1) == Some("::") || before == Some("use")) {
            found.push(Import {
                named: Named::Crate(word.to_owned()),
                line: tokens[i].line,
            });
        }
    }
    found
}

fn module_import(token: &Token) -> Import {
    Import {
        named: Named::Module(token.text.clone()),
        line: token.line,
    }
}

/// The first segment of the path at `j`, or of each path in a `{ a::b, c }` group there.
fn heads(tokens: &[Token], j: usize) -> Vec<&Token> {
    match tokens.get(j) {
        Some(t) if t.text == "{" => group_heads(tokens, j),
        Some(t) if is_name(t) => vec![t],
        _ => Vec::new(),
    }
}

/// The first segment of each element of the group opening at `open`, over any number of lines.
fn group_heads(tokens: &[Token], open: usize) -> Vec<&Token> {
    let (mut depth, mut starts_element, mut found) = (0usize, false, Vec::new());
    for token in &tokens[open..] {
        match token.text.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            _ if starts_element && is_name(token) => found.push(token),
            _ => {}
        }
        if depth == 0 {
            break;
        }
        starts_element = depth == 1 && matches!(token.text.as_str(), "{" | ",");
    }
    found
}

/// A segment that names something else than the path's own start (`self`).
fn is_name(token: &Token) -> bool {
    token.text != "self" && token.text.chars().next().is_some_and(is_word_char)
}

/// What `super::…::x` at `i` names when it climbs out of its top-level module. From
/// `src/http/x/y.rs` (`crate::http::x::y`), `super::super::super::store` names `store`;
/// `super::super::store` is `crate::http::store` and names nothing new.
fn leaving_supers<'t>(tokens: &'t [Token], i: usize, scope: &[String]) -> Vec<&'t Token> {
    let climbs = tokens[i..]
        .chunks(2)
        .take_while(|pair| pair.len() == 2 && pair[0].text == "super" && pair[1].text == "::")
        .count();
    if climbs == scope.len() {
        heads(tokens, i + 2 * climbs)
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------------------------
// The crate: its files, its top-level modules, the crates it depends on.

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One file of the library with what it names.
struct ScannedFile {
    /// `src/http/ui.rs`
    path: String,
    /// `http`
    top: String,
    imports: Vec<Import>,
}

/// Every file of the library, sorted, with what each one names.
fn scanned_sources() -> Vec<ScannedFile> {
    let src = Path::new(ROOT).join("src");
    let mut paths = Vec::new();
    rs_files(&src, &mut paths);
    paths.sort();
    let relative: Vec<&Path> = paths
        .iter()
        .filter_map(|p| p.strip_prefix(&src).ok())
        .collect();
    let crates = outside_crates(&relative);
    let crates: Vec<&str> = crates.iter().map(String::as_str).collect();
    let lib = std::fs::read_to_string(src.join("lib.rs"))
        .unwrap_or_else(|err| panic!("reading src/lib.rs: {err}"));
    let reexports = root_reexports(&lib);
    relative
        .iter()
        .filter_map(|path| scan(&src, path, &crates))
        .map(|file| resolve_reexports(file, &reexports))
        .collect()
}

/// What `lib.rs` re-exports at the crate root, each with the top-level module that holds it:
/// after `pub use observe::{metrics, telemetry};`, `crate::observe::metrics::x` is an arrow to `observe`.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let code = blank_comments_and_literals(lib);
    let mut found = BTreeMap::new();
    for statement in code.split(';').map(str::trim) {
        let Some(path) = statement.strip_prefix("pub use ") else {
            continue;
        };
        let path = path.trim().trim_start_matches("crate::");
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        let rest = rest.trim().trim_start_matches('{').trim_end_matches('}');
        for element in rest.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let exported = match element.split_once(" as ") {
                Some((_, alias)) => alias.trim(),
                None => element.rsplit("::").next().unwrap_or(element).trim(),
            };
            found.insert(exported.to_owned(), module.trim().to_owned());
        }
    }
    found
}

/// `file` with each import of a root re-export counted as an import of the module that holds it.
fn resolve_reexports(mut file: ScannedFile, reexports: &BTreeMap<String, String>) -> ScannedFile {
    for import in &mut file.imports {
        let Named::Module(name) = &import.named else {
            continue;
        };
        if let Some(module) = reexports.get(name) {
            import.named = Named::Module(module.clone());
        }
    }
    file
}

fn scan(src: &Path, relative: &Path, crates: &[&str]) -> Option<ScannedFile> {
    let module = module_path(relative)?;
    let text = std::fs::read_to_string(src.join(relative))
        .unwrap_or_else(|err| panic!("reading src/{}: {err}", relative.display()));
    let module: Vec<&str> = module.iter().map(String::as_str).collect();
    Some(ScannedFile {
        path: format!("src/{}", relative.display()),
        top: module[0].to_owned(),
        imports: imports(&text, &module, crates),
    })
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()))
            .path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `http/x/y.rs` is `["http", "x", "y"]`, `http/mod.rs` is `["http"]`. `None` for `lib.rs`,
/// which only declares the modules, and for `main.rs`, the binary: a crate of its own that
/// names the library as `hookflow::`.
fn module_path(relative: &Path) -> Option<Vec<String>> {
    if relative == Path::new("lib.rs") || relative == Path::new("main.rs") {
        return None;
    }
    let mut path: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.len() > 1 && path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    Some(path)
}

/// `src/X.rs` and `src/X/`: the nodes of the module graph.
fn top_level_modules() -> BTreeSet<String> {
    let src = Path::new(ROOT).join("src");
    let mut paths = Vec::new();
    rs_files(&src, &mut paths);
    paths
        .iter()
        .filter_map(|p| module_path(p.strip_prefix(&src).ok()?))
        .map(|module| module[0].clone())
        .collect()
}

/// The crates Cargo.toml depends on, as code spells them (`hyper_util`). A crate named like a
/// module of ours is left out: a bare `name::` path there may be the module.
fn outside_crates(relative: &[&Path]) -> BTreeSet<String> {
    let module_names: BTreeSet<String> = relative
        .iter()
        .flat_map(|p| {
            p.with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml"))
        .unwrap_or_else(|err| panic!("reading Cargo.toml: {err}"));
    dependency_names(&manifest)
        .into_iter()
        .filter(|name| !module_names.contains(name))
        .collect()
}

/// The keys of every `[…dependencies]` table of a manifest.
fn dependency_names(manifest: &str) -> BTreeSet<String> {
    let mut in_dependencies = false;
    let mut names = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line.ends_with("dependencies]");
        } else if let Some((key, _)) = line
            .split_once('=')
            .filter(|_| in_dependencies && !line.starts_with('#'))
        {
            names.insert(key.trim().replace('-', "_"));
        }
    }
    names
}

// ---------------------------------------------------------------------------------------------
// The module graph, its cycles, and what breaks the rules.

/// Edge `(from, to)` between top-level modules, with the first `file:line` that makes it.
type Graph = BTreeMap<(String, String), String>;

fn module_graph(files: &[ScannedFile]) -> Graph {
    let modules = top_level_modules();
    let mut graph = Graph::new();
    for file in files {
        for import in &file.imports {
            let Named::Module(to) = &import.named else {
                continue;
            };
            if to != &file.top && modules.contains(to) {
                let site = format!("{}:{}", file.path, import.line);
                graph.entry((file.top.clone(), to.clone())).or_insert(site);
            }
        }
    }
    graph
}

fn reachable<'g>(graph: &'g Graph, from: &str) -> BTreeSet<&'g str> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from];
    while let Some(node) = todo.pop() {
        for (_, to) in graph.keys().filter(|(f, _)| f == node) {
            if seen.insert(to.as_str()) {
                todo.push(to);
            }
        }
    }
    seen
}

/// The strongly connected components with more than one module: each an import cycle.
fn cycles(graph: &Graph) -> BTreeSet<BTreeSet<String>> {
    let nodes: BTreeSet<&str> = graph
        .keys()
        .flat_map(|(f, t)| [f.as_str(), t.as_str()])
        .collect();
    let reach: BTreeMap<&str, BTreeSet<&str>> =
        nodes.iter().map(|&n| (n, reachable(graph, n))).collect();
    nodes
        .iter()
        .map(|&n| {
            let mutual = reach[n].iter().filter(|&&m| reach[m].contains(n));
            mutual
                .chain([&n])
                .map(|m| m.to_string())
                .collect::<BTreeSet<_>>()
        })
        .filter(|component| component.len() > 1)
        .collect()
}

/// An arrow that breaks the layering: where it comes from and every rule it breaks.
#[derive(Debug, Default)]
struct Finding {
    site: String,
    broken: Vec<String>,
}

/// Every arrow that is a forbidden import or an edge inside an import cycle.
fn findings(files: &[ScannedFile], graph: &Graph) -> BTreeMap<String, Finding> {
    let mut found: BTreeMap<String, Finding> = BTreeMap::new();
    let mut note = |arrow: String, site: String, why: String| {
        let finding = found.entry(arrow).or_insert_with(|| Finding {
            site,
            ..Finding::default()
        });
        if !finding.broken.contains(&why) {
            finding.broken.push(why);
        }
    };
    for (file, rule, import) in forbidden_imports(files) {
        let arrow = format!("{} -> {}", file.top, import.named.name());
        note(
            arrow,
            format!("{}:{}", file.path, import.line),
            rule.why.to_owned(),
        );
    }
    for component in cycles(graph) {
        let members: Vec<&str> = component.iter().map(String::as_str).collect();
        let why = format!("it closes the import cycle between {}", members.join(", "));
        for ((from, to), site) in graph
            .iter()
            .filter(|((f, t), _)| component.contains(f) && component.contains(t))
        {
            note(format!("{from} -> {to}"), site.clone(), why.clone());
        }
    }
    found
}

/// Each import a rule forbids, first occurrence first.
fn forbidden_imports(
    files: &[ScannedFile],
) -> impl Iterator<Item = (&ScannedFile, &'static Rule, &Import)> {
    files.iter().flat_map(|file| {
        let rules = RULES
            .iter()
            .filter(|rule| rule.from.contains(&file.top.as_str()));
        rules.flat_map(move |rule| {
            let broken = file
                .imports
                .iter()
                .filter(|import| rule.never.contains(&import.named.name()));
            broken.map(move |import| (file, rule, import))
        })
    })
}

// ---------------------------------------------------------------------------------------------
// The checks.

#[test]
fn layering_holds_except_for_the_listed_debts() {
    let files = scanned_sources();
    let graph = module_graph(&files);
    let listed: BTreeSet<&str> = KNOWN_DEBTS.iter().copied().collect();
    assert_eq!(
        listed.len(),
        KNOWN_DEBTS.len(),
        "KNOWN_DEBTS lists an arrow twice"
    );
    let failures = against_debts(&findings(&files, &graph), &listed);
    assert!(
        failures.is_empty(),
        "the layering of ARCHITECTURE.md is broken:\n{}\n\nimport cycles today: {}",
        failures.join("\n"),
        describe(&cycles(&graph)),
    );
}

/// A line for each arrow found but not listed, and for each listed arrow no longer found.
fn against_debts(found: &BTreeMap<String, Finding>, listed: &BTreeSet<&str>) -> Vec<String> {
    let new = found
        .iter()
        .filter(|(arrow, _)| !listed.contains(arrow.as_str()));
    let new = new.map(|(arrow, finding)| {
        format!(
            "{}: `{arrow}`: {}",
            finding.site,
            finding.broken.join("; and ")
        )
    });
    let paid = listed.iter().filter(|arrow| !found.contains_key(**arrow));
    let paid = paid.map(|arrow| {
        format!("`{arrow}` is listed in KNOWN_DEBTS but no longer occurs: delete the entry")
    });
    new.chain(paid).collect()
}

fn describe(cycles: &BTreeSet<BTreeSet<String>>) -> String {
    let each = cycles
        .iter()
        .map(|c| c.iter().map(String::as_str).collect::<Vec<_>>().join(", "));
    let all: Vec<String> = each.map(|c| format!("[{c}]")).collect();
    if all.is_empty() {
        "none".to_owned()
    } else {
        all.join(", ")
    }
}

/// A scan that found nothing would pass every rule: the modules are the ones `lib.rs` declares,
/// and imports known to exist are seen.
#[test]
fn the_scan_sees_every_module_and_known_imports() {
    let lib = std::fs::read_to_string(Path::new(ROOT).join("src/lib.rs"))
        .unwrap_or_else(|err| panic!("reading src/lib.rs: {err}"));
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        top_level_modules(),
        declared,
        "src/X.rs and src/X/ against lib.rs"
    );
    let files = scanned_sources();
    let graph = module_graph(&files);
    for (from, to) in [
        ("serve", "store"),
        ("worker", "engine"),
        ("effects", "net"),
        ("cli", "serve"),
        // Through the root re-exports `crate::observe::metrics` and `crate::observe::telemetry`.
        ("worker", "observe"),
        ("cli", "observe"),
    ] {
        let edge = (from.to_owned(), to.to_owned());
        assert!(
            graph.contains_key(&edge),
            "no edge {from} -> {to} in {graph:?}"
        );
    }
    let names = |path: &str, named: Named| {
        files
            .iter()
            .any(|f| f.path == path && f.imports.iter().any(|i| i.named == named))
    };
    assert!(names(
        "src/store/sqlite/mod.rs",
        Named::Crate("sqlx".to_owned())
    ));
    assert!(names(
        "src/effects/mail/transport.rs",
        Named::Crate("lettre".to_owned())
    ));
}

// ---------------------------------------------------------------------------------------------
// The scanner and the graph on small inputs.

const CRATES: &[&str] = &["axum", "sqlx", "reqwest", "lettre", "hyper", "serde_json"];

fn named(source: &str, module: &[&str]) -> Vec<(String, usize)> {
    let found = imports(source, module, CRATES);
    found
        .into_iter()
        .map(|i| (i.named.name().to_owned(), i.line))
        .collect()
}

fn at(pairs: &[(&str, usize)]) -> Vec<(String, usize)> {
    pairs.iter().map(|(n, l)| (n.to_string(), *l)).collect()
}

#[test]
fn a_grouped_use_over_several_lines_names_each_head() {
    let source = "use crate::{\n    engine::{Event, Trigger},\n    self,\n    store::Store,\n};\n";
    assert_eq!(
        named(source, &["http", "admin"]),
        at(&[("engine", 2), ("store", 4)])
    );
    let one_line = "use crate::{diag::Span, net::{Cidr, canonical}, metrics};";
    assert_eq!(
        named(one_line, &["http"]),
        at(&[("diag", 1), ("net", 1), ("metrics", 1)])
    );
}

#[test]
fn a_crate_path_anywhere_in_code_counts() {
    let source =
        "use crate::diag::Span;\nfn f(ip: IpAddr) -> bool {\n    crate::net::canonical(ip)\n}\n";
    assert_eq!(
        named(source, &["http", "limit"]),
        at(&[("diag", 1), ("net", 3)])
    );
}

#[test]
fn super_counts_only_when_it_leaves_the_top_level_module() {
    // `src/http/x/y.rs` is `crate::http::x::y`: its `super::super` is `http`, three climb out.
    let source = "use super::super::super::store::Store;\nuse super::super::store::Local;\n\
                  use super::z;\nuse super::super::super::{engine, steps::Kind};\n";
    assert_eq!(
        named(source, &["http", "x", "y"]),
        at(&[("store", 1), ("engine", 4), ("steps", 4)])
    );
    let from_folder_module = "let s: super::super::store::Store;";
    assert_eq!(
        named(from_folder_module, &["http", "x"]),
        at(&[("store", 1)])
    );
    assert_eq!(named("use super::Journal;", &["engine", "retry"]), at(&[]));
    assert_eq!(
        named("use super::store::Store;", &["engine"]),
        at(&[("store", 1)])
    );
    assert_eq!(
        named("use super::super::super::nowhere;", &["http", "x"]),
        at(&[])
    );
}

#[test]
fn super_in_an_inline_module_climbs_out_of_it_first() {
    let source = "mod tests {\n    use super::*;\n    use super::super::Journal;\n}\nuse super::store::Store;\n";
    assert_eq!(named(source, &["engine", "retry"]), at(&[]));
    let source = "mod tests {\n    use super::super::store::Store;\n}\nuse super::worker::W;\n";
    assert_eq!(
        named(source, &["engine"]),
        at(&[("store", 2), ("worker", 4)])
    );
}

#[test]
fn paths_in_comments_and_literals_do_not_count() {
    let source = r####"// use crate::store;
/// [`crate::engine::Journal`]
/* crate::steps /* nested */ crate::worker */
let s = "crate::http \" crate::server";
let r = r##"crate::reload "# crate::watch"##;
let q = '"'; let e = '\''; let b = b'"';
fn f<'a>(x: &'a str) -> crate::diag::Span { macro!($crate::x) }
pub(crate) fn g() -> sqlx::Result<()> { "reqwest::Client" }
"####;
    assert_eq!(named(source, &["http"]), at(&[("diag", 7), ("sqlx", 8)]));
}

#[test]
fn outside_crates_count_at_the_start_of_a_path_or_in_a_use() {
    let source = "use axum::Router;\nuse hyper;\nlet n = axum::http::HeaderName::from_static(\"x\");\nlet v = self::sqlx::X;\n";
    assert_eq!(
        named(source, &["workflow"]),
        at(&[("axum", 1), ("hyper", 2), ("axum", 3)])
    );
}

#[test]
fn dependency_names_come_from_every_dependency_table() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\n# a comment = 1\nhyper-util = \"0.1\"\n[dev-dependencies]\ntempfile = \"3\"\n[profile.dev]\ndebug = true\n";
    let names: Vec<String> = dependency_names(manifest).into_iter().collect();
    assert_eq!(names, ["hyper_util", "tempfile"]);
}

#[test]
fn root_reexports_name_the_module_that_holds_them() {
    let lib = "pub mod observe;\n// pub use nowhere::x;\npub use observe::{metrics, telemetry};\n\
               pub use crate::net::Cidr as Block;\npub use run::event::Event;\nuse lang::hidden;\n";
    let found: Vec<(String, String)> = root_reexports(lib).into_iter().collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        found,
        [
            pair("Block", "net"),
            pair("Event", "run"),
            pair("metrics", "observe"),
            pair("telemetry", "observe"),
        ]
    );
}

#[test]
fn cycles_are_the_components_that_reach_themselves() {
    let edge = |f: &str, t: &str| ((f.to_owned(), t.to_owned()), format!("src/{f}.rs:1"));
    let graph: Graph = [
        edge("a", "b"),
        edge("b", "c"),
        edge("c", "a"),
        edge("c", "d"),
        edge("d", "e"),
        edge("e", "d"),
    ]
    .into_iter()
    .collect();
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        cycles(&graph),
        BTreeSet::from([set(&["a", "b", "c"]), set(&["d", "e"])])
    );
    let files: Vec<ScannedFile> = Vec::new();
    let arrows: Vec<String> = findings(&files, &graph).into_keys().collect();
    assert_eq!(arrows, ["a -> b", "b -> c", "c -> a", "d -> e", "e -> d"]);
}
