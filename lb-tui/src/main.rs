//! `lb-tui`: wiring only; the dashboard lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lb_observe::admin::{self, AdminClient};

/// Live dashboard of an `lb` daemon, read from its Prometheus metrics endpoint.
///
/// Keys: q/Esc quit, ↑/↓ select a backend, p pause, ? help; with --admin, d drain and e enable
/// the selected backend (y confirms).
#[derive(Debug, Parser)]
#[command(name = "lb-tui", version, about)]
struct Args {
    /// The daemon's metrics URL.
    #[arg(long, value_name = "URL", default_value = lb_observe::scrape::DEFAULT_URL)]
    metrics: String,
    /// Time between scrapes (e.g. 1s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = lb_tui::app::parse_interval)]
    interval: Duration,
    /// The daemon's admin API (e.g. http://127.0.0.1:9091): turns on d (drain) and e (enable).
    #[arg(long = "admin", value_name = "URL", env = admin::URL_ENV)]
    admin: Option<String>,
    /// A file holding the admin API's bearer token; without it, $LB_ADMIN_TOKEN when set.
    #[arg(long, value_name = "PATH", requires = "admin")]
    token_file: Option<PathBuf>,
}

/// Exit status for a command line that cannot work (a bad URL), as clap's usage errors.
const EXIT_USAGE: u8 = 2;

/// The admin client the arguments ask for, if any.
fn admin_client(args: &Args) -> Result<Option<AdminClient>, String> {
    let Some(url) = &args.admin else {
        return Ok(None);
    };
    let token = admin::token::token(
        args.token_file.as_deref(),
        std::env::var_os(admin::TOKEN_ENV),
    )
    .map_err(|e| e.to_string())?;
    // The client's own timeouts (2 s to connect, 5 s in all) bound each call; the calls run on
    // their own thread, so even those never hold up a frame.
    AdminClient::new(url, token)
        .map(Some)
        .map_err(|e| e.to_string())
}

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
    let admin = match admin_client(&args) {
        Ok(admin) => admin,
        Err(error) => {
            eprintln!("lb-tui: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let options = lb_tui::app::Options {
        url: args.metrics,
        interval: args.interval,
    };
    match lb_tui::app::run(&options, scraper, admin) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lb-tui: terminal error: {error}");
            ExitCode::FAILURE
        }
    }
}
