//! The admin web's sign-in over real HTTPS on loopback (a test CA's certificate), against the
//! fake Entra ID's OpenID Connect endpoints (§9): full round trips as admin, editor and plain
//! user, role checks, refused ID tokens (forged, expired, wrong audience, wrong nonce), CSRF,
//! key rollover, sign-out and the audit log.

mod admin_support;
mod fake_graph;
mod smtp_support;
mod templates_support;

use admin_support::app;
use fake_graph::oidc::Minted;
use fake_graph::{FakeGraph, CLIENT_ID, TENANT_ID};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::Value;
use sigstamp::admin::auth::AuditEntry;
use sigstamp::app::App;
use smtp_support::Pki;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

use templates_support::{ADMINS_ROLE, EDITORS_GROUP};

struct Site {
    base: String,
    fake: FakeGraph,
    app: Arc<App>,
    audit: PathBuf,
    pki: Pki,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.app.shutdown.cancel();
        self.task.abort();
    }
}

async fn site() -> Site {
    let fake = FakeGraph::start().await;
    let pki = Pki::new("unused");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let audit = pki.dir.path().join("audit.jsonl");
    let redirect = format!("{base}/auth/callback");
    fake.oidc(|o| o.redirect_uris = vec![redirect.clone()]);
    let app = app(&templates_support::auth_config(
        &pki, &audit, &redirect, &fake.base,
    ));
    let (auth, tls) = sigstamp::admin::setup(&app.config.admin).expect("admin setup");
    assert!(tls.is_some());
    let task = admin_support::serve_admin(&app, auth, listener, tls);
    Site {
        base,
        fake,
        app,
        audit,
        pki,
        task,
    }
}

impl Site {
    /// A browser: a cookie store, trusts the test CA, redirects followed by hand.
    fn browser(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.pki.ca).unwrap()).unwrap();
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .tls_certs_only([ca])
            .build()
            .unwrap()
    }

    /// `/auth/login` → the fake's authorize (the login form's fields given in the query) →
    /// back to `/auth/callback`: the callback's response.
    async fn sign_in(
        &self,
        b: &reqwest::Client,
        upn: &str,
        groups: &str,
        roles: &str,
        next: &str,
    ) -> reqwest::Response {
        let r = b
            .get(format!("{}/auth/login?next={next}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let authorize = location(&r);
        assert!(authorize.starts_with(&self.fake.base), "{authorize}");
        for p in [
            "code_challenge_method=S256",
            "code_challenge=",
            "nonce=",
            "state=",
            "scope=openid",
        ] {
            assert!(authorize.contains(p), "{p} in {authorize}");
        }
        // The login form (GET), then the user picked in it.
        let form = b.get(&authorize).send().await.unwrap();
        assert_eq!(form.status(), 200);
        assert!(form.text().await.unwrap().contains("login_upn"));
        let mut picked = reqwest::Url::parse(&authorize).unwrap();
        picked
            .query_pairs_mut()
            .append_pair("login_upn", upn)
            .append_pair("login_groups", groups)
            .append_pair("login_roles", roles);
        let r = b.get(picked).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let callback = location(&r);
        assert!(
            callback.starts_with(&format!("{}/auth/callback?", self.base)),
            "{callback}"
        );
        b.get(callback).send().await.unwrap()
    }

    async fn me(&self, b: &reqwest::Client) -> (StatusCode, Value) {
        let r = b
            .get(format!("{}/auth/me", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    fn audit_entries(&self) -> Vec<AuditEntry> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn admin_editor_and_plain_user_sign_in_with_their_roles() {
    let s = site().await;

    // Admin by app role; lands on the page it asked for.
    let admin = s.browser();
    let r = s
        .sign_in(&admin, "ada@example.com", "", ADMINS_ROLE, "/audit")
        .await;
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-sigstamp-session="))
        .expect("session cookie");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=28800",
    ] {
        assert!(session.contains(attr), "{attr} in {session}");
    }
    let landing = r.text().await.unwrap();
    assert!(
        landing.contains("url=/audit"),
        "same-site landing: {landing}"
    );
    let (code, me) = s.me(&admin).await;
    assert_eq!(code, 200);
    assert_eq!(me["upn"], "ada@example.com");
    assert_eq!(me["role"], "admin");
    assert!(me["csrf"].as_str().unwrap().len() >= 32);
    let audit = admin.get(format!("{}/audit", s.base)).send().await.unwrap();
    assert_eq!(audit.status(), 200);
    let csp = audit.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("img-src 'self' data:") && !csp.contains("https:"),
        "{csp}"
    );
    let page = audit.text().await.unwrap();
    assert!(
        page.contains("sign_in") && page.contains("ada@example.com"),
        "{page}"
    );
    // The status page (directory previews) is for editors and admins.
    assert_eq!(
        admin
            .get(format!("{}/", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Editor by group id (case-insensitive).
    let editor = s.browser();
    let r = s
        .sign_in(
            &editor,
            "alan@example.com",
            &EDITORS_GROUP.to_uppercase(),
            "",
            "/",
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.me(&editor).await.1["role"], "editor");
    let page = editor.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // The status page carries the signed-in navigation: the editor's pages and sign-out.
    let page = page.text().await.unwrap();
    for link in [
        "href=\"/templates\"",
        "href=\"/overrides\"",
        "action=\"/auth/logout\"",
    ] {
        assert!(page.contains(link), "{link} on the status page");
    }
    assert!(
        !page.contains("href=\"/audit\""),
        "an editor has no audit link"
    );
    assert_eq!(
        editor
            .get(format!("{}/audit", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // Anyone else of the tenant: a plain user, 403 on admin pages.
    let user = s.browser();
    let r = s
        .sign_in(
            &user,
            "grace@example.com",
            "some-other-group",
            "Reader",
            "/",
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.me(&user).await.1["role"], "user");
    for path in ["/audit", "/"] {
        let r = user.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }

    // Not signed in: pages send the browser to sign in and back; JSON answers 401 for POST.
    let anon = s.browser();
    let r = anon.get(format!("{}/audit", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/auth/login?next=%2Faudit");
    // Health stays open for load balancers.
    assert_eq!(
        anon.get(format!("{}/healthz", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let entries = s.audit_entries();
    let signed_in: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e.action == "sign_in")
        .map(|e| (e.who.as_str(), e.after["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        signed_in,
        [
            ("ada@example.com", "admin"),
            ("alan@example.com", "editor"),
            ("grace@example.com", "user")
        ]
    );
}

#[tokio::test]
async fn bad_id_tokens_are_refused_and_audited() {
    let s = site().await;
    for (minted, why) in [
        (Minted::Forged, "signature"),
        (Minted::Expired, "expired"),
        (Minted::WrongAudience, "audience"),
        (Minted::WrongNonce, "nonce"),
    ] {
        let b = s.browser();
        s.fake.oidc(|o| o.next_token = minted);
        let r = s
            .sign_in(&b, "mallory@example.com", "", ADMINS_ROLE, "/")
            .await;
        assert_eq!(r.status(), 403, "{minted:?}");
        assert!(!r
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("__Host-sigstamp-session=x")),);
        let body = r.text().await.unwrap().to_lowercase();
        assert!(body.contains(why), "{minted:?}: {body}");
        assert_eq!(s.me(&b).await.0, 401, "{minted:?}: no session");
    }
    // An error sent back by the identity provider.
    let b = s.browser();
    s.fake.oidc(|o| {
        o.next_error = Some((
            "access_denied".into(),
            "AADSTS50105: The signed in user is not assigned to a role for the application.".into(),
        ))
    });
    let r = s.sign_in_expect_error(&b).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("AADSTS50105"));

    // A callback that is not this browser's sign-in (state from elsewhere) is refused.
    let b = s.browser();
    let r = b
        .get(format!("{}/auth/callback?code=abc&state=xyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let refused = s
        .audit_entries()
        .into_iter()
        .filter(|e| e.action == "sign_in_refused")
        .count();
    assert_eq!(refused, 6);
    assert!(!s.audit_entries().iter().any(|e| e.action == "sign_in"));
}

impl Site {
    /// A sign-in whose authorize answers with an error on the redirect.
    async fn sign_in_expect_error(&self, b: &reqwest::Client) -> reqwest::Response {
        let r = b
            .get(format!("{}/auth/login", self.base))
            .send()
            .await
            .unwrap();
        let r = b.get(location(&r)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let callback = location(&r);
        assert!(callback.contains("error=access_denied"), "{callback}");
        b.get(callback).send().await.unwrap()
    }
}

#[tokio::test]
async fn key_rollover_fetches_the_keys_again() {
    let s = site().await;
    let b = s.browser();
    assert_eq!(
        s.sign_in(&b, "ada@example.com", "", ADMINS_ROLE, "/")
            .await
            .status(),
        200
    );
    let fetched = s.fake.oidc(|o| o.jwks_fetches);
    assert_eq!(fetched, 1);
    // A second sign-in uses the cached keys.
    let b = s.browser();
    assert_eq!(
        s.sign_in(&b, "ada@example.com", "", ADMINS_ROLE, "/")
            .await
            .status(),
        200
    );
    assert_eq!(s.fake.oidc(|o| o.jwks_fetches), 1);
    // New kid: one more fetch, and the sign-in works.
    let kid = s.fake.oidc(|o| o.roll_signing_key());
    assert_eq!(kid, "key-2");
    let b = s.browser();
    assert_eq!(
        s.sign_in(&b, "ada@example.com", "", ADMINS_ROLE, "/")
            .await
            .status(),
        200
    );
    assert_eq!(s.fake.oidc(|o| o.jwks_fetches), 2);
    assert_eq!(s.me(&b).await.1["role"], "admin");
}

#[tokio::test]
async fn csrf_token_is_required_on_every_change_and_sign_out_works() {
    let s = site().await;
    let b = s.browser();
    s.sign_in(&b, "ada@example.com", "", ADMINS_ROLE, "/").await;
    let csrf = s.me(&b).await.1["csrf"].as_str().unwrap().to_string();
    let logout = format!("{}/auth/logout", s.base);

    // Missing, wrong, or another session's token: refused, still signed in.
    let r = b.post(&logout).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = b
        .post(&logout)
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let other = s.browser();
    s.sign_in(&other, "alan@example.com", "", ADMINS_ROLE, "/")
        .await;
    let other_csrf = s.me(&other).await.1["csrf"].as_str().unwrap().to_string();
    assert_ne!(other_csrf, csrf);
    let r = b
        .post(&logout)
        .header("x-csrf-token", &other_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The right token from another site's page: refused by Origin.
    let r = b
        .post(&logout)
        .header("origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.me(&b).await.0, 200);

    // A POST without a session: 401.
    let anon = s.browser();
    assert_eq!(
        anon.post(&logout)
            .form(&[("csrf", "x")])
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // The right token in the form: signed out, audited.
    let r = b
        .post(&logout)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.me(&b).await.0, 401);
    let last = s.audit_entries().pop().unwrap();
    assert_eq!(
        (last.who.as_str(), last.action.as_str()),
        ("ada@example.com", "sign_out")
    );
}

#[test]
fn start_up_refuses_non_loopback_without_sign_in_and_tls() {
    let parse = |t: &str| {
        sigstamp::config::Config::parse(t)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let auth = format!(
        "[admin.auth]\ntenant_id = \"{TENANT_ID}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = \"x\"\nredirect_url = \"https://sig.example.com:8443/auth/callback\"\n\
         admins = [\"{ADMINS_ROLE}\"]\n"
    );
    let tls = "tls_cert = \"/etc/sigstamp/admin.pem\"\ntls_key = \"/etc/sigstamp/admin.key\"\n";
    let err = parse(&format!("[admin]\nlisten = \"0.0.0.0:8443\"\n{tls}")).unwrap_err();
    assert!(
        err.contains("admin.listen") && err.contains("[admin.auth]"),
        "{err}"
    );
    let err = parse(&format!("[admin]\nlisten = \"0.0.0.0:8443\"\n{auth}")).unwrap_err();
    assert!(err.contains("tls_cert"), "{err}");
    assert!(parse(&format!("[admin]\nlisten = \"0.0.0.0:8443\"\n{tls}{auth}")).is_ok());
    // Sign-in needs TLS on loopback too (the cookie is Secure).
    let err = parse(&format!("[admin]\nlisten = \"127.0.0.1:8443\"\n{auth}")).unwrap_err();
    assert!(err.contains("tls_cert"), "{err}");
    // local_admin: loopback only, never with [admin.auth].
    let err = parse("[admin]\nlisten = \"0.0.0.0:8443\"\nlocal_admin = true\n").unwrap_err();
    assert!(err.contains("admin.listen"), "{err}");
    assert!(parse("[admin]\nlisten = \"127.0.0.1:8025\"\nlocal_admin = true\n").is_ok());
    let err = parse(&format!(
        "[admin]\nlisten = \"127.0.0.1:8443\"\nlocal_admin = true\n{tls}{auth}"
    ))
    .unwrap_err();
    assert!(err.contains("admin.local_admin"), "{err}");
    // Plain-http authority off loopback is refused.
    let err = parse(&format!(
        "[admin]\nlisten = \"127.0.0.1:8443\"\n{tls}{auth}authority = \"http://login.example\"\n"
    ))
    .unwrap_err();
    assert!(err.contains("admin.auth.authority"), "{err}");
}

#[tokio::test]
async fn sigstamp_serve_refuses_to_start_on_a_public_address_without_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sigstamp.toml");
    std::fs::write(&cfg, "[admin]\nlisten = \"0.0.0.0:18025\"\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigstamp"))
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), out)
        .await
        .expect("exits")
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["admin.listen", "[admin.auth]", "tls_cert", "tls_key"] {
        assert!(err.contains(key), "{key} in {err}");
    }
}

#[tokio::test]
async fn local_admin_without_sign_in_checks_csrf_and_audits_as_local() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let app = app(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nlocal_admin = true\naudit_log = {audit:?}\n"
    ));
    let (base, _task) = admin_support::start_admin(app.clone()).await;
    let c = reqwest::Client::new();
    let me: Value = c
        .get(format!("{base}/auth/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["upn"].as_str(), me["role"].as_str()),
        (Some("local"), Some("admin"))
    );
    // Without local_admin and sign-in: the read-only pages only.
    let app2 = app_plain();
    let (plain, _t) = admin_support::start_admin(app2.clone()).await;
    let cases = [
        (&base, "GET", "/audit", 200),
        // Still CSRF-checked: a page on another site cannot post to loopback.
        (&base, "POST", "/auth/logout", 403),
        // The status page stays open as before.
        (&base, "GET", "/", 200),
        (&plain, "GET", "/", 200),
        (&plain, "GET", "/audit", 403),
        (&plain, "GET", "/auth/me", 403),
    ];
    for (site, method, path, want) in cases {
        let r = c
            .request(method.parse().unwrap(), format!("{site}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{method} {site}{path}");
    }
    app.shutdown.cancel();
    app2.shutdown.cancel();
}

fn app_plain() -> Arc<App> {
    app("[admin]\nlisten = \"127.0.0.1:0\"\n")
}
