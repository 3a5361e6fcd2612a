//! The admin web over real HTTPS on loopback (a test CA's certificate), signing in through
//! the fake Entra ID, with the relay of the same `App` in front of a sink: what the
//! self-service and overrides tests drive. (Used with `mod admin_support; mod fake_graph;
//! mod smtp_support;`.)
#![allow(dead_code)]

use crate::admin_support::{app, serve_admin};
use crate::fake_graph::{FakeGraph, CLIENT_ID, SECRET, TENANT_ID};
use crate::smtp_support::{relay_with, Pki, RawClient, TestRelay};
use reqwest::redirect::Policy;
use sigstamp::admin::auth::AuditEntry;
use sigstamp::app::App;
use sigstamp::smtp::sink::SinkOptions;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

pub const ADMINS_ROLE: &str = "SignatureAdmins";
pub const EDITORS_ROLE: &str = "SignatureEditors";

/// Phones look like phones; pronouns are short.
pub const SELF_SERVICE: &str = "[admin.self_service]\n\
     attributes = [\"mobilePhone\", \"pronouns\"]\n\
     [admin.self_service.field.mobilePhone]\n\
     pattern = '\\+?[0-9 ()/-]{6,25}'\n\
     label = \"Mobile phone\"\n\
     hint = \"International format, e.g. +49 151 23456789\"\n\
     [admin.self_service.field.pronouns]\n\
     label = \"Pronouns\"\n\
     max_length = 20\n";

pub struct Site {
    pub base: String,
    pub fake: FakeGraph,
    pub app: Arc<App>,
    pub audit: PathBuf,
    pub overrides: PathBuf,
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

/// The site with `extra` config text (e.g. [`SELF_SERVICE`]).
pub async fn site(extra: &str) -> Site {
    let fake = FakeGraph::start().await;
    let pki = Pki::new("unused");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let audit = pki.dir.path().join("audit.jsonl");
    let overrides = pki.dir.path().join("overrides.json");
    let redirect = format!("{base}/auth/callback");
    fake.oidc(|o| o.redirect_uris = vec![redirect.clone()]);
    let config = format!(
        "[directory]\noverrides = {overrides:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\naudit_log = {audit:?}\n\
         [admin.auth]\ntenant_id = \"{TENANT_ID}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = {SECRET:?}\nredirect_url = \"{redirect}\"\nauthority = \"{}\"\n\
         admins = [\"{ADMINS_ROLE}\"]\neditors = [\"{EDITORS_ROLE}\"]\n{extra}",
        pki.server_cert, pki.server_key, fake.base
    );
    sigstamp::app::check(&sigstamp::config::Config::parse(&config).unwrap()).unwrap();
    let app = app(&config);
    let (auth, tls) = sigstamp::admin::setup(&app.config.admin).expect("admin setup");
    let task = serve_admin(&app, auth, listener, tls);
    let relay = relay_with(app.stamper.clone(), |_| {}, SinkOptions::default()).await;
    Site {
        base,
        fake,
        app,
        audit,
        overrides,
        pki,
        relay,
        task,
    }
}

impl Site {
    /// A browser: a cookie store, trusts the test CA, redirects followed by hand.
    pub fn browser(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.pki.ca).unwrap()).unwrap();
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .tls_certs_only([ca])
            .build()
            .unwrap()
    }

    /// Sign `b` in as `upn` with these app roles (the fake's login form filled in through
    /// its query); returns the CSRF token of the session.
    pub async fn sign_in(&self, b: &reqwest::Client, upn: &str, roles: &str) -> String {
        let r = b
            .get(format!("{}/auth/login", self.base))
            .send()
            .await
            .unwrap();
        let mut picked = reqwest::Url::parse(&location(&r)).unwrap();
        picked
            .query_pairs_mut()
            .append_pair("login_upn", upn)
            .append_pair("login_roles", roles);
        let r = b.get(picked).send().await.unwrap();
        let r = b.get(location(&r)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{upn} signs in");
        let me: serde_json::Value = b
            .get(format!("{}/auth/me", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        me["csrf"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, b: &reqwest::Client, path: &str) -> (u16, String) {
        let r = b.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// POST a form; the status and the `Location` or the body.
    pub async fn post(
        &self,
        b: &reqwest::Client,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, String) {
        let r = b
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 303 {
            return (status, location(&r));
        }
        (status, r.text().await.unwrap())
    }

    pub fn audit_entries(&self) -> Vec<AuditEntry> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Send a message from `from` through the relay; the message the sink received.
    pub async fn send_mail(&mut self, from: &str) -> String {
        let mut c = RawClient::connect(self.relay.addr).await.unwrap();
        assert!(c.reply().await.starts_with("220"));
        assert!(c.cmd("EHLO client.test").await.starts_with("250"));
        assert!(c
            .cmd(&format!("MAIL FROM:<{from}>"))
            .await
            .starts_with("250"));
        assert!(c.cmd("RCPT TO:<bob@outside.test>").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        c.send(&format!(
            "From: <{from}>\r\nTo: <bob@outside.test>\r\nSubject: hi\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nHello Bob\r\n.\r\n"
        ))
        .await;
        assert!(c.reply().await.starts_with("250"));
        let _ = c.cmd("QUIT").await;
        let d = self.relay.next().await.expect("the relay delivered it");
        String::from_utf8_lossy(&d.message).into_owned()
    }
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}
