//! `sigstamp stamp [--config FILE | --directory FILE --templates DIR] [--sender ADDR]
//! [--to ADDR]… [FILE]`
//!
//! Stamps one stored message through the same [`Stamper`] the relay and milter use; with
//! `--config`, the very one `sigstamp serve` builds from that file (rules, image modes,
//! overrides, directory file or last Graph snapshot; Graph itself is not called). The message
//! goes to stdout byte-exact, stamped or unchanged; the outcome, and which rule chose, go to
//! stderr. Both outcomes exit 0: only usage and configuration errors are failures.

use super::CliResult;
use crate::directory::photo::{NoPhotos, PhotoSource};
use crate::directory::{file, Directory, Source};
use crate::metrics::Metrics;
use crate::pipeline::{Envelope, Stamper, Verdict};
use crate::render::Templates;
use crate::status::Status;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The sample directory, used when `--directory` is absent.
pub const DEFAULT_DIRECTORY: &str = "examples/directory.json";
/// A copy compiled in, so the defaults also work outside a checkout.
const EMBEDDED_DIRECTORY: &[u8] = include_bytes!("../../examples/directory.json");

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `sigstamp serve` configuration to stamp with: its directory, overrides,
    /// templates, image modes, rules and [stamp] options
    #[arg(long, value_name = "FILE", conflicts_with_all = ["directory", "templates"])]
    pub config: Option<PathBuf>,
    /// JSON file of users in Microsoft Graph's user shape
    /// [default: examples/directory.json]
    #[arg(long, value_name = "FILE")]
    pub directory: Option<PathBuf>,
    /// Folder of <name>.html.hbs + <name>.txt.hbs templates [default: the built-in ones]
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Stamp as this sender instead of the From header's address
    #[arg(long, value_name = "ADDR")]
    pub sender: Option<String>,
    /// An envelope recipient (repeatable), for rules by recipients [default: external]
    #[arg(long = "to", value_name = "ADDR")]
    pub to: Vec<String>,
    /// The message to stamp (RFC 5322, as on the wire) [default: stdin]
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    if let Some(s) = &args.sender {
        if !s.contains('@') {
            return Err(format!("--sender {s:?} is not an email address").into());
        }
    }
    let stamper = match &args.config {
        Some(path) => stamper_from_config(path)?,
        None => {
            let (directory, _) = load_directory(args.directory.as_deref())?;
            let templates = load_templates(args.templates.as_deref())?;
            Stamper::new(directory, templates)
        }
    };
    let raw = read_message(args.file.as_deref())?;
    let env = Envelope {
        mail_from: None,
        rcpt_to: &args.to,
    };
    let part = stamper.process_part(&raw, &env, args.sender.as_deref());
    let (out, outcome) = match &part.verdict {
        Verdict::Stamped {
            message,
            sender,
            template,
            ..
        } => (
            message.as_slice(),
            format!("stamped: sender {sender}, template {template}"),
        ),
        Verdict::Unchanged(why) => (
            raw.as_slice(),
            format!("unchanged ({}): {why}", why.label()),
        ),
    };
    let outcome = format!("{outcome}; {}", chosen_by(&stamper, part.rule.as_deref()));
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write the message to stdout: {e}"))?;
    eprintln!("sigstamp: {outcome}");
    Ok(ExitCode::SUCCESS)
}

/// Which rule chose, for people: "rule sales (#2) chose", "no rule matched: the default".
pub(super) fn chosen_by(stamper: &Stamper, rule: Option<&str>) -> String {
    match rule {
        Some(r) => format!("chosen by rule {r}"),
        None if stamper.rules().is_empty() => "no rules: the default template".into(),
        None => format!(
            "no rule matched: the default template {}",
            stamper.default_template()
        ),
    }
}

/// The stamper `sigstamp serve --config FILE` would run, without calling Graph: the
/// directory file, the last Graph snapshot and cached memberships and photos, overrides.
pub(super) fn stamper_from_config(path: &Path) -> Result<Stamper, String> {
    let config = crate::app::load_config(path).map_err(|e| e.to_string())?;
    let directory = super::serve::build_directory(&config, &Metrics::new(), &Status::default())
        .map_err(|e| format!("{e:#}"))?;
    let photos: Arc<dyn PhotoSource> = match crate::directory::graph::photos::open(
        config.graph.as_ref(),
        config.directory.snapshot.as_deref(),
    )
    .map_err(|e| e.to_string())?
    {
        Some(store) => store,
        None => Arc::new(NoPhotos),
    };
    super::serve::build_stamper(&config, directory, photos).map_err(|e| format!("{e:#}"))
}

fn read_message(path: Option<&Path>) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    match path {
        Some(p) if p != Path::new("-") => {
            raw = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
        }
        _ => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut raw)
                .map_err(|e| format!("cannot read the message from stdin: {e}"))?;
        }
    }
    Ok(raw)
}

/// The directory from `path`, else `examples/directory.json` (from the working directory if
/// there, else the copy built in). Returns it with a name to show in messages.
pub(super) fn load_directory(path: Option<&Path>) -> Result<(Arc<Directory>, String), String> {
    let default = Path::new(DEFAULT_DIRECTORY);
    let (users, shown) = match path {
        Some(p) => (
            file::load(p).map_err(|e| e.to_string())?,
            p.display().to_string(),
        ),
        None if default.is_file() => (
            file::load(default).map_err(|e| e.to_string())?,
            DEFAULT_DIRECTORY.to_string(),
        ),
        None => (
            file::parse(EMBEDDED_DIRECTORY).expect("the built-in sample directory is valid"),
            format!("{DEFAULT_DIRECTORY} (built in)"),
        ),
    };
    let directory = Directory::new();
    directory.replace_users(users, Source::File);
    Ok((Arc::new(directory), shown))
}

/// Templates from `dir` (which must hold the `default` pair), else the built-in ones.
pub(super) fn load_templates(dir: Option<&Path>) -> Result<Templates, String> {
    let Some(dir) = dir else {
        return Ok(Templates::embedded());
    };
    let t = Templates::load(dir).map_err(|e| e.to_string())?;
    if !t.has("default") {
        let found: Vec<&str> = t.names().collect();
        return Err(format!(
            "no default template in {}: add default.html.hbs and default.txt.hbs (found: {})",
            dir.display(),
            found.join(", ")
        ));
    }
    Ok(t)
}
