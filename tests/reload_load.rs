//! Reload under load: the real `sigstamp serve`, clients sending continuously over SMTP
//! into it (an in-process sink behind it) while templates, rules and the STARTTLS
//! certificate change and SIGHUP arrives. Every message accepted is delivered, none is
//! refused, a new signature shows within 2 s, a broken template keeps the old one.

mod serve_support;
mod smtp_support;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sigstamp_testkit::RecordingSink as Sink;
use smtp_support::RawClient;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SENDER: &str = "jose.mueller@lumen-optics.example";
/// Concurrent client sessions.
const CLIENTS: usize = 4;
/// Each client reconnects after this many messages (so new sessions start during reloads).
const PER_SESSION: usize = 25;

#[derive(Default)]
struct Counts {
    sent: AtomicUsize,
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

fn write(path: &Path, text: &str, mode: u32) {
    // Written in place, as an editor saving over the file does.
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn templates(dir: &Path, marker: &str) {
    write(
        &dir.join("templates/default.html.hbs"),
        &format!("<p>{marker} {{{{displayName}}}}</p>"),
        0o644,
    );
    write(
        &dir.join("templates/default.txt.hbs"),
        &format!("{marker} {{{{displayName}}}}"),
        0o644,
    );
}

/// A CA and a way to issue `localhost` certificates named `cn` from it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "reload test CA");
        let pem = p.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(p, key),
        }
    }

    fn issue(&self, dir: &Path, cn: &str) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        write(&dir.join("relay.key"), &key.serialize_pem(), 0o600);
        write(&dir.join("relay.pem"), &cert.pem(), 0o644);
    }
}

fn config(sink: SocketAddr, rules: &str) -> String {
    format!(
        "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"{sink}\"\nnext_hop_tls = \"none\"\n\
         tls_cert = \"relay.pem\"\ntls_key = \"relay.key\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [directory]\nfile = \"users.json\"\n\n\
         [templates]\ndir = \"templates\"\n{rules}"
    )
}

const SALES_RULE: &str =
    "\n[[rules]]\nname = \"jose\"\nsender = \"jose.mueller@lumen-optics.example\"\ntemplate = \"sales\"\n";

/// One client: sessions of PER_SESSION messages until `stop`.
async fn client(id: usize, relay: SocketAddr, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut c = RawClient::connect(relay).await.unwrap();
        assert!(c.reply().await.starts_with("220"));
        assert!(c.cmd("EHLO load.test").await.starts_with("250"));
        for _ in 0..PER_SESSION {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            n += 1;
            counts.sent.fetch_add(1, Ordering::SeqCst);
            let ok = c
                .cmd(&format!("MAIL FROM:<{SENDER}>"))
                .await
                .starts_with("250")
                && c.cmd("RCPT TO:<partner@example.org>")
                    .await
                    .starts_with("250")
                && c.cmd("DATA").await.starts_with("354")
                && {
                    c.send(&format!(
                        "From: <{SENDER}>\r\nTo: <partner@example.org>\r\nSubject: load {id}-{n}\r\n\
                         Message-ID: <load-{id}-{n}@load.test>\r\n\r\nHello {n}.\r\n"
                    ))
                    .await;
                    c.cmd(".").await.starts_with("250")
                };
            let counter = if ok {
                &counts.accepted
            } else {
                &counts.refused
            };
            counter.fetch_add(1, Ordering::SeqCst);
        }
        let _ = c.cmd("QUIT").await;
    }
}

/// Time from `since` until a message delivered after it carries `marker` (None: not
/// within 5 s); `from`: how many messages the sink held at `since`.
async fn until_marker(sink: &Sink, from: usize, marker: &str, since: Instant) -> Option<Duration> {
    while since.elapsed() < Duration::from_secs(5) {
        if sink.all()[from..].iter().any(|m| m.text().contains(marker)) {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// The last `n` delivered messages, as text.
fn last(sink: &Sink, n: usize) -> Vec<String> {
    let all = sink.all();
    all[all.len().saturating_sub(n)..]
        .iter()
        .map(|m| m.text())
        .collect()
}

/// The CN of the certificate a new STARTTLS handshake gets.
async fn handshake_cn(relay: SocketAddr, ca_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let mut c = RawClient::connect(relay).await.unwrap();
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO tls.test").await.contains("STARTTLS"));
    assert!(c.cmd("STARTTLS").await.starts_with("220"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(sigstamp::smtp::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = c.into_stream();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    cn
}

async fn status_config(admin: &str) -> serde_json::Value {
    let doc: serde_json::Value = reqwest::get(format!("http://{admin}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["config"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_nothing_and_applies_within_2s() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d: PathBuf = dir.path().to_path_buf();
    std::fs::create_dir(d.join("templates")).unwrap();
    templates(&d, "SIG-V1");
    write(
        &d.join("templates/sales.html.hbs"),
        "<p>SIG-SALES {{displayName}}</p>",
        0o644,
    );
    write(
        &d.join("templates/sales.txt.hbs"),
        "SIG-SALES {{displayName}}",
        0o644,
    );
    std::fs::copy("examples/directory.json", d.join("users.json")).unwrap();
    let ca = Ca::new();
    ca.issue(&d, "relay-v1");
    let cfg = config(sink.addr, "");
    let (guard, values, _, log) = tokio::task::spawn_blocking(move || {
        serve_support::serve_until(
            &cfg,
            dir,
            &[
                ("SMTP relay listening", "listen"),
                ("admin HTTP listening", "addr"),
            ],
        )
    })
    .await
    .unwrap();
    let relay: SocketAddr = values[0].parse().unwrap();
    let admin = values[1].clone();
    assert_eq!(handshake_cn(relay, &ca.pem).await, "relay-v1");

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(id, relay, stop.clone(), counts.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(last(&sink, 5).iter().all(|m| m.contains("SIG-V1")));
    let mut times = Vec::new();

    // 1. A new template.
    let (mark, at) = (sink.count(), Instant::now());
    templates(&d, "SIG-V2");
    let t = until_marker(&sink, mark, "SIG-V2", at)
        .await
        .expect("SIG-V2 within 5 s");
    times.push(("template", t));

    // 2. A broken template: refused, the old one stays, /status says why.
    templates(&d, "SIG-V2");
    write(
        &d.join("templates/default.html.hbs"),
        "<p>{{#if}} SIG-BROKEN",
        0o644,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let error = loop {
        let c = status_config(&admin).await;
        if let Some(e) = c["error"].as_str() {
            break e.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the refused reload shows on /status: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(error.contains("default.html.hbs"), "{error}");
    let page = reqwest::get(format!("http://{admin}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"config\" class=\"banner expired\" data-state=\"error\""),
        "the page shows the refused reload"
    );
    let mark = sink.count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<String> = sink.all()[mark..].iter().map(|m| m.text()).collect();
    assert!(
        !after.is_empty() && after.iter().all(|m| m.contains("SIG-V2")),
        "the old template stays"
    );

    // 3. Fixed again.
    let (mark, at) = (sink.count(), Instant::now());
    templates(&d, "SIG-V3");
    times.push((
        "fixed template",
        until_marker(&sink, mark, "SIG-V3", at)
            .await
            .expect("SIG-V3"),
    ));
    let c = status_config(&admin).await;
    assert!(c["error"].is_null() && c["loaded_at"].is_string(), "{c}");

    // 4. A rule in the config file.
    let (mark, at) = (sink.count(), Instant::now());
    std::fs::write(d.join("sigstamp.toml"), config(sink.addr, SALES_RULE)).unwrap();
    times.push((
        "rule",
        until_marker(&sink, mark, "SIG-SALES", at)
            .await
            .expect("SIG-SALES"),
    ));

    // 5. A new certificate: new handshakes get it.
    let at = Instant::now();
    ca.issue(&d, "relay-v2");
    loop {
        if handshake_cn(relay, &ca.pem).await == "relay-v2" {
            times.push(("certificate", at.elapsed()));
            break;
        }
        assert!(
            at.elapsed() < Duration::from_secs(5),
            "the new certificate within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 6. SIGHUP: reloads, never ends the process.
    let pid = guard.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a reload after SIGHUP");
        if line.contains("configuration reloaded") && line.contains("SIGHUP") {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let accepted = counts.accepted.load(Ordering::SeqCst);
    let delivered = sink.wait_for(accepted, Duration::from_secs(5)).await.len();
    let (sent, refused) = (
        counts.sent.load(Ordering::SeqCst),
        counts.refused.load(Ordering::SeqCst),
    );
    println!("reload under load: sent {sent}, accepted {accepted}, delivered {delivered}, refused {refused}");
    for (what, t) in &times {
        println!("  {what}: new material in use after {} ms", t.as_millis());
    }
    assert_eq!(refused, 0, "no message refused");
    assert_eq!(delivered, accepted, "every accepted message delivered");
    for (what, t) in times.iter().filter(|(w, _)| *w != "certificate") {
        assert!(*t < Duration::from_secs(2), "{what}: {t:?}");
    }
    drop(guard);
}
