//! `sigstamp serve --config FILE`: the relay, the milter, the admin HTTP and the directory
//! refresher in one process. (TODO: wiring)

use super::CliResult;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML configuration file.
    #[arg(long)]
    pub config: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let _ = args;
    Err("sigstamp serve: not implemented yet".into())
}
