//! `sigstamp demo`: the relay on loopback with the sample directory and templates, an
//! in-process sink as its next hop, and one sample message sent through it over real SMTP.
//! The delivered message is written to a file. Works from a fresh clone with no arguments.

use super::CliResult;
use crate::directory::{self, Directory, Source, User};
use crate::metrics::Metrics;
use crate::pipeline::{Envelope, Stamper, Verdict};
use crate::render::Templates;
use crate::smtp::outbound::{Delivery, DeliveryError, NextHop};
use crate::smtp::sink::{Sink, SinkOptions};
use crate::smtp::{NextHopTls, Relay, SmtpConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory file (default: examples/directory.json).
    #[arg(long)]
    pub directory: Option<PathBuf>,
    /// Templates directory (default: the embedded templates).
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// Message to send (default: examples/reply-gmail.eml).
    #[arg(long)]
    pub message: Option<PathBuf>,
    /// Where to write the delivered message (default: sigstamp-demo/delivered.eml in the
    /// system temp directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Used only when the repository's `examples/` is not at hand (binary run elsewhere).
const FALLBACK_DIRECTORY: &str = r#"[{"id":"demo-1","displayName":"Alice Example","givenName":"Alice","surname":"Example","jobTitle":"Head of Demos","department":"Engineering","companyName":"Example Ltd","mail":"alice@example.com","userPrincipalName":"alice@example.com","businessPhones":["+44 20 7946 0000"],"mobilePhone":"+44 7700 900000","proxyAddresses":["SMTP:alice@example.com"]}]"#;
const FALLBACK_MESSAGE: &str = "From: Alice Example <alice@example.com>\r\nTo: Bob <bob@example.net>\r\nSubject: sigstamp demo\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <demo@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\n\r\nthis message went through sigstamp.\r\n";

pub fn run(args: Args) -> CliResult {
    // Quiet by default: the demo's own lines go to stdout.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    super::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(args))?;
    Ok(ExitCode::SUCCESS)
}

/// `examples/<name>` next to the working directory, else next to the source tree.
fn example(name: &str) -> Option<PathBuf> {
    [
        PathBuf::from("examples"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
    ]
    .into_iter()
    .map(|d| d.join(name))
    .find(|p| p.exists())
}

/// Message to send by default: a reply shows the placement above the quote best.
const PREFERRED_MESSAGES: [&str; 2] = ["reply-gmail.eml", "plain.eml"];

fn first_example_message() -> Option<PathBuf> {
    if let Some(p) = PREFERRED_MESSAGES.iter().find_map(|m| example(m)) {
        return Some(p);
    }
    let dir = example("")?;
    let mut emls: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    emls.sort();
    emls.into_iter().next()
}

fn load_users(args: &Args) -> anyhow::Result<(Vec<User>, String)> {
    match args.directory.clone().or_else(|| example("directory.json")) {
        Some(p) => Ok((directory::file::load(&p)?, p.display().to_string())),
        None => Ok((
            directory::file::parse(FALLBACK_DIRECTORY.as_bytes())?,
            "built-in sample".into(),
        )),
    }
}

fn load_message(args: &Args) -> anyhow::Result<(Vec<u8>, String)> {
    match args.message.clone().or_else(first_example_message) {
        Some(p) => Ok((
            std::fs::read(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            p.display().to_string(),
        )),
        None => Ok((
            FALLBACK_MESSAGE.as_bytes().to_vec(),
            "built-in sample".into(),
        )),
    }
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let (users, users_from) = load_users(&args)?;
    let (message, message_from) = load_message(&args)?;
    // Mail clients speak CRLF; sample files in a git checkout may have plain LF.
    let message = if memchr::memmem::find(&message, b"\r\n").is_none() {
        message
            .iter()
            .fold(Vec::with_capacity(message.len() + 64), |mut v, &b| {
                if b == b'\n' {
                    v.push(b'\r');
                }
                v.push(b);
                v
            })
    } else {
        message
    };
    let templates = match &args.templates {
        Some(dir) => Templates::load(dir)?,
        None => Templates::embedded(),
    };
    let directory = Arc::new(Directory::new());
    let first_user = users
        .first()
        .and_then(|u| u.str("mail").map(str::to_string));
    directory.replace_users(users, Source::File);
    let stamper = Arc::new(Stamper::new(directory, templates));

    // The envelope a mail client would use: From's address, To's address.
    let sender = crate::stamp::from_address(&message)
        .or_else(|| header_address(&message, "from"))
        .or(first_user)
        .unwrap_or_else(|| "alice@example.com".into());
    let recipient = header_address(&message, "to").unwrap_or_else(|| "bob@example.net".into());

    let (sink, mut delivered) = Sink::start("127.0.0.1:0", SinkOptions::default()).await?;
    let shutdown = CancellationToken::new();
    let mut cfg = SmtpConfig::new("127.0.0.1:0", sink.addr().to_string());
    cfg.next_hop_tls = NextHopTls::None;
    let relay = Relay::bind(
        cfg,
        stamper.clone(),
        Arc::new(Metrics::new()),
        shutdown.clone(),
    )
    .await?;
    let relay_addr = relay.local_addr()?;
    let serving = tokio::spawn(relay.serve());

    // A real SMTP client session to the relay.
    let mut client_cfg = SmtpConfig::new("127.0.0.1:0", relay_addr.to_string());
    client_cfg.next_hop_tls = NextHopTls::None;
    client_cfg.hostname = "demo-client.localhost".into();
    let mut session = NextHop::from_config(&client_cfg)?.open().await?;
    let steps = [
        session
            .mail(&format!("MAIL FROM:<{sender}>\r\n"))
            .await
            .or_else(DeliveryError::into_answer)?,
        session
            .add_rcpt(&format!("RCPT TO:<{recipient}>\r\n"))
            .await
            .or_else(DeliveryError::into_answer)?,
    ];
    if let Some(bad) = steps.iter().find(|r| !r.is_positive()) {
        anyhow::bail!("the relay refused the envelope: {bad}");
    }
    let answer = session
        .body(&message)
        .await
        .or_else(DeliveryError::into_answer)?;
    Box::new(session).quit().await;
    if !answer.is_positive() {
        anyhow::bail!("the relay refused the message: {answer}");
    }
    let got = tokio::time::timeout(Duration::from_secs(5), delivered.recv())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| anyhow::anyhow!("the sink received nothing"))?;
    shutdown.cancel();
    let _ = serving.await;

    let out = args.out.clone().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("sigstamp-demo")
            .join("delivered.eml")
    });
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, &got.message)?;

    // The relay's verdict, recomputed (the pipeline is pure) to say why.
    let rcpts = [recipient.clone()];
    let verdict = stamper.process(
        &message,
        &Envelope {
            mail_from: Some(&sender),
            rcpt_to: &rcpts,
        },
    );
    let outcome = match &verdict {
        Verdict::Stamped {
            sender, template, ..
        } => format!("stamped for {sender} with template {template:?}"),
        Verdict::Unchanged(reason) => format!("passed on unchanged: {reason}"),
    };
    println!("sigstamp demo");
    println!("  directory: {users_from}");
    println!("  message:   {message_from}");
    println!("  relay {relay_addr} -> sink {}", sink.addr());
    println!("  envelope:  <{sender}> -> <{recipient}>; relay answered: {answer}");
    println!("  outcome:   {outcome}");
    println!("delivered message written to {}", out.display());
    Ok(())
}

/// The first `<addr>` or bare address of a header, lowercased (good enough for a demo).
fn header_address(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next()?.split("\n\n").next()?;
    let line = head.lines().find(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    })?;
    let value = line.split_once(':')?.1;
    let addr = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.trim(),
    };
    addr.contains('@').then(|| addr.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::header_address;

    #[test]
    fn header_addresses() {
        let m = b"From: Alice <Alice@Example.com>\r\nTo: bob@example.net\r\n\r\nbody\r\n";
        assert_eq!(
            header_address(m, "from").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(header_address(m, "to").as_deref(), Some("bob@example.net"));
        assert_eq!(header_address(m, "cc"), None);
    }
}
