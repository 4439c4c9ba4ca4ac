//! Reports as compiler-style text, or as one JSON document for editors and CI; and the plain
//! columns of the tables the other commands print.
//!
//! The text form follows rustc: `FILE:LINE:COL: error: FIELD: message`, then the source
//! line under a line-number gutter with a caret under the column, then `= hint: ...`.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::check::{FileReport, Finding};

/// Longest stretch of a source line quoted; longer lines (minified JSON) are cut around the
/// column so the caret stays on screen.
const MAX_QUOTE: usize = 100;

/// The full text report of one file: its findings, then a verdict line (and the summary
/// when the file is valid).
pub fn text(report: &FileReport, strict: bool) -> String {
    let mut out = String::new();
    for finding in report.errors.iter().chain(&report.warnings) {
        out.push_str(&finding_text(
            &report.file,
            finding,
            report.source.as_deref(),
        ));
    }
    let warnings = count(report.warnings.len(), "warning");
    if !report.valid() {
        let _ = writeln!(
            out,
            "{}: invalid, {}",
            report.file,
            count(report.errors.len(), "error")
        );
    } else if !report.passes(strict) {
        let _ = writeln!(out, "{}: failed, {warnings} with --strict", report.file);
    } else if report.warnings.is_empty() {
        let _ = writeln!(out, "{}: ok", report.file);
    } else {
        let _ = writeln!(out, "{}: ok, {warnings}", report.file);
    }
    if let Some(summary) = report.summary() {
        let _ = writeln!(out, "  {summary}");
    }
    out
}

fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// One finding: the headline, the quoted line with a caret when the position and the text
/// are known, and the hint.
pub fn finding_text(file: &str, finding: &Finding, source: Option<&str>) -> String {
    let mut out = String::from(file);
    if let Some(line) = finding.line {
        let _ = write!(out, ":{line}");
        if let Some(column) = finding.column {
            let _ = write!(out, ":{column}");
        }
    }
    let _ = write!(out, ": {}: ", finding.severity.as_str());
    if !finding.field.is_empty() {
        let _ = write!(out, "{}: ", finding.field);
    }
    out.push_str(&finding.message);
    out.push('\n');

    let quoted = finding.line.zip(source).and_then(|(line, source)| {
        Some((line, source.lines().nth(line.checked_sub(1)? as usize)?))
    });
    let gutter = quoted.map_or(1, |(line, _)| line.to_string().len());
    if let Some((line, text)) = quoted {
        let (text, caret) = caret_line(text, finding.column.unwrap_or(1));
        let _ = writeln!(out, " {line:>gutter$} | {text}");
        let _ = writeln!(out, " {:gutter$} | {caret}^", "");
    }
    if let Some(hint) = &finding.hint {
        let _ = writeln!(out, " {:gutter$} = hint: {hint}", "");
    }
    out
}

/// The line to quote and the padding that puts a caret under 1-based `column`. Tabs in the
/// padding stay tabs so the caret lines up however the terminal expands them.
fn caret_line(line: &str, column: u32) -> (String, String) {
    let chars: Vec<char> = line.trim_end_matches('\r').chars().collect();
    let target = (column.max(1) as usize - 1).min(chars.len());
    let (start, end, prefix) = if chars.len() <= MAX_QUOTE {
        (0, chars.len(), "")
    } else {
        let start = target.saturating_sub(MAX_QUOTE / 2);
        (
            start,
            (start + MAX_QUOTE).min(chars.len()),
            if start > 0 { "..." } else { "" },
        )
    };
    let suffix = if end < chars.len() { "..." } else { "" };
    let quoted: String = chars[start..end].iter().collect();
    let padding: String = std::iter::repeat_n(' ', prefix.len())
        .chain(
            chars[start..target]
                .iter()
                .map(|&c| if c == '\t' { '\t' } else { ' ' }),
        )
        .collect();
    (format!("{prefix}{quoted}{suffix}"), padding)
}

/// Every report as one JSON document:
/// `{"files":[{"file","valid","ok","summary","errors":[..],"warnings":[..]}]}`, where `ok`
/// is the verdict (with `strict` applied) and each finding is
/// `{"severity","line","column","field","message","hint"}` (`null` where unknown).
pub fn json(reports: &[FileReport], strict: bool) -> Value {
    let files: Vec<Value> = reports
        .iter()
        .map(|report| {
            json!({
                "file": report.file,
                "valid": report.valid(),
                "ok": report.passes(strict),
                "summary": report.summary(),
                "errors": report.errors.iter().map(finding_json).collect::<Vec<_>>(),
                "warnings": report.warnings.iter().map(finding_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "files": files })
}

fn finding_json(finding: &Finding) -> Value {
    json!({
        "severity": finding.severity.as_str(),
        "line": finding.line,
        "column": finding.column,
        "field": finding.field,
        "message": finding.message,
        "hint": finding.hint,
    })
}

/// `rows` under `header` in columns as wide as their widest cell, two spaces apart, each line
/// without trailing blanks.
pub fn columns<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.map(str::to_owned);
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Severity;

    fn finding(line: Option<u32>, column: Option<u32>, hint: Option<&str>) -> Finding {
        Finding {
            severity: Severity::Error,
            line,
            column,
            field: "backends[0].wieght".into(),
            message: "unknown field \"wieght\"".into(),
            hint: hint.map(Into::into),
        }
    }

    #[test]
    fn caret_under_the_column() {
        let source = "backends:\n  - address: 127.0.0.1:8001\n    wieght: 2\n";
        let got = finding_text(
            "lb.yaml",
            &finding(Some(3), Some(5), Some("did you mean \"weight\"?")),
            Some(source),
        );
        assert_eq!(
            got,
            "lb.yaml:3:5: error: backends[0].wieght: unknown field \"wieght\"\n \
             3 |     wieght: 2\n   |     ^\n   = hint: did you mean \"weight\"?\n"
        );
    }

    #[test]
    fn gutter_widens_with_the_line_number() {
        let source = format!("{}x: 1\n", "\n".repeat(11));
        let got = finding_text("lb.yaml", &finding(Some(12), Some(1), None), Some(&source));
        assert!(got.ends_with(" 12 | x: 1\n    | ^\n"), "{got}");
    }

    #[test]
    fn no_position_no_quote() {
        let got = finding_text("lb.yaml", &finding(None, None, Some("fix")), Some("a: 1\n"));
        assert_eq!(
            got,
            "lb.yaml: error: backends[0].wieght: unknown field \"wieght\"\n   = hint: fix\n"
        );
        // A line past the end of the text (or no text) is not quoted either.
        let got = finding_text("lb.yaml", &finding(Some(9), Some(1), None), Some("a: 1\n"));
        assert_eq!(got.lines().count(), 1);
        let got = finding_text("lb.yaml", &finding(Some(1), Some(1), None), None);
        assert_eq!(got.lines().count(), 1);
    }

    #[test]
    fn caret_keeps_tabs_and_clamps() {
        assert_eq!(caret_line("\tab: 1", 2), ("\tab: 1".into(), "\t".into()));
        assert_eq!(caret_line("ab", 40), ("ab".into(), "  ".into()));
        assert_eq!(caret_line("ab\r", 0), ("ab".into(), "".into()));
    }

    #[test]
    fn long_lines_are_cut_around_the_column() {
        let line = format!("{}X{}", "a".repeat(500), "b".repeat(500));
        let (quoted, padding) = caret_line(&line, 501);
        assert!(quoted.starts_with("...") && quoted.ends_with("..."));
        assert_eq!(quoted.chars().nth(padding.chars().count()), Some('X'));
        assert!(quoted.chars().count() <= MAX_QUOTE + 6);
    }

    #[test]
    fn json_has_every_field() {
        let report = FileReport {
            file: "lb.yaml".into(),
            source: None,
            errors: vec![finding(Some(3), Some(5), None)],
            warnings: Vec::new(),
            config: None,
        };
        let value = json(&[report], false);
        assert_eq!(
            value,
            json!({"files": [{
                "file": "lb.yaml", "valid": false, "ok": false, "summary": null,
                "errors": [{"severity": "error", "line": 3, "column": 5,
                    "field": "backends[0].wieght", "message": "unknown field \"wieght\"",
                    "hint": null}],
                "warnings": [],
            }]})
        );
    }
}
