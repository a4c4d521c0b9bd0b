//! [`ConfigErrors`]: every problem found, each with key path, line and fix; the byte offset →
//! line map; "did you mean" suggestions.

use std::fmt;
use std::ops::Range;

/// One problem in a config file: which key, where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path such as `frames.max_frame_size` or `route[1].backends[0]`; empty for syntax errors.
    pub key: String,
    /// 1-based line in the file, when the problem has a place.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigProblem {
    /// A problem with `key` (empty for syntax errors), at `line` when it has one.
    pub fn new(key: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            line,
            message: message.into(),
        }
    }
}

/// Every problem found in one config source. `Display` prints one per line as
/// `path/to/file.toml:LINE: KEY: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file name (or other origin name) the problems refer to.
    pub source_name: String,
    /// At least one problem, in file order where possible.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigErrors {
    pub(super) fn one(source_name: &str, problem: ConfigProblem) -> Self {
        Self {
            source_name: source_name.to_owned(),
            problems: vec![problem],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:", self.source_name)?;
            if let Some(line) = p.line {
                write!(f, "{line}:")?;
            }
            if !p.key.is_empty() {
                write!(f, " {}:", p.key)?;
            }
            write!(f, " {}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// === impl Lines ===

/// Maps byte offsets in the source to 1-based line numbers.
pub(super) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub(super) fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    pub(super) fn line_of_span(&self, span: &Range<usize>) -> usize {
        self.line_of(span.start)
    }
}

// === suggestions ===

/// The closest candidate to `word` within a small edit distance, for "did you mean" hints.
pub(super) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let max = (word.len() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
