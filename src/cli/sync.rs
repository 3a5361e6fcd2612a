//! `sigstamp sync --once --config FILE`: one full Graph sync, the snapshot written, a summary
//! printed. The background sync of `sigstamp serve` uses the same code.

use super::CliResult;
use crate::directory::graph::clock::SystemClock;
use crate::directory::graph::state::describe;
use crate::directory::graph::{sync_once, SyncTarget};
use crate::directory::Directory;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML configuration file (its [graph] and [directory] sections).
    #[arg(long)]
    pub config: PathBuf,
    /// Run one sync and exit (`sigstamp serve` syncs continuously).
    #[arg(long)]
    pub once: bool,
}

pub fn run(args: Args) -> CliResult {
    if !args.once {
        return Err(
            "use `sigstamp sync --once`; `sigstamp serve` keeps the directory in sync".into(),
        );
    }
    super::init_tracing();
    let config = crate::app::load_config(&args.config)?;
    let graph = config
        .graph
        .clone()
        .ok_or("the config has no [graph] section")?;
    let sink = SyncTarget {
        directory: Arc::new(Directory::new()),
        status: Arc::default(),
        metrics: Arc::default(),
        snapshot: config.directory.snapshot.clone(),
        clock: Arc::new(SystemClock),
    };
    // Delta pages carry no total, so a spinner with counts; hidden when stderr is no terminal.
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(sync_once(&graph, &sink, &mut |p| {
        bar.set_message(format!("{} pages, {} users", p.pages, p.entries));
    }));
    bar.finish_and_clear();
    match result {
        Ok((report, written)) => {
            println!(
                "synced {} users from Microsoft Graph: {} pages in {:.1?}",
                report.users, report.pages, report.duration
            );
            match (written, &sink.snapshot) {
                (Ok(()), Some(p)) => println!("snapshot written to {}", p.display()),
                (Ok(()), None) => println!("no [directory] snapshot configured; nothing written"),
                (Err(e), _) => {
                    eprintln!("sigstamp sync: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let st = describe(&e, time::OffsetDateTime::now_utc());
            eprintln!("sigstamp sync: failed: {e}");
            let code = st.error_code.as_deref().unwrap_or("-");
            eprintln!("token state: {:?} ({code}): {}", st.state, st.description);
            Ok(ExitCode::FAILURE)
        }
    }
}
