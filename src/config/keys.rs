//! The unknown-key pre-pass: every unknown key and every section of the wrong shape at once,
//! with suggestions, before serde reads the raw structs.

use toml::de::{DeTable, DeValue};

use super::error::{suggest, ConfigProblem, Lines};
use super::raw::{NESTED, SCHEMA};

/// Removes the unknown keys `check_keys` reported, so that validation can go
/// on and report every other problem in the same run. Returns `false` when a
/// section has the wrong shape: then nothing more can be checked.
pub(super) fn strip_unknown(root: &mut DeTable<'_>) -> bool {
    let mut shapes_ok = true;
    retain_known(root, |name| SCHEMA.iter().any(|(s, _)| *s == name));
    for (key, value) in root.iter_mut() {
        let name: &str = key.get_ref();
        let Some((_, known)) = SCHEMA.iter().find(|(s, _)| *s == name) else {
            continue;
        };
        let keep = |k: &str| known.contains(&k);
        match (name, value.get_mut()) {
            ("route", DeValue::Array(items)) => {
                for item in items.iter_mut() {
                    match item.get_mut() {
                        DeValue::Table(t) => retain_known(t, keep),
                        _ => shapes_ok = false,
                    }
                }
            }
            ("route", _) => shapes_ok = false,
            ("auth", DeValue::Table(sections)) => {
                for (_, section) in sections.iter_mut() {
                    match section.get_mut() {
                        DeValue::Table(t) => retain_known(t, keep),
                        _ => shapes_ok = false,
                    }
                }
            }
            (_, DeValue::Table(t)) => {
                retain_known(t, keep);
                for (inner, keys) in nested(name) {
                    match t.get_mut(*inner).map(|v| v.get_mut()) {
                        None => {}
                        Some(DeValue::Table(n)) => retain_known(n, |k| keys.contains(&k)),
                        Some(_) => shapes_ok = false,
                    }
                }
            }
            _ => shapes_ok = false,
        }
    }
    shapes_ok
}

/// The tables inside section `name`.
fn nested(name: &str) -> &'static [(&'static str, &'static [&'static str])] {
    NESTED
        .iter()
        .find(|(s, _)| *s == name)
        .map_or(&[], |(_, n)| n)
}

fn retain_known(table: &mut DeTable<'_>, keep: impl Fn(&str) -> bool) {
    let unknown: Vec<_> = table
        .keys()
        .filter(|k| !keep(k.get_ref()))
        .cloned()
        .collect();
    for key in unknown {
        table.remove(&key);
    }
}

/// Report every unknown key and every section of the wrong shape.
pub(super) fn check_keys(root: &DeTable<'_>, lines: &Lines) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let sections: Vec<&str> = SCHEMA.iter().map(|(s, _)| *s).collect();
    for (key, value) in root {
        let name: &str = key.get_ref();
        let line = Some(lines.line_of_span(&key.span()));
        let Some((_, known)) = SCHEMA.iter().find(|(s, _)| *s == name) else {
            let hint = match suggest(name, &sections) {
                Some(s) => format!("did you mean {}?", header(s)),
                None => match section_of(name) {
                    Some(s) => format!("\"{name}\" belongs in {}", header(s)),
                    None => format!("known sections: {}", sections.join(", ")),
                },
            };
            problems.push(ConfigProblem::new(
                name,
                line,
                format!("unknown section or key \"{name}\" at the top level; {hint}"),
            ));
            continue;
        };
        match (name, value.get_ref()) {
            ("route", DeValue::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("route[{i}]");
                    match item.get_ref() {
                        DeValue::Table(t) => check_table(&path, "[[route]]", t, known, &[], lines, &mut problems),
                        other => problems.push(ConfigProblem::new(
                            path,
                            Some(lines.line_of_span(&item.span())),
                            format!("each route must be a table, found {}; write [[route]] sections", other.type_str()),
                        )),
                    }
                }
            }
            ("route", _) => problems.push(ConfigProblem::new(
                name,
                line,
                "routes must be an array of tables: write [[route]] (double brackets) for each route",
            )),
            ("auth", DeValue::Table(sections)) => {
                for (section, value) in sections {
                    let section_name: &str = section.get_ref();
                    let path = format!("auth.{section_name}");
                    match value.get_ref() {
                        DeValue::Table(t) => check_table(&path, &format!("[{path}]"), t, known, INLINE_SECRETS, lines, &mut problems),
                        other => problems.push(ConfigProblem::new(
                            path,
                            Some(lines.line_of_span(&section.span())),
                            format!("\"{section_name}\" directly under [auth] is not a section (found {}); write [auth.NAME] sections, e.g. [auth.users] with type = \"jwt\"", other.type_str()),
                        )),
                    }
                }
            }
            ("auth", other) => problems.push(ConfigProblem::new(
                name,
                line,
                format!("\"auth\" must be [auth.NAME] sections (tables), found {}; write e.g. [auth.users] with type = \"jwt\"", other.type_str()),
            )),
            (_, DeValue::Table(t)) => {
                check_table(name, &format!("[{name}]"), t, known, &[], lines, &mut problems);
                for (inner, keys) in nested(name) {
                    let Some((k, v)) = t.get_key_value(*inner) else { continue };
                    let path = format!("{name}.{inner}");
                    match v.get_ref() {
                        DeValue::Table(n) => check_table(&path, &format!("[{path}]"), n, keys, &[], lines, &mut problems),
                        other => problems.push(ConfigProblem::new(
                            path.clone(),
                            Some(lines.line_of_span(&k.span())),
                            format!("\"{path}\" must be a [{path}] section (a table), found {}", other.type_str()),
                        )),
                    }
                }
            }
            (_, other) => problems.push(ConfigProblem::new(
                name,
                line,
                format!("\"{name}\" must be a [{name}] section (a table), found {}", other.type_str()),
            )),
        }
    }
    problems
}

fn check_table(
    path: &str,
    label: &str,
    table: &DeTable<'_>,
    known: &[&str],
    refused: &[(&str, &str)],
    lines: &Lines,
    problems: &mut Vec<ConfigProblem>,
) {
    for key in table.keys() {
        let name: &str = key.get_ref();
        if known.contains(&name) {
            continue;
        }
        let message = match refused.iter().find(|(k, _)| *k == name) {
            Some((_, why)) => (*why).to_owned(),
            None => {
                let hint = match (suggest(name, known), section_of(name)) {
                    (Some(s), _) => format!("did you mean \"{s}\"?"),
                    (None, Some(section)) => format!("\"{name}\" belongs in {}", header(section)),
                    (None, None) => format!("known keys: {}", known.join(", ")),
                };
                format!("unknown key \"{name}\" in {label}; {hint}")
            }
        };
        problems.push(ConfigProblem::new(
            format!("{path}.{name}"),
            Some(lines.line_of_span(&key.span())),
            message,
        ));
    }
}

/// Keys refused in `[auth.NAME]` with their own message (never echoing the value).
const INLINE_SECRETS: &[(&str, &str)] =
    &[("hmac_secret", SECRET_IN_FILE), ("secret", SECRET_IN_FILE)];
const SECRET_IN_FILE: &str =
    "secrets are never inline in the TOML; put it in a file and name it in hmac_secret_file";

/// How a section is written, for hints.
fn header(section: &str) -> String {
    match section {
        "route" => "[[route]]".to_owned(),
        "auth" => "[auth.NAME]".to_owned(),
        s => format!("[{s}]"),
    }
}

/// The section a key belongs to, for keys written in the wrong section.
fn section_of(key: &str) -> Option<&'static str> {
    SCHEMA
        .iter()
        .find(|(_, keys)| keys.contains(&key))
        .map(|(s, _)| *s)
}
