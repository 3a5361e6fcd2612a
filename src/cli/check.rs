//! `sigstamp check --config FILE [--online]`: one line per finding (`error: KEY: …` or
//! `warning: KEY: …`), `ok` when there is none; exit 1 on any error. Runs without the
//! server (systemd's `ExecStartPre`) and starts nothing.

use super::CliResult;
use crate::check;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Also connect to the next hop (EHLO, STARTTLS as configured) and get a Graph token.
    #[arg(long)]
    pub online: bool,
}

pub fn run(args: Args) -> CliResult {
    let mut report = check::check_file(&args.config);
    if args.online {
        if let Some(m) = &report.material {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let online = runtime.block_on(check::check_online(&m.config));
            report.findings.extend(online);
        }
    }
    for f in &report.findings {
        println!("{f}");
    }
    if report.findings.is_empty() {
        println!("ok");
    }
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
