//! Credentials and token state against the fake Entra ID: client secret, certificate
//! (RS256 + x5t and PS256 + x5t#S256), delegated refresh token with rotation; tokens going
//! dead while the directory keeps its last-known users; recovery without restart; restart
//! with dead tokens from the snapshot.

mod fake_graph;

use base64::Engine;
use fake_graph::*;
use serde_json::{json, Value};
use sigstamp::app::App;
use sigstamp::config::{Config, DirectoryConfig};
use sigstamp::directory::graph::clock::{Clock, ManualClock};
use sigstamp::directory::graph::sync::Progress;
use sigstamp::directory::graph::GraphConfig;
use sigstamp::directory::{Directory, Source};
use sigstamp::metrics::Metrics;
use sigstamp::pipeline::Stamper;
use sigstamp::render::Templates;
use sigstamp::status::{Status, TokenState};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A throwaway RSA certificate and key, written as PEM into `dir`.
fn make_cert(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["sigstamp-test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("client.crt"), dir.join("client.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert.der().to_vec())
}

fn jwt_part(jwt: &str, i: usize) -> Value {
    let part = jwt.split('.').nth(i).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

async fn one_sync(cfg: &GraphConfig, fake: &FakeGraph) -> Result<usize, String> {
    let mut sy = syncer(cfg, fake.clock.clone());
    sy.sync(&mut |_: Progress| {})
        .await
        .map(|r| r.users)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn certificate_credentials_in_both_header_forms() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = make_cert(dir.path());
    let cred = format!("client_certificate = {cert:?}\nclient_key = {key:?}");

    // Not registered yet: AADSTS700027.
    let err = one_sync(&fake.config_toml(&cred), &fake).await.unwrap_err();
    assert!(err.contains("AADSTS700027"), "{err}");

    fake.register_cert(der.clone());
    assert_eq!(one_sync(&fake.config_toml(&cred), &fake).await.unwrap(), 3);
    let (x5t, x5t256) = thumbs(&der);
    let tok = fake.requests_of(Kind::Token);
    let last = tok.last().unwrap();
    assert_eq!(last.status, 200);
    assert_eq!(
        last.field("client_assertion_type"),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    assert!(last.field("client_secret").is_none());
    let jwt = last.field("client_assertion").unwrap();
    let h = jwt_part(jwt, 0);
    assert_eq!(
        (h["alg"].as_str(), h["typ"].as_str(), h["x5t"].as_str()),
        (Some("RS256"), Some("JWT"), Some(x5t.as_str()))
    );
    let c = jwt_part(jwt, 1);
    assert_eq!(
        c["aud"],
        json!(format!("{}/{TENANT}/oauth2/v2.0/token", fake.base))
    );
    assert_eq!(
        (c["iss"].as_str(), c["sub"].as_str()),
        (Some(CLIENT_ID), Some(CLIENT_ID))
    );
    let (nbf, exp) = (c["nbf"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!(exp - nbf > 0 && exp - nbf <= 600);

    let ps = fake.config_toml(&format!("{cred}\nassertion_algorithm = \"PS256\""));
    assert_eq!(one_sync(&ps, &fake).await.unwrap(), 3);
    let jwt2 = fake
        .requests_of(Kind::Token)
        .last()
        .unwrap()
        .field("client_assertion")
        .unwrap()
        .to_string();
    let h2 = jwt_part(&jwt2, 0);
    assert_eq!(
        (h2["alg"].as_str(), h2["x5t#S256"].as_str()),
        (Some("PS256"), Some(x5t256.as_str()))
    );
    assert!(h2.get("x5t").is_none());
    assert_ne!(
        jwt_part(&jwt2, 1)["jti"],
        c["jti"],
        "a fresh assertion every time"
    );

    // A host clock far off: the fake rejects the assertion as out of its time range.
    fake.clock.advance(Duration::from_secs(3600));
    let skewed = Arc::new(ManualClock::new(
        fake.clock.now() - Duration::from_secs(7200),
    ));
    let mut sy = syncer(&ps, skewed);
    let err = sy
        .sync(&mut |_: Progress| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("AADSTS700024"), "{err}");
}

#[tokio::test]
async fn refresh_token_is_used_and_rotated_in_a_0600_file() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let dir = tempfile::tempdir().unwrap();
    let rt_path = dir.path().join("refresh_token");
    let rt0 = fake.issue_refresh_token();
    std::fs::write(&rt_path, format!("{rt0}\n")).unwrap();
    let cfg = fake.config_toml(&format!("refresh_token_file = {rt_path:?}"));
    assert_eq!(one_sync(&cfg, &fake).await.unwrap(), 3);

    let tok = fake.requests_of(Kind::Token);
    assert_eq!(tok[0].field("grant_type"), Some("refresh_token"));
    assert_eq!(tok[0].field("refresh_token"), Some(rt0.as_str()));
    assert_eq!(
        tok[0].field("scope"),
        Some("https://graph.microsoft.com/User.Read.All offline_access")
    );
    let rt1 = std::fs::read_to_string(&rt_path)
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(rt1, rt0, "rotated");
    assert!(fake.refresh_token_alive(&rt1));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&rt_path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The next token request uses the rotated token.
    assert_eq!(one_sync(&cfg, &fake).await.unwrap(), 3);
    assert_eq!(
        fake.requests_of(Kind::Token)
            .last()
            .unwrap()
            .field("refresh_token"),
        Some(rt1.as_str())
    );
}

#[tokio::test]
async fn device_code_login_stores_a_refresh_token() {
    let fake = FakeGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rt_path = dir.path().join("rt");
    let cfg = fake.config_toml(&format!("refresh_token_file = {rt_path:?}"));
    let tp = cfg.token_provider(cfg.http_client().unwrap(), fake.clock.clone());
    let dc = tp
        .device_code_start(&cfg.authority, &cfg.tenant_id)
        .await
        .unwrap();
    assert_eq!(dc.user_code, "FAKE-CODE");
    tp.device_code_finish(&dc, &rt_path).await.unwrap();
    let rt = std::fs::read_to_string(&rt_path).unwrap();
    assert!(fake.refresh_token_alive(rt.trim()));
    let polls = fake.requests_of(Kind::Token);
    assert_eq!(polls.len(), 2, "pending once, then granted");
    assert_eq!(
        polls[0].field("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:device_code")
    );
}

#[tokio::test]
async fn token_endpoint_errors_carry_the_aadsts_code() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    type Break = Box<dyn Fn(&FakeGraph)>;
    let cases: Vec<(Break, &str)> = vec![
        (Box::new(|f| f.set_secret("another")), "AADSTS7000215"),
        (
            Box::new(|f| f.expire_secret_at(f.clock.now())),
            "AADSTS7000222",
        ),
        (
            Box::new(|f| f.with(|s| s.consent_revoked = true)),
            "AADSTS65001",
        ),
    ];
    for (break_it, code) in cases {
        let fake = FakeGraph::start().await;
        break_it(&fake);
        let err = one_sync(&fake.config(), &fake).await.unwrap_err();
        assert!(err.contains(code), "{code}: {err}");
        let e = &fake.requests_of(Kind::Token)[0];
        assert!(e.status == 401 || e.status == 400);
    }
    let mut wrong_tenant = fake.config();
    wrong_tenant.tenant_id = "nope.onmicrosoft.com".into();
    assert!(one_sync(&wrong_tenant, &fake)
        .await
        .unwrap_err()
        .contains("AADSTS90002"));
    let mut wrong_app = fake.config();
    wrong_app.client_id = "00000000-0000-0000-0000-000000000000".into();
    assert!(one_sync(&wrong_app, &fake)
        .await
        .unwrap_err()
        .contains("AADSTS700016"));
}

// ---- the refresher (`run`) -------------------------------------------------------------

struct Running {
    app: Arc<App>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(cfg: GraphConfig, snapshot: Option<PathBuf>, clock: Arc<ManualClock>) -> Running {
        Self::start_with(cfg, snapshot, clock, false)
    }

    /// `preload`: load the snapshot before the refresher starts, as `sigstamp serve` does.
    fn start_with(
        cfg: GraphConfig,
        snapshot: Option<PathBuf>,
        clock: Arc<ManualClock>,
        preload: bool,
    ) -> Running {
        let directory = Arc::new(Directory::new());
        if preload {
            let path = snapshot.as_deref().unwrap();
            sigstamp::directory::snapshot::load(path, &directory)
                .unwrap()
                .unwrap();
        }
        let config = Config {
            graph: Some(cfg),
            directory: DirectoryConfig {
                snapshot,
                ..Default::default()
            },
            ..Default::default()
        };
        let app = Arc::new(App {
            config,
            directory: directory.clone(),
            stamper: Arc::new(Stamper::new(directory, Templates::embedded())),
            metrics: Arc::new(Metrics::new()),
            status: Arc::new(Status::default()),
            photos: Arc::new(sigstamp::directory::photo::NoPhotos),
            shutdown: CancellationToken::new(),
        });
        let task = tokio::spawn(sigstamp::directory::graph::run(
            app.config.graph.clone(),
            app.sync_target(clock),
            Default::default(),
            app.shutdown.clone(),
        ));
        Running { app, task }
    }

    fn state(&self) -> TokenState {
        self.app.status.token.load().state
    }

    fn directory(&self) -> &Directory {
        &self.app.directory
    }

    fn title_of(&self, addr: &str) -> Option<String> {
        self.directory()
            .lookup(addr)
            .and_then(|u| u.str("jobTitle").map(str::to_string))
    }

    async fn stop(self) {
        self.app.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A fake on a clock that only moves when the test says so.
async fn manual_fake() -> FakeGraph {
    FakeGraph::start_with_clock(Arc::new(ManualClock::starting_now())).await
}

/// Wait for `cond` while moving the fake clock by `step` every few milliseconds, so the
/// refresher's sleeps end whatever it was doing when the clock moved.
async fn advancing(fake: &FakeGraph, step: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        fake.clock.advance(step);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn dead_tokens_keep_last_known_users_and_recover_without_restart() {
    type Break = fn(&FakeGraph);
    type Fix = fn(&FakeGraph, &Path);
    let scenarios: [(&str, &str, Break, Fix); 3] = [
        (
            "secret expired",
            "AADSTS7000222",
            |f| f.expire_secret_at(f.clock.now()),
            |f, _| f.set_secret(SECRET),
        ),
        (
            "secret invalid",
            "AADSTS7000215",
            |f| f.set_secret("rotated-by-someone"),
            |f, _| f.set_secret(SECRET),
        ),
        (
            "refresh token revoked",
            "AADSTS50173",
            |f| f.revoke_refresh_tokens(50173),
            // `sigstamp login` writes a new refresh token; no restart needed.
            |f, rt| std::fs::write(rt, f.issue_refresh_token()).unwrap(),
        ),
    ];
    for (name, code, break_it, fix_it) in scenarios {
        let fake = manual_fake().await;
        seed_abc(&fake);
        let dir = tempfile::tempdir().unwrap();
        let rt_path = dir.path().join("rt");
        let cfg = if name.starts_with("refresh") {
            std::fs::write(&rt_path, fake.issue_refresh_token()).unwrap();
            fake.config_toml(&format!("refresh_token_file = {rt_path:?}"))
        } else {
            fake.config()
        };
        let r = Running::start(cfg, Some(dir.path().join("snap.json")), fake.clock.clone());
        // `valid` comes with the first token; the users with the end of the first sync.
        eventually("first sync", || {
            r.state() == TokenState::Valid && r.app.status.last_sync.load().is_some()
        })
        .await;
        assert_eq!(
            r.title_of("adele@contoso.test").as_deref(),
            Some("Engineer")
        );
        assert!(r.app.status.last_sync.load().is_some());

        // Tokens die; the cached access token must expire too before it matters.
        break_it(&fake);
        advancing(&fake, Duration::from_secs(120), name, || {
            r.state() == TokenState::Expired
        })
        .await;
        fake.update_user("id-a", json!({"jobTitle": "Changed while dead"}));
        let st = r.app.status.token.load_full();
        assert_eq!(st.error_code.as_deref(), Some(code), "{name}");
        assert!(st.description.contains("What to do"), "{}", st.description);
        assert_eq!(
            r.title_of("adele@contoso.test").as_deref(),
            Some("Engineer"),
            "last-known users kept"
        );
        assert_eq!(r.directory().source(), Source::Graph);
        let metrics = r.app.metrics.encode();
        assert!(
            metrics.contains("sigstamp_token_state{state=\"expired\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("sigstamp_sync_failures_total"),
            "{metrics}"
        );

        // Retries go on with backoff, but the state (and its `since`) is set once.
        let tokens_before = fake.requests_of(Kind::Token).len();
        advancing(&fake, Duration::from_secs(60), "retries continue", || {
            fake.requests_of(Kind::Token).len() > tokens_before + 3
        })
        .await;
        assert_eq!(
            r.app.status.token.load().since,
            st.since,
            "{name}: not re-set per retry"
        );

        fix_it(&fake, &rt_path);
        advancing(&fake, Duration::from_secs(60), "recovered", || {
            r.state() == TokenState::Valid
        })
        .await;
        eventually("changed values appear", || {
            r.title_of("adele@contoso.test").as_deref() == Some("Changed while dead")
        })
        .await;
        r.stop().await;
    }
}

#[tokio::test]
async fn restart_with_dead_tokens_serves_the_snapshot() {
    let fake = manual_fake().await;
    seed_abc(&fake);
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("directory.json");
    let r = Running::start(fake.config(), Some(snap.clone()), fake.clock.clone());
    eventually("first sync", || r.state() == TokenState::Valid).await;
    eventually("snapshot written", || snap.exists()).await;
    let synced = r.app.status.last_sync.load().expect("synced");
    r.stop().await;

    fake.expire_secret_at(fake.clock.now());
    let r2 = Running::start(fake.config(), Some(snap.clone()), fake.clock.clone());
    eventually("expired", || r2.state() == TokenState::Expired).await;
    assert_eq!(r2.directory().source(), Source::Snapshot);
    // The last sync is the one the snapshot holds.
    assert_eq!(**r2.app.status.last_sync.load(), Some(synced));
    assert_eq!(
        r2.title_of("bob.alias@contoso.test").as_deref(),
        Some("Engineer")
    );
    assert!(r2
        .app
        .status
        .directory_loaded
        .load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(
        r2.app.status.token.load().error_code.as_deref(),
        Some("AADSTS7000222")
    );
    r2.stop().await;

    // The same with the snapshot already loaded by `serve`; a fixed secret then syncs.
    let r3 = Running::start_with(fake.config(), Some(snap.clone()), fake.clock.clone(), true);
    assert_eq!(r3.directory().source(), Source::Snapshot);
    eventually("expired", || r3.state() == TokenState::Expired).await;
    assert_eq!(r3.directory().source(), Source::Snapshot);
    fake.set_secret(SECRET);
    advancing(&fake, Duration::from_secs(60), "recovered", || {
        r3.state() == TokenState::Valid
    })
    .await;
    eventually("graph data", || r3.directory().source() == Source::Graph).await;
    r3.stop().await;
}

#[tokio::test]
async fn transient_failures_are_failing_not_expired() {
    let fake = manual_fake().await;
    seed_abc(&fake);
    fake.with(|s| {
        s.token_faults.push_back(Fault::new(503, None));
        s.token_faults.push_back(Fault::new(429, Some("30")));
    });
    let r = Running::start(fake.config(), None, fake.clock.clone());
    eventually("failing", || r.state() == TokenState::Failing).await;
    assert_eq!(
        r.app.status.token.load().error_code.as_deref(),
        Some("AADSTS90033")
    );
    advancing(&fake, Duration::from_secs(5), "valid after backoff", || {
        r.state() == TokenState::Valid
    })
    .await;
    // The 429's Retry-After was honoured by the refresher's backoff.
    let tok = fake.requests_of(Kind::Token);
    let gap = Duration::try_from(tok[2].at - tok[1].at).unwrap();
    assert!(gap >= Duration::from_secs(30), "{gap:?}");
    r.stop().await;
}

#[tokio::test]
async fn missing_permission_is_expired_with_the_graph_code() {
    let fake = manual_fake().await;
    seed_abc(&fake);
    fake.with(|s| s.permission_granted = false);
    let r = Running::start(fake.config(), None, fake.clock.clone());
    eventually("expired", || r.state() == TokenState::Expired).await;
    let st = r.app.status.token.load_full();
    assert_eq!(
        st.error_code.as_deref(),
        Some("Authorization_RequestDenied")
    );
    assert!(st.description.contains("User.Read.All"));
    r.stop().await;
}

#[tokio::test]
async fn unconfigured_without_a_graph_section() {
    let directory = Arc::new(Directory::new());
    let app = Arc::new(App {
        config: Config::default(),
        directory: directory.clone(),
        stamper: Arc::new(Stamper::new(directory, Templates::embedded())),
        metrics: Arc::new(Metrics::new()),
        status: Arc::new(Status::default()),
        photos: Arc::new(sigstamp::directory::photo::NoPhotos),
        shutdown: CancellationToken::new(),
    });
    let target = app.sync_target(Arc::new(sigstamp::directory::graph::clock::SystemClock));
    sigstamp::directory::graph::run(None, target, Default::default(), app.shutdown.clone())
        .await
        .unwrap();
    assert_eq!(app.status.token.load().state, TokenState::Unconfigured);
    assert!(app
        .metrics
        .encode()
        .contains("sigstamp_token_state{state=\"unconfigured\"} 1"));
}

#[tokio::test]
async fn every_refresh_token_death_is_expired_with_its_code() {
    use sigstamp::directory::graph::state::describe;
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let dir = tempfile::tempdir().unwrap();
    let rt_path = dir.path().join("rt");
    let cfg = fake.config_toml(&format!("refresh_token_file = {rt_path:?}"));
    for code in [700082, 70008, 50173, 70043, 50076, 50078, 50079] {
        std::fs::write(&rt_path, fake.issue_refresh_token()).unwrap();
        fake.revoke_refresh_tokens(code);
        let mut sy = syncer(&cfg, fake.clock.clone());
        let err = sy.sync(&mut |_: Progress| {}).await.unwrap_err();
        let st = describe(&err, fake.clock.now());
        assert_eq!(st.state, TokenState::Expired, "{code}: {err}");
        assert_eq!(st.error_code, Some(format!("AADSTS{code}")));
        assert!(
            st.description.contains("sigstamp login"),
            "{code}: {}",
            st.description
        );
    }
    // No refresh token file at all: expired, and the description says what to run.
    std::fs::remove_file(&rt_path).unwrap();
    let err = syncer(&cfg, fake.clock.clone())
        .sync(&mut |_: Progress| {})
        .await
        .unwrap_err();
    let st = describe(&err, fake.clock.now());
    assert_eq!(st.state, TokenState::Expired);
    assert!(
        st.description.contains("sigstamp login"),
        "{}",
        st.description
    );
}

#[tokio::test]
async fn token_request_loops_are_throttled_by_the_fake() {
    use sigstamp::directory::graph::state::describe;
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    fake.with(|s| s.loop_limit = Some(2));
    for _ in 0..2 {
        one_sync(&fake.config(), &fake).await.unwrap();
    }
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    let err = sy.sync(&mut |_: Progress| {}).await.unwrap_err();
    assert!(err.to_string().contains("AADSTS50196"), "{err}");
    assert_eq!(describe(&err, fake.clock.now()).state, TokenState::Failing);
}

#[tokio::test]
async fn fake_token_endpoint_validates_requests_and_error_shape() {
    let fake = FakeGraph::start().await;
    let url = format!("{}/{TENANT}/oauth2/v2.0/token", fake.base);
    let http = reqwest::Client::new();
    let post = |form: Vec<(&'static str, &'static str)>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.post(&url).form(&form).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let base = vec![
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
    ];
    let with = |extra: Vec<(&'static str, &'static str)>| {
        base.iter().cloned().chain(extra).collect::<Vec<_>>()
    };

    let (st, body) = post(with(vec![("resource", "https://graph.microsoft.com")])).await;
    assert_eq!((st, body["error_codes"][0].as_u64()), (400, Some(901002)));
    let (st, body) = post(base.clone()).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_request")),
        "missing scope"
    );
    let (st, body) = post(with(vec![(
        "scope",
        "https://graph.microsoft.com/.default https://vault.azure.net/.default",
    )]))
    .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_scope")));
    let (st, body) = post(with(vec![(
        "scope",
        "https://graph.microsoft.com/.default",
    )]))
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["expires_in"], 3599);
    assert!(body["access_token"].is_string() && body.get("refresh_token").is_none());

    // HTTP Basic client authentication: form-urlencoded id and secret (RFC 6749 §2.3.1).
    let mut enc = reqwest::Url::parse("http://x/").unwrap();
    enc.query_pairs_mut().append_pair("s", SECRET);
    let secret_enc = enc.query().unwrap().trim_start_matches("s=").to_string();
    let r = http
        .post(&url)
        .basic_auth(CLIENT_ID, Some(secret_enc))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // §1.5 error shape, 401 for invalid_client.
    let (st, e) = post(vec![
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", "nope"),
        ("scope", "https://graph.microsoft.com/.default"),
    ])
    .await;
    assert_eq!(st, 401);
    assert_eq!(e["error"], "invalid_client");
    let desc = e["error_description"].as_str().unwrap();
    assert!(desc.starts_with("AADSTS7000215: "), "{desc}");
    assert!(
        desc.contains("\r\nTrace ID: ")
            && desc.contains("\r\nCorrelation ID: ")
            && desc.contains("\r\nTimestamp: ")
    );
    let ts = e["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && &ts[10..11] == " ",
        "{ts}"
    );
    for k in ["trace_id", "correlation_id", "error_uri"] {
        assert!(e[k].is_string(), "{k}");
    }
}

// ---- the state tells the truth (issue 11, finding 10) ----------------------------------

/// Graph requests the fake answered with `status`.
fn graph_answers(fake: &FakeGraph, status: u16) -> usize {
    fake.requests_of(Kind::Graph)
        .iter()
        .filter(|r| r.status == status)
        .count()
}

/// The log lines written on this thread while it is alive (the tests' runtime runs the
/// refresher on the test's own thread).
struct Captured {
    buf: Arc<std::sync::Mutex<Vec<u8>>>,
    _on: tracing::subscriber::DefaultGuard,
}

impl Captured {
    fn start() -> Self {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Writer(w.clone()))
            .finish();
        Captured {
            buf,
            _on: tracing::subscriber::set_default(subscriber),
        }
    }

    fn lines_with(&self, needle: &str) -> usize {
        let text = String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned();
        text.lines().filter(|l| l.contains(needle)).count()
    }
}

struct Writer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A page that keeps failing (503 without Retry-After) turns the state to `failing` as soon
/// as the first retry fails, while the client's retries go on; `since` is set and the state
/// logged once.
#[tokio::test]
async fn a_page_that_keeps_failing_is_failing_at_the_first_failed_retry() {
    let log = Captured::start();
    let fake = manual_fake().await;
    seed_abc(&fake);
    fake.with(|s| {
        s.delta_page_size = 1;
        s.page_faults = (0..20).map(|_| Fault::new(503, None)).collect();
    });
    let r = Running::start(fake.config(), None, fake.clock.clone());
    // Steps of 1 s: the retries wait 3 s and then 6 s (±20 %), so the state is looked at
    // between the first retry's failure and the next one.
    advancing(&fake, Duration::from_secs(1), "failing", || {
        r.state() == TokenState::Failing
    })
    .await;
    assert_eq!(
        graph_answers(&fake, 503),
        2,
        "failing right after the first retry failed"
    );
    let st = r.app.status.token.load_full();
    assert_eq!(st.error_code.as_deref(), Some("serviceNotAvailable"));
    assert!(st.description.contains("503"), "{}", st.description);
    assert!(
        r.app.status.last_sync.load().is_none(),
        "the sync is not over"
    );

    // The retries go on; the state and its `since` stay.
    advancing(&fake, Duration::from_secs(1), "more retries", || {
        graph_answers(&fake, 503) >= 4
    })
    .await;
    assert_eq!(r.state(), TokenState::Failing);
    assert_eq!(r.app.status.token.load().since, st.since);
    assert_eq!(
        log.lines_with("Graph token state: failing"),
        1,
        "logged once"
    );

    // Graph answers again: the same sync completes.
    fake.with(|s| s.page_faults.clear());
    advancing(&fake, Duration::from_secs(1), "synced", || {
        r.state() == TokenState::Valid && r.app.status.last_sync.load().is_some()
    })
    .await;
    assert_eq!(r.directory().snapshot().len(), 3);
    r.stop().await;
}

/// Until the token endpoint first answers the state is `starting`, not `unconfigured`.
#[tokio::test]
async fn starting_until_the_first_token_answer() {
    let fake = manual_fake().await;
    seed_abc(&fake);
    fake.with(|s| s.token_stalls.push_back(Duration::from_millis(800)));
    let r = Running::start(fake.config(), None, fake.clock.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.requests_of(Kind::Token).is_empty(), "still unanswered");
    assert_eq!(r.state(), TokenState::Starting);
    assert!(r
        .app
        .metrics
        .encode()
        .contains("sigstamp_token_state{state=\"starting\"} 1"));
    eventually("the first sync", || {
        r.state() == TokenState::Valid && r.app.status.last_sync.load().is_some()
    })
    .await;
    r.stop().await;
}

/// The description follows the current error, even when the state and code stay the same.
#[tokio::test]
async fn the_description_follows_the_current_error() {
    let fake = manual_fake().await;
    seed_abc(&fake);
    fake.with(|s| s.graph_faults.push_back(Fault::proxy(502)));
    let r = Running::start(fake.config(), None, fake.clock.clone());
    eventually("failing", || r.state() == TokenState::Failing).await;
    let first = r.app.status.token.load_full();
    assert!(first.description.contains("502"), "{}", first.description);
    assert_eq!(first.error_code, None);

    fake.with(|s| s.graph_faults.push_back(Fault::proxy(500)));
    advancing(&fake, Duration::from_secs(1), "the second error", || {
        graph_answers(&fake, 500) == 1
    })
    .await;
    eventually("the description follows", || {
        r.app.status.token.load().description.contains("500")
    })
    .await;
    let second = r.app.status.token.load_full();
    assert_eq!(second.state, TokenState::Failing);
    assert!(
        !second.description.contains("502"),
        "{}",
        second.description
    );
    assert_eq!(second.since, first.since, "the same episode");
    r.stop().await;
}

/// A request that times out says so, on /status and in the failure metric.
#[tokio::test]
async fn a_timeout_says_timeout() {
    let fake = manual_fake().await;
    seed_abc(&fake);
    fake.with(|s| s.graph_stalls.push_back(Duration::from_secs(3)));
    let mut cfg = fake.config();
    cfg.request_timeout = Duration::from_millis(500);
    let r = Running::start(cfg, None, fake.clock.clone());
    eventually("failing", || r.state() == TokenState::Failing).await;
    let st = r.app.status.token.load_full();
    assert!(st.description.contains("timeout"), "{}", st.description);
    assert_eq!(st.error_code.as_deref(), Some("timeout"));
    assert!(r
        .app
        .metrics
        .encode()
        .contains("sigstamp_sync_failures_total{kind=\"timeout\"} 1"));
    advancing(&fake, Duration::from_secs(5), "recovered", || {
        r.state() == TokenState::Valid && r.app.status.last_sync.load().is_some()
    })
    .await;
    r.stop().await;
}
