//! `sigstamp login` (not yet implemented).

use super::CliResult;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> CliResult {
    Err("sigstamp login: not implemented yet".into())
}
