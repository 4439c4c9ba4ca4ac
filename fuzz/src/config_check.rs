//! Config parsing: any bytes, as YAML and as JSON, give a `Config` or located errors, never a
//! panic; a `Config` that parses serializes to JSON that parses back to the same `Config`
//! (what `lb-cli show` relies on).

use std::path::Path;

use lb_core::config::parse_bytes;

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    for origin in ["fuzz.yaml", "fuzz.json"] {
        match parse_bytes(data, Path::new(origin)) {
            Ok(config) => {
                let json = serde_json::to_string(&config).expect("a Config serializes");
                let again = parse_bytes(json.as_bytes(), Path::new("again.json"))
                    .unwrap_or_else(|errors| panic!("round trip failed: {errors}\n{json}"));
                assert_eq!(config, again, "round trip changed the config\n{json}");
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "an error result with no error");
                for error in &errors {
                    assert!(!error.to_string().is_empty());
                }
            }
        }
    }
}
