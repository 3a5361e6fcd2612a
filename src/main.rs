#![forbid(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = sigstamp::cli::Cli::parse();
    match sigstamp::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sigstamp: {err:#}");
            ExitCode::from(2)
        }
    }
}
