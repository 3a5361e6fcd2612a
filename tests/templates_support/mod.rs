//! The templates editor's test site: the admin web over HTTPS (a test CA's certificate) with
//! Entra ID sign-in against the fake's OpenID Connect endpoints, a templates folder of its
//! own (the shipped `default`), and the relay in front of a sink, all sharing one stamper.
#![allow(dead_code)]

use crate::admin_support;
use crate::fake_graph::{FakeGraph, CLIENT_ID, SECRET, TENANT_ID};
use crate::smtp_support::{relay_with, Pki, RawClient, TestRelay};
use sigstamp::admin::auth::AuditEntry;
use sigstamp::app::App;
use sigstamp::render::Templates;
use sigstamp::smtp::sink::SinkOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

pub const EDITORS_GROUP: &str = "7d3c6a2e-0f4b-4f8e-9d2a-5b1c0e9f8a11";
pub const ADMINS_ROLE: &str = "SignatureAdmins";
/// A directory user of `admin_support::USERS`.
pub const SENDER: &str = "ada@example.com";

pub struct Site {
    pub base: String,
    pub fake: FakeGraph,
    pub app: Arc<App>,
    pub audit: PathBuf,
    pub templates: PathBuf,
    pub pki: Pki,
    pub relay: TestRelay,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.app.shutdown.cancel();
        self.task.abort();
    }
}

/// `[admin]` over HTTPS with `pki`'s certificate and `[admin.auth]` against the fake Entra ID
/// at `authority`: admins by the app role [`ADMINS_ROLE`], editors by the group
/// [`EDITORS_GROUP`].
pub fn auth_config(pki: &Pki, audit: &Path, redirect: &str, authority: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\naudit_log = {audit:?}\n\
         [admin.auth]\ntenant_id = \"{TENANT_ID}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = {SECRET:?}\nredirect_url = \"{redirect}\"\nauthority = \"{authority}\"\n\
         admins = [\"{ADMINS_ROLE}\"]\neditors = [\"{EDITORS_GROUP}\"]\n",
        pki.server_cert, pki.server_key
    )
}

pub async fn site() -> Site {
    site_with("").await
}

/// [`site`] with more configuration (`[recipients]`, `[[rules]]`) after the admin's.
pub async fn site_with(extra: &str) -> Site {
    let fake = FakeGraph::start().await;
    let pki = Pki::new("unused");
    let templates = pki.dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["default.html.hbs", "default.txt.hbs"] {
        std::fs::copy(root.join("templates").join(f), templates.join(f)).unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let audit = pki.dir.path().join("audit.jsonl");
    let redirect = format!("{base}/auth/callback");
    fake.oidc(|o| o.redirect_uris = vec![redirect.clone()]);
    let config = format!(
        "[templates]\ndir = {templates:?}\n{}{extra}",
        auth_config(&pki, &audit, &redirect, &fake.base)
    );
    let app = admin_support::app(&config);
    // As `serve` does: the stamper's templates come from the folder.
    app.stamper
        .templates
        .store(Arc::new(Templates::load(&templates).unwrap()));
    let relay = relay_with(app.stamper.clone(), |_| {}, SinkOptions::default()).await;
    let (auth, tls) = sigstamp::admin::setup(&app.config.admin).expect("admin setup");
    let task = admin_support::serve_admin(&app, auth, listener, tls);
    Site {
        base,
        fake,
        app,
        audit,
        templates,
        pki,
        relay,
        task,
    }
}

impl Site {
    /// One HTML message from [`SENDER`] through the relay: what the next hop received.
    pub async fn send_message(&mut self, subject: &str) -> String {
        send(self.relay.addr, subject).await;
        let d = self.relay.next().await.expect("the relay delivered");
        String::from_utf8_lossy(&d.message).into_owned()
    }

    /// The audit log's entries, oldest first.
    pub fn audit_entries(&self) -> Vec<AuditEntry> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The live HTML part of `default` on disk.
    pub fn live_html(&self) -> String {
        std::fs::read_to_string(self.templates.join("default.html.hbs")).unwrap()
    }
}

async fn send(relay: SocketAddr, subject: &str) {
    let mut c = RawClient::connect(relay).await.unwrap();
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    assert!(c
        .cmd(&format!("MAIL FROM:<{SENDER}>"))
        .await
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.org>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(&format!(
        "From: Ada Lovelace <{SENDER}>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hello Bob,</p>\r\n\
         <p>see you.</p></body></html>\r\n",
        subject.replace(' ', "-")
    ))
    .await;
    let end = c.cmd(".").await;
    assert!(end.starts_with("250"), "{end}");
    assert!(c.cmd("QUIT").await.starts_with("221"));
}

/// A signed-in HTTPS client (cookie store, the test CA trusted) and its CSRF token: the
/// fake's authorize answers at once when the login form's fields come in the query.
pub async fn signed_in(
    site: &Site,
    upn: &str,
    groups: &str,
    roles: &str,
) -> (reqwest::Client, String) {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&site.pki.ca).unwrap()).unwrap();
    let b = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let location = |r: &reqwest::Response| r.headers()["location"].to_str().unwrap().to_string();
    let r = b
        .get(format!("{}/auth/login", site.base))
        .send()
        .await
        .unwrap();
    let mut authorize = reqwest::Url::parse(&location(&r)).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("login_upn", upn)
        .append_pair("login_groups", groups)
        .append_pair("login_roles", roles);
    let r = b.get(authorize).send().await.unwrap();
    let r = b.get(location(&r)).send().await.unwrap();
    assert_eq!(r.status(), 200, "signed in as {upn}");
    let csrf = csrf(&b, &site.base).await;
    (b, csrf)
}

/// The signed-in user's CSRF token, from `/auth/me` at `base`.
pub async fn csrf(b: &reqwest::Client, base: &str) -> String {
    let me: serde_json::Value = b
        .get(format!("{base}/auth/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["csrf"].as_str().unwrap().to_string()
}
