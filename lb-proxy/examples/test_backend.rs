//! `cargo run --example test_backend -- 8001`: the test backend, from the workspace root, as the
//! guide this project implements starts its backends (`test-backend --help` lists the flags).

fn main() -> std::process::ExitCode {
    test_backend::cli::main()
}
