//! The library's shape, checked on every `cargo test`: no module imports a
//! module that imports it back (directly or around a loop), and no file in
//! `src/` holds more than 500 lines of non-test code. docs/ARCHITECTURE.md
//! says which module owns what; these two rules keep that readable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most non-test lines in one source file.
const MAX_LINES: usize = 500;

/// A module path inside the crate: `["frame", "decoder"]`; the crate root is empty.
type Module = Vec<String>;

/// Every library module (not `main.rs`, not `src/bin/`, not `tests` modules)
/// and the non-test part of its source.
fn modules() -> BTreeMap<Module, (PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(&src).unwrap().to_path_buf();
            if path.is_dir() {
                if rel != Path::new("bin") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut module: Module = rel
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            match module.last().map(String::as_str) {
                Some("main") if module.len() == 1 => continue,
                Some("tests") => continue,
                Some("mod") | Some("lib") => {
                    module.pop();
                }
                _ => {}
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(module, (rel, non_test(&text).to_owned()));
        }
    }
    out
}

/// The source up to an inline `#[cfg(test)] mod tests {`.
fn non_test(text: &str) -> &str {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]") {
        let start = at + i;
        let rest = text[start + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests {") {
            return &text[..start];
        }
        at = start + 1;
    }
    text
}

/// `source` with comments and the contents of string and char literals
/// blanked, so only code is searched for paths.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !prev_is_ident(&chars, i) {
            // Raw string: r"…" or r#"…"#.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            i += 2 + hashes;
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            while i < chars.len() && !chars[i..].iter().collect::<String>().starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('"', '\''), not a lifetime.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && is_ident(chars[i - 1])
}

/// The paths a module names: every `use` tree expanded, and every
/// `crate::…` or `super::…` path written inline.
fn paths(source: &str) -> Vec<Vec<String>> {
    let code = code_only(source);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = find_use(rest) {
        let tail = &rest[i..];
        let end = tail.find(';').unwrap_or(tail.len());
        expand(&tail[..end], &mut Vec::new(), &mut out);
        rest = &tail[end..];
    }
    for anchor in ["crate::", "super::"] {
        let mut at = 0;
        while let Some(i) = code[at..].find(anchor) {
            let start = at + i;
            at = start + anchor.len();
            if start > 0 && is_ident(code.as_bytes()[start - 1] as char) {
                continue;
            }
            let path: String = code[start..]
                .chars()
                .take_while(|&c| is_ident(c) || c == ':')
                .collect();
            out.push(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Index just past the next `use ` keyword that starts a statement.
fn find_use(code: &str) -> Option<usize> {
    let mut at = 0;
    while let Some(i) = code[at..].find("use ") {
        let start = at + i;
        let before = code[..start].trim_end_matches(' ');
        let starts_statement = before.is_empty()
            || before.ends_with(['\n', ';', '{', '}'])
            || before.ends_with("pub")
            || before.ends_with(')');
        if starts_statement && (start == 0 || !is_ident(code.as_bytes()[start - 1] as char)) {
            return Some(start + 4);
        }
        at = start + 4;
    }
    None
}

/// Expands one use tree (`a::b::{c, d::{e, f}}`) into whole paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let pushed = push_segments(prefix, head);
        for part in split_top(inner) {
            expand(part, prefix, out);
        }
        prefix.truncate(prefix.len() - pushed);
    } else {
        let path = tree.split(" as ").next().unwrap_or("");
        let pushed = push_segments(prefix, path);
        out.push(prefix.clone());
        prefix.truncate(prefix.len() - pushed);
    }
}

fn push_segments(prefix: &mut Vec<String>, path: &str) -> usize {
    let segments: Vec<String> = path
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "*")
        .map(String::from)
        .collect();
    let n = segments.len();
    prefix.extend(segments);
    n
}

/// Splits on commas outside braces.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The deepest known module a path from `from` names, if it is in the crate.
fn resolve(
    from: &Module,
    path: &[String],
    known: &BTreeMap<Module, (PathBuf, String)>,
) -> Option<Module> {
    let mut base: Module = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => from.clone(),
        Some("super") => from[..from.len().saturating_sub(1)].to_vec(),
        Some(first) => {
            // A child module of `from` (`use decoder::Decoder;` in a mod.rs).
            let mut child = from.clone();
            child.push(first.to_owned());
            if !known.contains_key(&child) {
                return None;
            }
            from.clone()
        }
        None => return None,
    };
    let mut rest = &path[1..];
    if path
        .first()
        .is_some_and(|s| s != "crate" && s != "self" && s != "super")
    {
        rest = path;
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut found = None;
    let mut module = base;
    if known.contains_key(&module) {
        found = Some(module.clone());
    }
    for segment in rest {
        module.push(segment.clone());
        if known.contains_key(&module) {
            found = Some(module.clone());
        }
    }
    found
}

/// Module → modules it imports (the crate root, which only declares, is left out).
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let known = modules();
    let mut edges = BTreeMap::new();
    for (module, (_, source)) in &known {
        if module.is_empty() {
            continue;
        }
        let targets: BTreeSet<Module> = paths(source)
            .iter()
            .filter_map(|p| resolve(module, p, &known))
            .filter(|t| t != module && !t.is_empty())
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

fn name(m: &Module) -> String {
    m.join("::")
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let edges = graph();
    let mut cycles = Vec::new();
    // Depth-first search; a back edge to a module on the stack closes a cycle.
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = stack.iter().position(|s| s == m) {
            let mut cycle: Vec<String> = stack[at..].iter().map(name).collect();
            cycle.push(name(m));
            cycles.push(cycle.join(" -> "));
            return;
        }
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            visit(next, edges, stack, done, cycles);
        }
        stack.pop();
        done.insert(m.clone());
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_sees_imports_of_every_form() {
    let found = paths(
        "use crate::a::{b, c::{d, e as f}};\npub use child::Thing;\nfn x() { super::sib::call(); }\n\
         // use crate::commented;\nlet s = \"no; use crate::quoted\"; let c = '\"'; /* crate::block */",
    );
    let want: Vec<Vec<String>> = [
        "crate::a::b",
        "crate::a::c::d",
        "crate::a::c::e",
        "child::Thing",
        "crate::a::",
        "super::sib::call",
    ]
    .iter()
    .map(|p| {
        p.split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
    .collect();
    for p in &want {
        assert!(found.contains(p), "{p:?} not found in {found:?}");
    }
    for hidden in ["commented", "quoted", "block"] {
        assert!(
            !found.iter().any(|p| p.iter().any(|s| s == hidden)),
            "{hidden}"
        );
    }
    // The graph itself sees known edges of this crate.
    let edges = graph();
    let relay: Module = vec!["relay".into()];
    assert!(edges[&relay].contains(&vec!["frame".to_owned()]));
}

#[test]
fn no_source_file_is_over_500_lines_of_non_test_code() {
    let long: Vec<String> = modules()
        .values()
        .map(|(path, source)| (path, source.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(path, n)| format!("src/{}: {n} lines", path.display()))
        .collect();
    assert!(long.is_empty(), "split these by job:\n{}", long.join("\n"));
}
