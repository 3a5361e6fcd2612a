//! Shared by the milter tests: an `App` built from a small JSON directory, a raw milter
//! client that speaks the wire protocol itself (so malformed packets can be sent), a model
//! of how an MTA applies the milter's modifications.
#![allow(dead_code)]

pub mod client;

use sigstamp::app::App;
use sigstamp::config::Config;
use sigstamp::directory::{file, Directory, Source};
use sigstamp::metrics::Metrics;
use sigstamp::milter::{self, MilterConfig};
use sigstamp::pipeline::{Envelope, Stamper, Verdict};
use sigstamp::render::Templates;
use sigstamp::status::Status;
use sigstamp_testkit::{Postfix, RecordingSink};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const DIRECTORY: &str = r#"[
  {"id": "1", "displayName": "Ann Example", "jobTitle": "Engineer",
   "mail": "ann@example.com", "userPrincipalName": "ann@example.com",
   "proxyAddresses": ["SMTP:ann@example.com", "smtp:a.example@example.com"]},
  {"id": "2", "displayName": "Bob Example", "jobTitle": "Sales",
   "mail": "bob@example.com", "userPrincipalName": "bob@example.com"},
  {"id": "3", "displayName": "Zoë Ünal", "jobTitle": "Directrice générale",
   "mail": "zoe@example.com", "userPrincipalName": "zoe@example.com"}
]"#;

/// The one place the stamper is built: when the real template loader lands, only this
/// function changes.
pub fn stamper() -> Stamper {
    let directory = Arc::new(Directory::new());
    directory.replace_users(
        file::parse(DIRECTORY.as_bytes()).expect("test directory"),
        Source::File,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("default.html.hbs"),
        "<p class=\"sigstamp-test\">{{displayName}}<br>{{jobTitle}}</p>",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("default.txt.hbs"),
        "-- \n{{displayName}}\n{{jobTitle}}\n",
    )
    .unwrap();
    let templates = Templates::load(dir.path()).unwrap_or_else(|_| Templates::embedded());
    Stamper::new(directory, templates)
}

pub fn app(cfg: MilterConfig) -> Arc<App> {
    app_with_sent_items(cfg, |_| Default::default())
}

/// [`app`] with the Sent Items handle `sent_items` makes for the stamper's directory.
pub fn app_with_sent_items(
    cfg: MilterConfig,
    sent_items: impl FnOnce(Arc<Directory>) -> sigstamp::sent_items::SentItems,
) -> Arc<App> {
    let stamper = stamper();
    let sent_items = sent_items(stamper.directory.clone());
    Arc::new(App {
        config: Config {
            milter: Some(cfg),
            ..Config::default()
        },
        directory: stamper.directory.clone(),
        stamper: Arc::new(stamper),
        metrics: Arc::new(Metrics::new()),
        status: Arc::new(Status::default()),
        photos: Arc::new(sigstamp::directory::photo::NoPhotos),
        sent_items,
        shutdown: CancellationToken::new(),
    })
}

pub fn config() -> MilterConfig {
    MilterConfig {
        listen: "127.0.0.1:0".into(),
        ..MilterConfig::default()
    }
}

/// A running milter on loopback.
pub struct Running {
    pub app: Arc<App>,
    pub addr: SocketAddr,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        self.app.shutdown.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

pub async fn start(cfg: MilterConfig) -> Running {
    start_app(app(cfg.clone()), cfg).await
}

/// A milter serving `app`.
pub async fn start_app(app: Arc<App>, cfg: MilterConfig) -> Running {
    let listener = milter::bind(&cfg).await.expect("bind milter");
    let addr = listener.local_addr().expect("inet listener");
    let a = app.clone();
    let task = tokio::spawn(async move { milter::serve(a.milter_handles(), &cfg, listener).await });
    Running { app, addr, task }
}

/// A private Postfix whose `smtpd_milters` is `milter`, relaying to a new sink.
pub async fn postfix_to_sink(milter: &Running) -> (Arc<Postfix>, RecordingSink) {
    let sink = RecordingSink::start().await;
    let milter_addr = format!("inet:{}", milter.addr);
    let relay = sink.addr;
    let pf = tokio::task::spawn_blocking(move || {
        Postfix::relaying_to(relay)
            .milter(&milter_addr)
            .start()
            .unwrap()
    })
    .await
    .unwrap();
    (Arc::new(pf), sink)
}

/// Send `raw` from `from` to rcpt@example.net through `pf`'s smtpd, with swaks.
pub async fn swaks(pf: &Arc<Postfix>, from: &str, raw: &[u8]) {
    let (pf, from, raw) = (pf.clone(), from.to_string(), raw.to_vec());
    tokio::task::spawn_blocking(move || pf.swaks(&from, "rcpt@example.net", &raw))
        .await
        .unwrap();
}

/// A plain message from `from`, CRLF, with Date and Message-ID so an MTA adds nothing.
pub fn text_message(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <{from}>\r\nTo: Someone <rcpt@example.net>\r\nSubject: {subject}\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}.test@example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\n{body}"
    )
    .into_bytes()
}

/// What the relay would deliver for this message: the reference the milter must match.
pub fn reference(app: &App, raw: &[u8], mail_from: &str) -> Verdict {
    app.stamper.process(
        raw,
        &Envelope {
            mail_from: Some(mail_from),
            rcpt_to: &["rcpt@example.net".to_string()],
        },
    )
}

/// The tests below compare the milter's result with the pipeline's own; make sure the
/// pipeline does stamp, so a pipeline that stamps nothing cannot make them pass vacuously.
pub fn assert_pipeline_stamps(app: &App) {
    let raw = text_message("ann@example.com", "probe", "Hello\r\n");
    if let Verdict::Unchanged(why) = reference(app, &raw, "ann@example.com") {
        panic!("the pipeline does not stamp a plain message from a known sender: {why}");
    }
}

/// Remove the first Received header (Postfix's own, with its continuation lines),
/// wherever it sits in the header, leaving what the sender submitted plus any milter edits.
pub fn strip_received(msg: &[u8]) -> Vec<u8> {
    let mut pos = 0;
    while pos < msg.len() {
        let end = msg[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(msg.len(), |i| pos + i + 1);
        if msg[pos..end].starts_with(b"Received:") {
            let mut stop = end;
            while matches!(msg.get(stop), Some(b' ') | Some(b'\t')) {
                stop = msg[stop..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(msg.len(), |i| stop + i + 1);
            }
            return [&msg[..pos], &msg[stop..]].concat();
        }
        if msg[pos..end] == *b"\r\n" {
            break;
        }
        pos = end;
    }
    panic!("no Received header: {}", String::from_utf8_lossy(msg));
}
