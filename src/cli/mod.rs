//! Command-line interface. Each subcommand lives in its own file.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod attributes;
pub mod check;
pub mod demo;
pub mod login;
pub mod preview;
pub mod serve;
pub mod stamp;
pub mod sync;
mod systemd;

/// Errors a command reports before exiting non-zero (usage or configuration).
pub type CliResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser, Debug)]
#[command(
    name = "sigstamp",
    version,
    about = "Stamps company email signatures onto outgoing mail"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stamp one message (FILE or stdin) and write it to stdout.
    Stamp(stamp::Args),
    /// Print the rendered HTML and text signature of one user.
    Preview(preview::Args),
    /// Check a configuration file: keys, files, templates, rules, certificates, permissions.
    Check(check::Args),
    /// Run the SMTP relay, milter and admin HTTP from a config file.
    Serve(serve::Args),
    /// Run the relay on the embedded sample data and send one message through it.
    Demo(demo::Args),
    /// Synchronise the directory from Microsoft Graph.
    Sync(sync::Args),
    /// Obtain a delegated refresh token with the device-code flow.
    Login(login::Args),
    /// Manage local attribute overrides and custom attributes.
    Attributes(attributes::Args),
}

pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Stamp(a) => stamp::run(a),
        Command::Preview(a) => preview::run(a),
        Command::Check(a) => check::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Sync(a) => sync::run(a),
        Command::Login(a) => login::run(a),
        Command::Attributes(a) => attributes::run(a),
    }
}

/// Initialise logging once: `RUST_LOG` wins, else `info`.
pub fn init_tracing() {
    init_tracing_as(crate::config::LogFormat::Text);
}

/// [`init_tracing`] in `[log] format`.
pub fn init_tracing_as(format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into journald or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::config::LogFormat::Text => builder.with_ansi(ansi).try_init(),
        // Fields at the top level, so `jq 'select(.message == "message")'` works.
        crate::config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
