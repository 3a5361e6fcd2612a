//! Shared by `tests/admin_*.rs` and `tests/notify_*.rs`: an `App` built from TOML text with a
//! two-user file directory, and the admin server on 127.0.0.1:0. (The SMTP sink is the test
//! kit's, `sigstamp_testkit::RecordingSink`.)
#![allow(dead_code)]

use sigstamp::app::App;
use sigstamp::config::Config;
use sigstamp::directory::{file, Directory, Source};
use sigstamp::metrics::Metrics;
use sigstamp::pipeline::Stamper;
use sigstamp::render::Templates;
use sigstamp::rules::RuleSet;
use sigstamp::status::{Status, TokenState, TokenStatus};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::net::TcpListener;
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
    let stamper = Stamper::new(directory.clone(), Templates::embedded())
        .with_rules(rules)
        .with_default(config.templates.default.clone());
    let stamper = Arc::new(stamper);
    Arc::new(App {
        config,
        directory,
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
    let (auth, _tls) = sigstamp::admin::setup(&app.config.admin).expect("admin setup");
    let task = serve_admin(&app, auth, listener, None);
    (base, task)
}

/// The admin server on `listener` (over TLS with `tls`), with this sign-in.
pub fn serve_admin(
    app: &App,
    auth: Arc<sigstamp::admin::Auth>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let ctx = sigstamp::admin::AdminCtx {
        state: app.admin_state(),
        auth,
    };
    tokio::spawn(sigstamp::admin::serve(
        ctx,
        listener,
        tls,
        app.shutdown.clone(),
    ))
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
