//! `sigstamp preview ADDR [--config FILE | --directory FILE --templates DIR] [--reply]
//! [--to ADDR]`: the rendered HTML and text signature of one user, as `sigstamp stamp` would
//! insert them. With `--config`, the rules of that file choose the template (for a new message
//! or, with `--reply`, a reply; to `--to`'s kind of recipient, external by default), and
//! stderr says which rule chose.

use super::stamp::{chosen_by, load_directory, load_templates, stamper_from_config};
use super::CliResult;
use crate::pipeline::Stamper;
use crate::rules::MessageKind;
use crate::stamp::Signature;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The user's address (mail, userPrincipalName or any smtp: proxy address)
    #[arg(value_name = "ADDR")]
    pub address: String,
    /// The `sigstamp serve` configuration: its directory, templates, image modes and rules
    #[arg(long, value_name = "FILE", conflicts_with_all = ["directory", "templates"])]
    pub config: Option<PathBuf>,
    /// JSON file of users in Microsoft Graph's user shape
    /// [default: examples/directory.json]
    #[arg(long, value_name = "FILE")]
    pub directory: Option<PathBuf>,
    /// Folder of <name>.html.hbs + <name>.txt.hbs templates [default: the built-in ones]
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// The signature of a reply rather than of a new message
    #[arg(long)]
    pub reply: bool,
    /// A recipient: the rules for its kind (internal or external) apply [default: external]
    #[arg(long = "to", value_name = "ADDR")]
    pub to: Option<String>,
}

pub fn run(args: Args) -> CliResult {
    let (stamper, shown) = match &args.config {
        Some(path) => (stamper_from_config(path)?, path.display().to_string()),
        None => {
            let (directory, shown) = load_directory(args.directory.as_deref())?;
            let templates = load_templates(args.templates.as_deref())?;
            (Stamper::new(directory, templates), shown)
        }
    };
    let rules = stamper.rules();
    let audience = match &args.to {
        Some(to) => rules.audience_of(to),
        None => crate::rules::Audience::External,
    };
    let kind = if args.reply {
        MessageKind::Reply
    } else {
        MessageKind::New
    };
    let Some(p) = stamper.preview_for(&args.address, audience, kind) else {
        return Err(format!(
            "{} is not in the directory of {shown} ({} users)",
            args.address,
            stamper.directory.snapshot().len()
        )
        .into());
    };
    let why = chosen_by(&stamper, p.rule.as_deref());
    let Some(template) = &p.template else {
        eprintln!(
            "sigstamp: no signature ({why}) for a {} message to {} recipients",
            kind.as_str(),
            audience.as_str()
        );
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!(
        "sigstamp: template {template} ({why}) for a {} message to {} recipients",
        kind.as_str(),
        audience.as_str()
    );
    let Some(sig) = &p.signature else {
        let e = p.error.as_deref().unwrap_or("no signature");
        return Err(format!("template {template} failed for {}: {e}", p.sender).into());
    };
    print_signature(sig, &format!("template {template}"));
    if let Some(b) = &p.bottom {
        println!();
        print_signature(b, &format!("template {template}, bottom part"));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_signature(sig: &Signature, what: &str) {
    println!("==> HTML ({what})");
    println!("{}", sig.html);
    println!();
    println!("==> Text ({what})");
    print!("{}", sig.text);
    if !sig.images.is_empty() {
        println!();
        println!("==> Images (inline parts beside the HTML)");
        for img in &sig.images {
            let (name, ct, n) = (&img.filename, &img.content_type, img.bytes.len());
            println!("cid:{} {name} {ct} {n} bytes", img.cid);
        }
    }
}
