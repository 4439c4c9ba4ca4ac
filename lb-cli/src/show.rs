//! The effective configuration, every default filled in, in either file format.
//!
//! The output is meant to be saved and used: it parses back to an equal [`Config`].

use lb_core::config::Config;

/// The format `show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    /// YAML, the reference format.
    Yaml,
    /// Pretty-printed JSON.
    Json,
}

/// `config` as text in `format`, ending with a newline.
///
/// # Errors
///
/// The serializer's message; the model has only strings, numbers, booleans and lists, so
/// this does not happen in practice.
pub fn render(config: &Config, format: ShowFormat) -> Result<String, String> {
    let mut text = match format {
        ShowFormat::Yaml => serde_saphyr::to_string(config).map_err(|e| e.to_string())?,
        ShowFormat::Json => serde_json::to_string_pretty(config).map_err(|e| e.to_string())?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::config::{Format, parse};

    const REFERENCE: &str = include_str!("../../config/config.yaml");
    const WEIGHTED: &str = include_str!("../../config/examples/weighted.json");

    #[test]
    fn output_parses_back_to_an_equal_config() {
        for (text, format) in [(REFERENCE, Format::Yaml), (WEIGHTED, Format::Json)] {
            let config = parse(text, format, "in").expect("fixture is valid");
            for (show, read) in [
                (ShowFormat::Yaml, Format::Yaml),
                (ShowFormat::Json, Format::Json),
            ] {
                let shown = render(&config, show).expect("serializes");
                let again = parse(&shown, read, "out")
                    .unwrap_or_else(|e| panic!("{show:?} output does not parse: {e}\n{shown}"));
                assert_eq!(again, config, "{show:?}:\n{shown}");
            }
        }
    }

    #[test]
    fn defaults_are_spelled_out() {
        let config = parse(
            "backends:\n  - address: 127.0.0.1:8001\n",
            Format::Yaml,
            "in",
        )
        .expect("valid");
        let shown = render(&config, ShowFormat::Yaml).expect("serializes");
        for needle in [
            "request_timeout: 30s",
            "algorithm: round_robin",
            "name: 127.0.0.1:8001",
        ] {
            assert!(shown.contains(needle), "{needle} missing from\n{shown}");
        }
    }
}
