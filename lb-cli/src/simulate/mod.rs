//! `lb-cli simulate`: a thin front end to `lb_core::simulate`.
//!
//! It reads the configuration(s) through the same pipeline as `check` and the scenario
//! through lb-core's scenario parser (errors are shown like `check`'s, with the source line
//! and a caret), reads the clock once for the simulation's time zero, runs each
//! configuration on the same scenario and seed, and renders the report as text or JSON.
//!
//! # Layout
//! - [`text`]: the readable report, alone or side by side.
//! - [`chart`]: one-line terminal charts of the timeline.
//! - [`compare`]: the figures of two runs and their differences.

pub mod chart;
pub mod compare;
pub mod text;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lb_core::config::Config;
use lb_core::simulate::{Report, Scenario, parse_scenario_bytes};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use crate::check::{self, Finding};
use crate::cli::{EXIT_FAILED, EXIT_OK};
use crate::render;
use text::{Run, Setting};

/// Output of `simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimulateFormat {
    /// A readable report with small charts.
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// What `simulate` was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// The configuration to simulate.
    pub config: PathBuf,
    /// The scenario file.
    pub scenario: PathBuf,
    /// A second configuration to run on the same scenario and seed.
    pub against: Option<PathBuf>,
    /// The seed; the scenario's `seed` when absent.
    pub seed: Option<u64>,
    /// Text or JSON.
    pub format: SimulateFormat,
}

/// Runs the simulation(s) and writes the report to `out`; problems go to `err`. Returns the
/// exit code.
pub fn run(request: &Request, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let Some(config) = load_config(&request.config, err) else {
        return EXIT_FAILED;
    };
    let against = match &request.against {
        Some(path) => match load_config(path, err) {
            Some(config) => Some(config),
            None => return EXIT_FAILED,
        },
        None => None,
    };
    let Some(scenario) = load_scenario(&request.scenario, err) else {
        return EXIT_FAILED;
    };
    let seed = request.seed.unwrap_or(scenario.scenario.seed);
    // The one clock read: time zero of the virtual clock. Nothing depends on its value.
    let base = Instant::now();
    let mut reports = Vec::new();
    for (path, config) in std::iter::once((&request.config, &config))
        .chain(request.against.as_ref().zip(against.as_ref()))
    {
        match simulate(config, &scenario, path, base, seed, err) {
            Some(report) => reports.push((path.display().to_string(), report)),
            None => return EXIT_FAILED,
        }
    }
    let setting = Setting {
        path: &scenario.file,
        scenario: &scenario.scenario,
        seed,
    };
    let runs: Vec<Run<'_>> = reports
        .iter()
        .map(|(config, report)| Run { config, report })
        .collect();
    // A closed pipe is not a failed simulation: write errors are ignored.
    let _ = match (request.format, runs.as_slice()) {
        (SimulateFormat::Text, [one]) => out.write_all(text::single(one, &setting).as_bytes()),
        (SimulateFormat::Text, [a, b, ..]) => {
            out.write_all(text::side_by_side(a, b, &setting).as_bytes())
        }
        (SimulateFormat::Json, runs) => writeln!(out, "{:#}", to_json(runs, &setting)),
        (SimulateFormat::Text, []) => Ok(()),
    };
    EXIT_OK
}

/// The JSON document: the scenario, the seed, each run's configuration and report, and with
/// two runs their differences.
pub fn to_json(runs: &[Run<'_>], setting: &Setting<'_>) -> serde_json::Value {
    let each: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| json!({ "config": run.config, "report": run.report }))
        .collect();
    let mut document = json!({
        "scenario": setting.path,
        "seed": setting.seed,
        "runs": each,
    });
    if let [a, b, ..] = runs {
        document["differences"] = json!({
            "clients": compare::clients(a.report, b.report),
            "backends": compare::backends(a.report, b.report),
        });
    }
    document
}

fn load_config(path: &Path, err: &mut dyn Write) -> Option<Config> {
    let report = check::check_path(path);
    if report.config.is_none() {
        let _ = err.write_all(render::text(&report, false).as_bytes());
    }
    report.config
}

/// A scenario with what its error messages need: its text and its name.
struct Loaded {
    scenario: Scenario,
    source: Option<String>,
    file: String,
}

/// The scenario, or its errors written to `err`.
fn load_scenario(path: &Path, err: &mut dyn Write) -> Option<Loaded> {
    let file = path.display().to_string();
    let bytes = match check::read(path) {
        Ok(bytes) => bytes,
        Err(finding) => {
            let _ = err.write_all(render::finding_text(&file, &finding, None).as_bytes());
            return None;
        }
    };
    let source = std::str::from_utf8(&bytes).ok().map(str::to_owned);
    match parse_scenario_bytes(&bytes, path) {
        Ok(scenario) => Some(Loaded {
            scenario,
            source,
            file,
        }),
        Err(errors) => {
            for error in &errors {
                let finding = Finding::from(error);
                let _ = err
                    .write_all(render::finding_text(&file, &finding, source.as_deref()).as_bytes());
            }
            let _ = writeln!(err, "{file}: invalid scenario, {}", count(errors.len()));
            None
        }
    }
}

fn count(n: usize) -> String {
    format!("{n} error{}", if n == 1 { "" } else { "s" })
}

/// One run; a scenario that names backends the configuration lacks is reported at the
/// scenario's lines.
fn simulate(
    config: &Config,
    loaded: &Loaded,
    config_path: &Path,
    base: Instant,
    seed: u64,
    err: &mut dyn Write,
) -> Option<Report> {
    let Loaded {
        scenario,
        source,
        file,
    } = loaded;
    if let Err(errors) = scenario.check_against(config.backends.iter().map(|b| b.name.as_str())) {
        for error in &errors {
            let finding = Finding::from(error);
            let _ =
                err.write_all(render::finding_text(file, &finding, source.as_deref()).as_bytes());
        }
        let _ = writeln!(
            err,
            "{file}: does not fit {}, {}",
            config_path.display(),
            count(errors.len())
        );
        return None;
    }
    match lb_core::simulate::run(config, scenario, base, &mut StdRng::seed_from_u64(seed)) {
        Ok(report) => Some(report),
        Err(error) => {
            let _ = writeln!(err, "{}: error: {error}", config_path.display());
            None
        }
    }
}
