//! `sigstamp preview ADDR [--directory FILE] [--templates DIR]`: the rendered HTML and text
//! signature of one user, as `sigstamp stamp` would insert them.

use super::stamp::{load_directory, load_templates};
use super::CliResult;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The user's address (mail, userPrincipalName or any smtp: proxy address)
    #[arg(value_name = "ADDR")]
    pub address: String,
    /// JSON file of users in Microsoft Graph's user shape
    /// [default: examples/directory.json]
    #[arg(long, value_name = "FILE")]
    pub directory: Option<PathBuf>,
    /// Folder of <name>.html.hbs + <name>.txt.hbs templates [default: the built-in ones]
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let (directory, shown) = load_directory(args.directory.as_deref())?;
    let templates = load_templates(args.templates.as_deref())?;
    let Some(user) = directory.lookup(&args.address) else {
        return Err(format!(
            "{} is not in the directory {shown} ({} users)",
            args.address,
            directory.snapshot().len()
        )
        .into());
    };
    let sig = templates.render("default", &user)?;
    println!("==> HTML (template default)");
    println!("{}", sig.html);
    println!();
    println!("==> Text (template default)");
    print!("{}", sig.text);
    if !sig.images.is_empty() {
        println!();
        println!("==> Images (inline parts beside the HTML)");
        for img in &sig.images {
            let (name, ct, n) = (&img.filename, &img.content_type, img.bytes.len());
            println!("cid:{} {name} {ct} {n} bytes", img.cid);
        }
    }
    Ok(ExitCode::SUCCESS)
}
