//! Configuration errors that point at the file, line, column and field to fix.

use std::fmt;

/// One problem found in a configuration file.
///
/// Displayed as `file:line:col: field: message (hint: ...)`; parts that are unknown are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name given as `origin`, used only in messages.
    pub file: String,
    /// 1-based line of the offending value or key, when known.
    pub line: Option<u32>,
    /// 1-based column of the offending value or key, when known.
    pub column: Option<u32>,
    /// The field path, like `backends[2].weight`; empty for the document as a whole.
    pub field: String,
    /// What is wrong, in one plain sentence.
    pub message: String,
    /// How to fix it, when we can guess (`did you mean "listen"?`).
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, ordered by position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A list holding just `error`.
    pub fn single(error: ConfigError) -> Self {
        Self(vec![error])
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no problem was recorded (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Sorts by position; errors without a position go last, in the order they were found.
    pub(crate) fn sort(&mut self) {
        self.0.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // A third of the length catches transpositions and a dropped letter or two without
    // suggesting unrelated words for short inputs.
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Classic dynamic-programming edit distance (insert, delete, substitute), case-insensitive.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(
        line: Option<u32>,
        column: Option<u32>,
        field: &str,
        hint: Option<&str>,
    ) -> ConfigError {
        ConfigError {
            file: "lb.yaml".into(),
            line,
            column,
            field: field.into(),
            message: "is wrong".into(),
            hint: hint.map(Into::into),
        }
    }

    #[test]
    fn display_omits_missing_parts() {
        let cases = [
            (
                error(Some(3), Some(5), "server.listen", Some("fix it")),
                "lb.yaml:3:5: server.listen: is wrong (hint: fix it)",
            ),
            (error(Some(3), None, "a", None), "lb.yaml:3: a: is wrong"),
            (error(None, None, "", None), "lb.yaml: is wrong"),
            (error(Some(1), Some(1), "", None), "lb.yaml:1:1: is wrong"),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn errors_display_one_per_line_sorted() {
        let mut errors = ConfigErrors(vec![
            error(None, None, "x", None),
            error(Some(9), Some(1), "b", None),
            error(Some(2), Some(4), "a", None),
        ]);
        errors.sort();
        assert_eq!(
            errors.to_string(),
            "lb.yaml:2:4: a: is wrong\nlb.yaml:9:1: b: is wrong\nlb.yaml: x: is wrong"
        );
    }

    #[test]
    fn closest_finds_typos_only() {
        let fields = ["listen", "workers", "idle_timeout", "request_timeout"];
        assert_eq!(closest("listn", &fields), Some("listen"));
        assert_eq!(closest("wrokers", &fields), Some("workers"));
        assert_eq!(closest("idle_timout", &fields), Some("idle_timeout"));
        assert_eq!(closest("banana", &fields), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
