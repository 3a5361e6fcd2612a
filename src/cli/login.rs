//! `sigstamp login --config FILE`: the device-code flow for a delegated refresh token,
//! stored (mode 0600) in `graph.refresh_token_file`. Run it again when `/status` says the
//! refresh token was revoked or expired; the running service picks the new one up.

use super::CliResult;
use crate::directory::graph::clock::SystemClock;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML configuration file (its [graph] section).
    #[arg(long)]
    pub config: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    super::init_tracing();
    let config = crate::app::load_config(&args.config)?;
    let graph = config.graph.ok_or("the config has no [graph] section")?;
    let store = graph
        .refresh_token_file
        .clone()
        .ok_or("set graph.refresh_token_file: where `sigstamp login` stores the refresh token")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let provider = graph.token_provider(graph.http_client()?, Arc::new(SystemClock));
    rt.block_on(async {
        let dc = provider
            .device_code_start(&graph.authority, &graph.tenant_id)
            .await?;
        if dc.message.is_empty() {
            println!(
                "To sign in, open {} and enter the code {}",
                dc.verification_uri, dc.user_code
            );
        } else {
            println!("{}", dc.message);
        }
        provider.device_code_finish(&dc, &store).await
    })?;
    println!(
        "Signed in. The refresh token is stored in {} (mode 0600).",
        store.display()
    );
    Ok(ExitCode::SUCCESS)
}
