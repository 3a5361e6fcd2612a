//! `sigstamp attributes set|unset|list|import`: edit the local overrides file.
//!
//! The file is named by `--overrides FILE`, or by `[directory] overrides` in `--config FILE`.
//! Every change is written atomically; a running `sigstamp serve` picks it up within 2 s.

use super::CliResult;
use crate::directory::overrides::{self, Overrides};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// sigstamp config file; its `[directory] overrides` names the overrides file
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The overrides file itself (instead of --config)
    #[arg(long, value_name = "FILE", global = true)]
    pub overrides: Option<PathBuf>,
    #[command(subcommand)]
    pub action: AttributesCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AttributesCommand {
    /// Set an attribute of one user (overrides the directory's value, or adds a custom one)
    Set {
        #[arg(value_name = "ADDR")]
        address: String,
        #[arg(value_name = "ATTR")]
        attribute: String,
        #[arg(value_name = "VALUE", allow_hyphen_values = true)]
        value: String,
    },
    /// Remove an override: the directory's value applies again
    Unset {
        #[arg(value_name = "ADDR")]
        address: String,
        #[arg(value_name = "ATTR")]
        attribute: String,
    },
    /// Print the overrides (of one address) as CSV: address,attribute,value
    List {
        #[arg(value_name = "ADDR")]
        address: Option<String>,
    },
    /// Apply a CSV file of address,attribute,value rows (blank value = unset), all or nothing
    Import {
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
    },
}

pub fn run(args: Args) -> CliResult {
    let path = overrides_path(args.config.as_deref(), args.overrides.as_deref())?;
    // Edits hold the lock from read to save, so concurrent edits are all kept.
    let _lock = match args.action {
        AttributesCommand::List { .. } => None,
        _ => Some(overrides::lock_for_edit(&path)?),
    };
    let mut ov = overrides::load(&path)?;
    match args.action {
        AttributesCommand::Set {
            address,
            attribute,
            value,
        } => {
            ov.set(&address, &attribute, &value)?;
            overrides::save(&path, &ov)?;
            eprintln!("sigstamp: {address} {attribute} set in {}", path.display());
        }
        AttributesCommand::Unset { address, attribute } => {
            let had = ov.unset(&address, &attribute)?;
            if had {
                overrides::save(&path, &ov)?;
                eprintln!(
                    "sigstamp: {address} {attribute} unset in {}",
                    path.display()
                );
            } else {
                eprintln!("sigstamp: {address} has no override of {attribute}; nothing to do");
            }
        }
        AttributesCommand::List { address } => list(&ov, address.as_deref()),
        AttributesCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let rows =
                overrides::parse_csv(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let summary = ov
                .import(&rows)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            overrides::save(&path, &ov)?;
            eprintln!(
                "sigstamp: imported {} rows from {} ({} set, {} unset) into {}",
                rows.len(),
                file.display(),
                summary.set,
                summary.unset,
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The overrides file from `--overrides`, else from the config's `[directory] overrides`.
fn overrides_path(config: Option<&Path>, direct: Option<&Path>) -> Result<PathBuf, String> {
    match (config, direct) {
        (Some(_), Some(_)) => Err("give either --config or --overrides, not both".into()),
        (None, Some(p)) => Ok(p.to_path_buf()),
        (Some(c), None) => {
            let cfg = crate::app::load_config(c).map_err(|e| e.to_string())?;
            cfg.directory.overrides.ok_or_else(|| {
                format!(
                    "{} has no `overrides` key in [directory]; add one \
                     (e.g. overrides = \"state/overrides.json\") or pass --overrides FILE",
                    c.display()
                )
            })
        }
        (None, None) => Err(
            "no overrides file: pass --overrides FILE, or --config FILE whose [directory] \
             section sets `overrides`"
                .into(),
        ),
    }
}

/// CSV out, so a listing can be edited and imported again.
fn list(ov: &Overrides, address: Option<&str>) {
    print!("{}", overrides::write_csv(ov, address));
}
