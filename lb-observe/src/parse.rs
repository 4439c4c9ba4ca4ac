//! A parser for the Prometheus text exposition format 0.0.4: what the daemon's `/metrics` serves.
//!
//! Our own, about a hundred lines, rather than the `prometheus-parse` crate: that crate splits
//! label sets on every `,` and `=` (a backend named `a,b` or `x=y` would come apart), ignores
//! escapes in label values, files `lb_requests_total` under "untyped" because its `# TYPE` line
//! names `lb_requests`, and brings `regex` and `chrono` along. We need only samples: a name, its
//! labels and a value. `# HELP`, `# TYPE` and `# EOF` lines are skipped; anything else that is not
//! a sample is an error, so that an HTML error page is reported as garbage rather than read as
//! zero backends.

use thiserror::Error;

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name, such as `lb_requests_total` or `lb_request_duration_seconds_bucket`.
    pub name: String,
    /// Labels in the order they appear.
    pub labels: Vec<(String, String)>,
    /// The value; `+Inf`, `-Inf` and `NaN` are accepted.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of one scrape, in exposition order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// The samples named exactly `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.name == name)
    }

    /// The value of the unlabelled series `name` (the first one if it has labels).
    pub fn value(&self, name: &str) -> Option<f64> {
        self.named(name).next().map(|s| s.value)
    }
}

/// Why a scrape's text is not the Prometheus text format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

/// Parses a whole exposition.
///
/// # Errors
/// [`ParseError`] at the first line that is neither a comment, blank, nor a well-formed sample.
pub fn parse(text: &str) -> Result<Samples, ParseError> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line).map_err(|message| ParseError {
            line: index + 1,
            message,
        })?;
        samples.push(sample);
    }
    Ok(Samples(samples))
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("expected a metric name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("expected a value after the series")?;
    let value = parse_value(value).ok_or_else(|| format!("`{value}` is not a number"))?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("`{timestamp}` is not a timestamp"))?;
    }
    if fields.next().is_some() {
        return Err("unexpected text after the value".to_owned());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

type Labels = Vec<(String, String)>;

/// Parses `k="v",...}` (the opening brace already consumed); returns the labels and the rest.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("expected `label=\"value\"`")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{key}` is not a label name"));
        }
        s = s[eq + 1..].trim_start();
        let body = s.strip_prefix('"').ok_or("expected a quoted label value")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err("unterminated label value".to_owned()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape in label value".to_owned()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        s = body[close + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected `,` or `}` after a label".to_owned());
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_daemons_real_output() {
        let samples = parse(include_str!("../tests/fixtures/scrape2.txt")).unwrap();
        let ok = samples
            .named("lb_requests_total")
            .find(|s| s.label("backend") == Some("demo-2") && s.label("status") == Some("200"))
            .unwrap();
        assert_eq!(ok.value, 28.0);
        assert_eq!(ok.label("method"), Some("GET"));
        let inf = samples
            .named("lb_request_duration_seconds_bucket")
            .find(|s| s.label("le") == Some("+Inf") && s.label("backend") == Some("demo-1"))
            .unwrap();
        assert_eq!(inf.value, 31.0);
        assert_eq!(samples.value("lb_no_backend_total"), Some(0.0));
    }

    #[test]
    fn label_values_keep_commas_equals_and_escapes() {
        let samples = parse("m{a=\"x,y=z\",b=\"q\\\"\\\\\\n\"} 1 1700000000\n").unwrap();
        assert_eq!(samples.0[0].label("a"), Some("x,y=z"));
        assert_eq!(samples.0[0].label("b"), Some("q\"\\\n"));
    }

    #[test]
    fn special_values_and_comments() {
        let samples = parse("# HELP m x\n# TYPE m gauge\nm +Inf\nn{} NaN\n\n# EOF\n").unwrap();
        assert_eq!(samples.0[0].value, f64::INFINITY);
        assert!(samples.0[1].value.is_nan());
    }

    #[test]
    fn garbage_is_an_error_with_its_line() {
        let cases = [
            ("<html>oops</html>", 1),
            ("m 1\nm{a=\"b\" 2", 2),
            ("m{a=b} 1", 1),
            ("m one", 1),
            ("m 1 2 3", 1),
            ("m{a=\"\\x\"} 1", 1),
            ("m{a=\"open} 1", 1),
            ("m", 1),
            ("{a=\"b\"} 1", 1),
        ];
        for (text, line) in cases {
            let error = parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text}: {error}");
        }
    }
}
