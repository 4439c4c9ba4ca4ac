//! `lb-tui`: wiring only; the dashboard lives in the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Live dashboard of an `lb` daemon, read from its Prometheus metrics endpoint.
///
/// Keys: q/Esc quit, ↑/↓ select a backend, p pause, ? help.
#[derive(Debug, Parser)]
#[command(name = "lb-tui", version, about)]
struct Args {
    /// The daemon's metrics URL.
    #[arg(long, value_name = "URL", default_value = lb_observe::scrape::DEFAULT_URL)]
    metrics: String,
    /// Time between scrapes (e.g. 1s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = lb_tui::app::parse_interval)]
    interval: Duration,
}

/// Exit status for a command line that cannot work (a bad URL), as clap's usage errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let scrape = lb_tui::app::scrape_options(args.interval);
    let scraper = match lb_observe::scrape::Scraper::new(&args.metrics, scrape) {
        Ok(scraper) => scraper,
        Err(error) => {
            eprintln!("lb-tui: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let options = lb_tui::app::Options {
        url: args.metrics,
        interval: args.interval,
    };
    match lb_tui::app::run(&options, scraper) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lb-tui: terminal error: {error}");
            ExitCode::FAILURE
        }
    }
}
