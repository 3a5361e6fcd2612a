//! Shared by `tests/admin_*.rs` and `tests/notify_*.rs`: an `App` built from TOML text with a
//! two-user file directory, the admin server on 127.0.0.1:0, and a tiny SMTP sink.
//!
//! The sink could be replaced by the production sink `src/smtp/sink.rs` (branch `relay`)
//! once that lands; this one exists so these tests need no other branch.
#![allow(dead_code)]

use sigstamp::app::App;
use sigstamp::config::Config;
use sigstamp::directory::{file, Directory, Source};
use sigstamp::metrics::Metrics;
use sigstamp::pipeline::Stamper;
use sigstamp::render::Templates;
use sigstamp::rules::RuleSet;
use sigstamp::status::{Status, TokenState, TokenStatus};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub const USERS: &str = r#"[
  {"id": "1", "displayName": "Ada Lovelace", "mail": "ada@example.com",
   "userPrincipalName": "ada@example.com", "jobTitle": "Engineer"},
  {"id": "2", "displayName": "Alan <b>Turing</b>", "mail": "alan@example.com",
   "userPrincipalName": "alan@example.com", "jobTitle": "Mathematician",
   "proxyAddresses": ["SMTP:alan@example.com", "smtp:a.turing@example.com"]}
]"#;

/// An `App` from config text (its `[[rules]]` included), with the two users of [`USERS`]
/// loaded from a "file".
pub fn app(config: &str) -> Arc<App> {
    let config = Config::parse(config).expect("test config parses");
    let directory = Arc::new(Directory::new());
    directory.replace_users(file::parse(USERS.as_bytes()).unwrap(), Source::File);
    let rules = RuleSet::compile(&config.rules, &config.recipients).expect("test rules compile");
    let mut stamper = Stamper::new(directory, Templates::embedded()).with_rules(rules);
    stamper.template = config.templates.default.clone();
    let stamper = Arc::new(stamper);
    Arc::new(App {
        config,
        stamper,
        metrics: Arc::new(Metrics::new()),
        status: Arc::new(Status::default()),
        photos: Arc::new(sigstamp::directory::photo::NoPhotos),
        sent_items: Default::default(),
        shutdown: CancellationToken::new(),
    })
}

pub fn set_token(app: &App, state: TokenState, code: Option<&str>, since: OffsetDateTime) {
    app.status.token.store(Arc::new(TokenStatus {
        state,
        error_code: code.map(str::to_string),
        description: match code {
            Some(c) => format!("{c}: The provided client secret keys for app 'x' are expired."),
            None => "ok".into(),
        },
        since,
    }));
}

/// The admin server on 127.0.0.1:0; stops when `app.shutdown` fires.
pub async fn start_admin(app: Arc<App>) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(sigstamp::admin::serve(app, listener));
    (base, task)
}

/// Poll `f` every 10 ms until it is true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Debug, Clone)]
pub struct Captured {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

impl Captured {
    /// The value of the first header `name` (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = found.as_mut() {
                    v.push_str(line);
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_string());
                }
            }
        }
        found
    }

    /// The body, with quoted-printable undone (lettre picks it for long lines).
    pub fn body(&self) -> String {
        let raw = self.data.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        let qp = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("quoted-printable"));
        if !qp {
            return raw.to_string();
        }
        let raw = raw.replace("=\r\n", "");
        let b = raw.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) if b[i] == b'=' => {
                    out.push(byte);
                    i += 3;
                }
                _ => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A minimal SMTP server: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT. Captures messages;
/// with `fail` set it answers 451 to the end of DATA.
#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    pub messages: Arc<Mutex<Vec<Captured>>>,
    pub fail: Arc<AtomicBool>,
}

impl Sink {
    pub async fn start() -> Sink {
        Sink::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Sink {
        let listener = TcpListener::bind(addr).await.unwrap();
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            messages: Arc::default(),
            fail: Arc::default(),
        };
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.session(conn).await;
                });
            }
        });
        sink
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Captured> {
        self.messages.lock().unwrap().clone()
    }

    async fn session(&self, conn: TcpStream) -> std::io::Result<()> {
        let (r, mut w) = conn.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 sink ESMTP\r\n").await?;
        let (mut from, mut rcpt) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_string();
            let verb = cmd
                .split([' ', ':'])
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 sink\r\n",
                "MAIL" => {
                    from = angle(&cmd);
                    rcpt.clear();
                    b"250 ok\r\n"
                }
                "RCPT" => {
                    rcpt.push(angle(&cmd));
                    b"250 ok\r\n"
                }
                "DATA" => {
                    w.write_all(b"354 go ahead\r\n").await?;
                    let data = read_data(&mut r).await?;
                    if self.fail.load(Ordering::SeqCst) {
                        b"451 4.3.0 sink says try later\r\n"
                    } else {
                        self.messages.lock().unwrap().push(Captured {
                            mail_from: from.clone(),
                            rcpt_to: rcpt.clone(),
                            data,
                        });
                        b"250 queued\r\n"
                    }
                }
                "RSET" | "NOOP" => b"250 ok\r\n",
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").await?;
                    return Ok(());
                }
                _ => b"502 unknown\r\n",
            };
            w.write_all(reply).await?;
        }
    }
}

fn angle(cmd: &str) -> String {
    match (cmd.find('<'), cmd.find('>')) {
        (Some(a), Some(b)) if a < b => cmd[a + 1..b].to_string(),
        _ => String::new(),
    }
}

/// Read up to the lone "." line, undoing dot-stuffing.
async fn read_data<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut out = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok(out);
        }
        out.push_str(line.strip_prefix('.').unwrap_or(&line));
    }
}

/// A loopback port with nothing listening on it (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}
