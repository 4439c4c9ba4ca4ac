//! `lb-cli`: wiring only; the commands live in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lb_cli::Cli::parse();
    let code = lb_cli::run(
        cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
