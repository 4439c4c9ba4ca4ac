//! `test-backend`: serves the test backend on one or more ports until Ctrl-C
//! ([`test_backend::cli`]).

fn main() -> std::process::ExitCode {
    test_backend::cli::main()
}
