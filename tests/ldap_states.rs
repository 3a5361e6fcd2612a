//! The LDAP source's states under `sigstamp serve`'s refresher against a real slapd: a bind
//! refused after a password change is `expired` (admin needed), a stopped server is
//! `failing`, both keep stamping with the last-known users and recover by themselves; a
//! restart with the server down stamps from the snapshot.

mod ldap_support;
mod serve_support;

use ldap_support::*;
use serve_support::{get_json, get_text};
use sigstamp::directory::Source;
use sigstamp::status::TokenState;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// `sigstamp serve`'s state for `config`: the directory built as serve builds it (overrides,
/// snapshot), the embedded templates, and the LDAP refresher's photo store.
pub fn app(
    config: &str,
) -> (
    std::sync::Arc<sigstamp::app::App>,
    std::sync::Arc<sigstamp::directory::ldap::photos::LdapPhotos>,
) {
    use sigstamp::{app::App, config::Config, metrics::Metrics, pipeline::Stamper};
    use std::sync::Arc;
    let config = Config::parse(config).unwrap_or_else(|e| panic!("{e}\n{config}"));
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(sigstamp::status::Status::default());
    let directory = sigstamp::cli::serve::build_directory(&config, &metrics, &status).unwrap();
    let photos = Arc::new(sigstamp::directory::ldap::photos::LdapPhotos::default());
    let stamper = Stamper::new(directory.clone(), sigstamp::render::Templates::embedded())
        .with_rules(sigstamp::rules::RuleSet::compile(&config.rules, &config.recipients).unwrap());
    let app = Arc::new(App {
        config,
        directory: directory.clone(),
        stamper: Arc::new(stamper),
        metrics,
        status,
        photos: photos.clone(),
        sent_items: sigstamp::sent_items::SentItems::disabled(),
        shutdown: tokio_util::sync::CancellationToken::new(),
    });
    (app, photos)
}

/// Stamp a plain message from `from`; the stamped text, or `None` when left unchanged.
pub fn stamp(app: &sigstamp::app::App, from: &str) -> Option<String> {
    use sigstamp::pipeline::{Envelope, Verdict};
    let raw = format!(
        "From: <{from}>\r\nTo: bob@example.org\r\nSubject: t\r\nMessage-ID: <t@example.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    );
    let rcpt = ["bob@example.org".to_string()];
    match app.stamper.process(
        raw.as_bytes(),
        &Envelope {
            mail_from: Some(from),
            rcpt_to: &rcpt,
        },
    ) {
        Verdict::Stamped { message, .. } => Some(String::from_utf8_lossy(&message).into_owned()),
        Verdict::Unchanged(_) => None,
    }
}

fn section(slapd: &Slapd, dir: &std::path::Path) -> String {
    let pw = dir.join("bind.pw");
    std::fs::write(&pw, format!("{BIND_PW}\n")).unwrap();
    format!(
        "[directory]\nsnapshot = \"{}\"\n{}",
        dir.join("snapshot.json").display(),
        ldap_section(&slapd.url(), "").replace(
            &format!("bind_password = \"{BIND_PW}\""),
            &format!("bind_password_file = \"{}\"", pw.display())
        )
    )
}

fn state(app: &sigstamp::app::App) -> TokenState {
    app.status.token.load().state
}

fn start(
    app: &Arc<sigstamp::app::App>,
    photos: &Arc<sigstamp::directory::ldap::photos::LdapPhotos>,
) {
    tokio::spawn(sigstamp::directory::ldap::run(
        app.config.ldap.clone(),
        app.sync_target(Arc::new(sigstamp::directory::graph::clock::SystemClock)),
        photos.clone(),
        app.shutdown.clone(),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bind_is_admin_needed_and_mail_is_still_stamped() {
    if !have_slapd() {
        return;
    }
    let slapd = Slapd::start(None);
    slapd.add(&users_ldif(0, 3));
    let dir = tempfile::tempdir().unwrap();
    let (app, photos) = app(&section(&slapd, dir.path()));
    start(&app, &photos);
    assert!(eventually(WAIT, || state(&app) == TokenState::Valid).await);
    assert!(eventually(WAIT, || app.directory.source() == Source::Ldap).await);
    let stamped = stamp(&app, "user0001@example.test").expect("stamped");
    assert!(stamped.contains("Engineer"), "{stamped}");

    // The service account's password is changed on the server, not in sigstamp.
    slapd.set_bind_password("rotated-elsewhere");
    assert!(eventually(WAIT, || state(&app) == TokenState::Expired).await);
    let st = app.status.token.load_full();
    assert_eq!(st.error_code.as_deref(), Some("invalidCredentials"));
    assert!(st.description.contains("What to do"), "{}", st.description);
    let metrics = app.metrics.encode();
    assert!(
        metrics.contains("sigstamp_token_state{state=\"expired\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kind=\"ldap_bind\""), "{metrics}");
    let stamped = stamp(&app, "user0001@example.test").expect("still stamped");
    assert!(stamped.contains("Engineer"), "{stamped}");
    // /status and the page say so, naming the LDAP bind.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (auth, _) = sigstamp::admin::setup(&app.config.admin).unwrap();
    let ctx = sigstamp::admin::AdminCtx {
        state: app.admin_state(),
        auth,
    };
    tokio::spawn(sigstamp::admin::serve(
        ctx,
        listener,
        None,
        app.shutdown.clone(),
    ));
    let status = get_json(&format!("{base}/status")).await;
    assert_eq!(status["token"]["state"], "expired", "{status}");
    assert_eq!(
        status["token"]["error_code"], "invalidCredentials",
        "{status}"
    );
    assert_eq!(status["directory"]["source"], "ldap", "{status}");
    let page = get_text(&format!("{base}/")).await;
    assert!(
        page.contains("LDAP directory bind expired: invalidCredentials"),
        "{page}"
    );

    // The admin puts the new password in the file: recovered without a restart.
    std::fs::write(dir.path().join("bind.pw"), "rotated-elsewhere\n").unwrap();
    assert!(eventually(WAIT, || state(&app) == TokenState::Valid).await);
    app.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_failing_and_mail_is_still_stamped() {
    if !have_slapd() {
        return;
    }
    let mut slapd = Slapd::start(None);
    slapd.add(&users_ldif(0, 3));
    let dir = tempfile::tempdir().unwrap();
    let (app, photos) = app(&section(&slapd, dir.path()));
    start(&app, &photos);
    assert!(eventually(WAIT, || state(&app) == TokenState::Valid).await);
    assert!(eventually(WAIT, || stamp(&app, "user0002@example.test").is_some()).await);

    slapd.stop();
    assert!(eventually(WAIT, || state(&app) == TokenState::Failing).await);
    let st = app.status.token.load_full();
    assert!(
        st.description.contains("cannot reach"),
        "{}",
        st.description
    );
    let stamped = stamp(&app, "user0002@example.test").expect("still stamped");
    assert!(stamped.contains("Engineer"), "{stamped}");
    assert!(app.metrics.encode().contains("kind=\"network\""));

    slapd.run();
    assert!(eventually(WAIT, || state(&app) == TokenState::Valid).await);
    app.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_server_down_stamps_from_the_snapshot() {
    if !have_slapd() {
        return;
    }
    let mut slapd = Slapd::start(None);
    slapd.add(&users_ldif(0, 4));
    let dir = tempfile::tempdir().unwrap();
    let config = section(&slapd, dir.path());
    {
        let (app, photos) = app(&config);
        start(&app, &photos);
        assert!(eventually(WAIT, || app.directory.source() == Source::Ldap).await);
        assert!(eventually(WAIT, || dir.path().join("snapshot.json").exists()).await);
        app.shutdown.cancel();
    }
    slapd.stop();

    // "Restart": a new process state from the same config, the server gone.
    let (app, photos) = app(&config);
    assert_eq!(app.directory.source(), Source::Snapshot);
    assert_eq!(app.directory.snapshot().len(), 4);
    assert!(app
        .status
        .directory_loaded
        .load(std::sync::atomic::Ordering::Relaxed));
    start(&app, &photos);
    assert!(eventually(WAIT, || state(&app) == TokenState::Failing).await);
    let stamped = stamp(&app, "user0003@example.test").expect("stamped from the snapshot");
    assert!(stamped.contains("Engineer"), "{stamped}");
    assert_eq!(app.directory.source(), Source::Snapshot);
    app.shutdown.cancel();
}
