//! Loopback end to end: real clients (swaks, Python's smtplib) → sigstamp → sink.

mod smtp_support;

use sigstamp::smtp::sink::SinkOptions;
use sigstamp::smtp::NextHopTls;
use sigstamp_testkit::require_tool;
use smtp_support::*;

fn message_file(dir: &std::path::Path) -> String {
    let p = dir.join("message.eml");
    // swaks ends the data with its own CRLF: give it the message without its last one.
    std::fs::write(&p, MESSAGE.strip_suffix("\r\n").unwrap()).unwrap();
    p.display().to_string()
}

fn swaks_args(addr: std::net::SocketAddr, data: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--server",
        &addr.to_string(),
        "--from",
        "alice@example.com",
        "--to",
        "bob@example.org",
        "--ehlo",
        "client.test",
        "--data",
        data,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

async fn swaks_through(relay: &mut TestRelay, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = message_file(tmp.path());
    let out = run("swaks", swaks_args(relay.addr, &data, extra)).await;
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks failed:\n{transcript}");
    let d = relay.next().await.expect("delivered");
    assert_eq!(d.mail_from, "alice@example.com");
    assert_eq!(d.rcpts, vec![("bob@example.org".into(), String::new())]);
    let want = expected_delivery(
        &relay.stamper,
        MESSAGE.as_bytes(),
        "alice@example.com",
        &["bob@example.org".into()],
    );
    assert_eq!(
        String::from_utf8_lossy(&d.message),
        String::from_utf8_lossy(&want)
    );
    assert!(relay.none_left(), "delivered exactly once");
    let m = relay.metrics.encode();
    assert!(m.contains("sigstamp_messages_total{edge=\"relay\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_plain_and_pipelined() {
    if !require_tool("swaks") {
        return;
    }
    let mut relay = relay(|_| {}, SinkOptions::default()).await;
    swaks_through(&mut relay, &[]).await;
    swaks_through(&mut relay, &["--pipeline"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_required() {
    if !have_swaks_tls() {
        return;
    }
    let pki = Pki::new("client.test");
    let mut relay = relay(
        |c| {
            c.tls_cert = Some(pki.server_cert.clone());
            c.tls_key = Some(pki.server_key.clone());
            c.require_tls = true;
        },
        SinkOptions::default(),
    )
    .await;
    // Without TLS the client is told to STARTTLS first.
    let tmp = tempfile::tempdir().unwrap();
    let data = message_file(tmp.path());
    let out = run("swaks", swaks_args(relay.addr, &data, &[])).await;
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(transcript.contains("530 5.7.0"), "{transcript}");
    assert!(relay.none_left());
    // With STARTTLS it goes through.
    swaks_through(&mut relay, &["--tls"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_names_are_enforced() {
    if !have_swaks_tls() {
        return;
    }
    let good = Pki::new("mail.protection.outlook.com");
    let mut relay = relay(
        |c| {
            c.tls_cert = Some(good.server_cert.clone());
            c.tls_key = Some(good.server_key.clone());
            c.client_ca = Some(good.ca.clone());
            c.client_cert_names = vec!["mail.protection.outlook.com".into()];
        },
        SinkOptions::default(),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let data = message_file(tmp.path());
    let cert = good.client_cert.display().to_string();
    let key = good.client_key.display().to_string();
    // TLS but no client certificate: refused at MAIL.
    let out = run("swaks", swaks_args(relay.addr, &data, &["--tls"])).await;
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(transcript.contains("554 5.7.1"), "{transcript}");
    // A certificate from the configured CA with another name: refused too.
    let (oc, ok) = good.client("attacker.example");
    let out = run(
        "swaks",
        swaks_args(
            relay.addr,
            &data,
            &[
                "--tls",
                "--tls-cert",
                &oc.display().to_string(),
                "--tls-key",
                &ok.display().to_string(),
            ],
        ),
    )
    .await;
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{transcript}");
    assert!(relay.none_left());
    // The connector's certificate: accepted.
    swaks_through(
        &mut relay,
        &["--tls", "--tls-cert", &cert, "--tls-key", &key],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_keeps_envelope_and_dsn_parameters() {
    if !require_tool("python3") {
        return;
    }
    let mut relay = relay(|_| {}, SinkOptions::default()).await;
    let script = format!(
        r#"
import smtplib
msg = {msg:?}.encode()
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo("py.test")
assert s.has_extn("dsn") and s.has_extn("pipelining") and s.has_extn("chunking")
refused = s.sendmail("alice@example.com", ["bob@example.org", "carol@example.org"], msg,
    mail_options=["RET=HDRS", "ENVID=env+2Bid", "BODY=8BITMIME"],
    rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@example.org"])
print("refused", refused)
s.quit()
"#,
        msg = MESSAGE,
        port = relay.addr.port()
    );
    let out = python_async(script).await;
    assert!(out.contains("refused {}"), "{out}");
    let d = relay.next().await.expect("delivered");
    assert_eq!(d.mail_from, "alice@example.com");
    assert!(d.mail_params.contains("BODY=8BITMIME"), "{}", d.mail_params);
    assert!(d.mail_params.contains("RET=HDRS"), "{}", d.mail_params);
    assert!(
        d.mail_params.contains("ENVID=env+2Bid"),
        "{}",
        d.mail_params
    );
    assert!(d.mail_params.contains("SIZE="), "{}", d.mail_params);
    let rcpt_params = "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org".to_string();
    assert_eq!(
        d.rcpts,
        vec![
            ("bob@example.org".to_string(), rcpt_params.clone()),
            ("carol@example.org".to_string(), rcpt_params),
        ]
    );
    let rcpts = [
        "bob@example.org".to_string(),
        "carol@example.org".to_string(),
    ];
    let want = expected_delivery(
        &relay.stamper,
        MESSAGE.as_bytes(),
        "alice@example.com",
        &rcpts,
    );
    assert_eq!(d.message, want);
    assert!(relay.none_left());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtputf8_addresses_pass() {
    if !require_tool("python3") {
        return;
    }
    let mut relay = relay(|_| {}, SinkOptions::default()).await;
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo("py.test")
msg = "From: jörg@example.com\r\nSubject: ü\r\n\r\nhej\r\n".encode()
print("refused", s.sendmail("jörg@example.com", ["zoë@example.org"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"]))
s.quit()
"#,
        port = relay.addr.port()
    );
    let out = python_async(script).await;
    assert!(out.contains("refused {}"), "{out}");
    let d = relay.next().await.expect("delivered");
    assert_eq!(d.mail_from, "jörg@example.com");
    assert!(d.mail_params.contains("SMTPUTF8"), "{}", d.mail_params);
    assert_eq!(d.rcpts[0].0, "zoë@example.org");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_hop_tls_modes() {
    if !require_tool("swaks") {
        return;
    }
    let pki = Pki::new("client.test");
    let mut server = rustls::ServerConfig::builder_with_provider(sigstamp::smtp::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            sigstamp::smtp::tls::load_certs("test", &pki.server_cert).unwrap(),
            rustls_pki_types::pem::PemObject::from_pem_file(&pki.server_key).unwrap(),
        )
        .unwrap();
    server.alpn_protocols.clear();
    let tls_sink = SinkOptions {
        tls: Some(std::sync::Arc::new(server)),
        policy: None,
    };
    // required, verified against the configured CA.
    let ca = pki.ca.clone();
    let mut r = relay(
        move |c| {
            c.next_hop_tls = NextHopTls::Required;
            c.next_hop_ca = Some(ca);
            c.next_hop_tls_name = Some("localhost".into());
        },
        tls_sink.clone(),
    )
    .await;
    swaks_through(&mut r, &[]).await;
    // (swaks_through consumed the message; ask the sink state through a second one)
    let tmp = tempfile::tempdir().unwrap();
    let data = message_file(tmp.path());
    let out = run("swaks", swaks_args(r.addr, &data, &[])).await;
    assert!(out.status.success());
    assert!(
        r.next().await.unwrap().tls,
        "next hop session was encrypted"
    );
    // opportunistic: encrypted, certificate not checked.
    let mut r = relay(|c| c.next_hop_tls = NextHopTls::Opportunistic, tls_sink).await;
    let out = run("swaks", swaks_args(r.addr, &data, &[])).await;
    assert!(out.status.success());
    assert!(r.next().await.unwrap().tls);
    // required, but the next hop offers no STARTTLS: temporary failure, nothing accepted.
    let mut r = relay(
        |c| c.next_hop_tls = NextHopTls::Required,
        SinkOptions::default(),
    )
    .await;
    let out = run("swaks", swaks_args(r.addr, &data, &[])).await;
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(transcript.contains("451 4.7.5"), "{transcript}");
    assert!(r.none_left());
    // none: plain text even though TLS is offered.
    let mut r = relay(
        |c| c.next_hop_tls = NextHopTls::None,
        SinkOptions {
            tls: None,
            policy: None,
        },
    )
    .await;
    let out = run("swaks", swaks_args(r.addr, &data, &[])).await;
    assert!(out.status.success());
    assert!(!r.next().await.unwrap().tls);
}

/// smtplib over STARTTLS, verifying the relay's certificate; `client` = (cert, key).
fn smtplib_tls_script(
    port: u16,
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> String {
    let load = client
        .map(|(c, k)| {
            format!(
                "ctx.load_cert_chain({:?}, {:?})",
                c.display().to_string(),
                k.display().to_string()
            )
        })
        .unwrap_or_default();
    format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
{load}
try:
    s = smtplib.SMTP("127.0.0.1", {port})
    s.ehlo("py.test")
    assert s.has_extn("starttls")
    s.starttls(context=ctx)
    s.ehlo("py.test")
    assert not s.has_extn("starttls")
    print("refused", s.sendmail("alice@example.com", ["bob@example.org"], {msg:?}.encode()))
    s.quit()
except (smtplib.SMTPException, OSError) as e:
    print("error", e)
"#,
        ca = ca.display().to_string(),
        msg = MESSAGE,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_starttls_and_client_certificate() {
    if !require_tool("python3") {
        return;
    }
    let pki = Pki::new("mail.protection.outlook.com");
    let mut r = relay(
        |c| {
            c.tls_cert = Some(pki.server_cert.clone());
            c.tls_key = Some(pki.server_key.clone());
            c.require_tls = true;
            c.client_ca = Some(pki.ca.clone());
            c.client_cert_names = vec!["mail.protection.outlook.com".into()];
        },
        SinkOptions::default(),
    )
    .await;
    let port = r.addr.port();
    // TLS without a client certificate: refused at MAIL, nothing delivered.
    let out = python_async(smtplib_tls_script(port, &pki.ca, None)).await;
    assert!(out.contains("error") && out.contains("5.7.1"), "{out}");
    assert!(r.none_left());
    // A certificate with another name, from the same CA: refused.
    let (oc, ok) = pki.client("attacker.example");
    let out = python_async(smtplib_tls_script(port, &pki.ca, Some((&oc, &ok)))).await;
    assert!(out.contains("error") && out.contains("5.7.1"), "{out}");
    assert!(r.none_left());
    // A certificate with the right name from another CA: the handshake fails.
    let foreign = Pki::new("mail.protection.outlook.com");
    let out = python_async(smtplib_tls_script(
        port,
        &pki.ca,
        Some((&foreign.client_cert, &foreign.client_key)),
    ))
    .await;
    assert!(out.contains("error"), "{out}");
    assert!(r.none_left());
    // The connector's certificate: relayed.
    let out = python_async(smtplib_tls_script(
        port,
        &pki.ca,
        Some((&pki.client_cert, &pki.client_key)),
    ))
    .await;
    assert!(out.contains("refused {}"), "{out}");
    let d = r.next().await.expect("delivered");
    let want = expected_delivery(
        &r.stamper,
        MESSAGE.as_bytes(),
        "alice@example.com",
        &["bob@example.org".into()],
    );
    assert_eq!(d.message, want);
    assert!(r.none_left());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_hop_client_certificate_is_presented() {
    if !require_tool("python3") {
        return;
    }
    let pki = Pki::new("sigstamp.example.com");
    // A next hop that insists on a client certificate from the test CA (as an Exchange
    // Online inbound connector matched by certificate does).
    let roots = std::sync::Arc::new(sigstamp::smtp::tls::roots("test", Some(&pki.ca)).unwrap());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots,
        sigstamp::smtp::tls::provider(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(sigstamp::smtp::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            sigstamp::smtp::tls::load_certs("test", &pki.server_cert).unwrap(),
            rustls_pki_types::pem::PemObject::from_pem_file(&pki.server_key).unwrap(),
        )
        .unwrap();
    let sink = SinkOptions {
        tls: Some(std::sync::Arc::new(server)),
        policy: None,
    };
    let send = |port: u16| {
        format!(
            r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
try:
    print("refused", s.sendmail("alice@example.com", ["bob@example.org"], {msg:?}.encode()))
except smtplib.SMTPException as e:
    print("error", e)
"#,
            msg = MESSAGE
        )
    };
    let (ca, cert, key) = (
        pki.ca.clone(),
        pki.client_cert.clone(),
        pki.client_key.clone(),
    );
    let mut with_cert = relay(
        move |c| {
            c.next_hop_tls = NextHopTls::Required;
            c.next_hop_ca = Some(ca);
            c.next_hop_tls_name = Some("localhost".into());
            c.next_hop_cert = Some(cert);
            c.next_hop_key = Some(key);
        },
        sink.clone(),
    )
    .await;
    let out = python_async(send(with_cert.addr.port())).await;
    assert!(out.contains("refused {}"), "{out}");
    assert!(with_cert.next().await.unwrap().tls);

    let ca = pki.ca.clone();
    let mut without = relay(
        move |c| {
            c.next_hop_tls = NextHopTls::Required;
            c.next_hop_ca = Some(ca);
            c.next_hop_tls_name = Some("localhost".into());
        },
        sink,
    )
    .await;
    let out = python_async(send(without.addr.port())).await;
    assert!(out.contains("error") && out.contains("451"), "{out}");
    assert!(without.none_left());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_and_unstampable_messages_pass_unchanged_and_are_counted() {
    if !require_tool("python3") {
        return;
    }
    let mut r = relay(|_| {}, SinkOptions::default()).await;
    let already = format!("{}: stamped\r\n{MESSAGE}", sigstamp::stamp::TRACE_HEADER);
    let stranger = MESSAGE.replace("alice@example.com", "stranger@example.net");
    let signed = "From: alice@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--b\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--b--\r\n";
    for (from, msg) in [
        ("alice@example.com", already.as_str()),
        ("stranger@example.net", stranger.as_str()),
        ("alice@example.com", signed),
    ] {
        let script = format!(
            r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
print("refused", s.sendmail({from:?}, ["bob@example.org"], {msg:?}.encode()))
s.quit()
"#,
            port = r.addr.port()
        );
        let out = python_async(script).await;
        assert!(out.contains("refused {}"), "{out}");
        let d = r.next().await.expect("delivered");
        assert_eq!(
            String::from_utf8_lossy(&d.message),
            msg,
            "passed on byte for byte"
        );
    }
    assert!(r.none_left());
    let m = r.metrics.encode();
    for outcome in ["already_stamped", "unknown_sender", "signed"] {
        let line = format!("sigstamp_messages_total{{edge=\"relay\",outcome=\"{outcome}\"}} 1");
        assert!(m.contains(&line), "{line} missing:\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_unchanged_puts_the_trace_header_on_every_relayed_message() {
    if !require_tool("python3") {
        return;
    }
    let mut r = relay(|c| c.mark_unchanged = true, SinkOptions::default()).await;
    let stranger = MESSAGE.replace("alice@example.com", "stranger@example.net");
    let send = |msg: String, port: u16| {
        format!(
            r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
print("refused", s.sendmail("stranger@example.net", ["bob@example.org"], {msg:?}.encode()))
s.quit()
"#
        )
    };
    let out = python_async(send(stranger.clone(), r.addr.port())).await;
    assert!(out.contains("refused {}"), "{out}");
    let first = r.next().await.unwrap();
    let marked = format!("X-Sigstamp: unchanged (unknown_sender)\r\n{stranger}");
    assert_eq!(String::from_utf8_lossy(&first.message), marked);
    // Back through sigstamp (a loop): recognised, not marked twice.
    let out = python_async(send(marked.clone(), r.addr.port())).await;
    assert!(out.contains("refused {}"), "{out}");
    assert_eq!(
        String::from_utf8_lossy(&r.next().await.unwrap().message),
        marked
    );
    let m = r.metrics.encode();
    assert!(m.contains("outcome=\"already_stamped\"} 1"), "{m}");
}
