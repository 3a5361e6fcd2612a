//! Shared helpers of the relay's integration tests: external tools, a test PKI made with
//! rcgen at run time, an in-process relay in front of a sink, and the expected delivery.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use sigstamp::directory::{self, Directory, Source};
use sigstamp::metrics::Metrics;
use sigstamp::pipeline::{Envelope, Stamper, Verdict};
use sigstamp::render::Templates;
use sigstamp::smtp::sink::{Delivered, Policy, Sink, SinkOptions};
use sigstamp::smtp::{Relay, SmtpConfig};
use sigstamp_testkit::{require_command, require_tool};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// swaks with STARTTLS support (Debian: libnet-ssleay-perl, libio-socket-ssl-perl).
pub fn have_swaks_tls() -> bool {
    require_tool("swaks")
        && require_command(
            "swaks TLS (perl Net::SSLeay, IO::Socket::SSL)",
            "perl -MNet::SSLeay -MIO::Socket::SSL -e1",
        )
}

pub const DIRECTORY_JSON: &str = r#"[{"id":"1","displayName":"Alice Example","jobTitle":"Engineer","companyName":"Example Ltd","mail":"alice@example.com","userPrincipalName":"alice@example.com","proxyAddresses":["SMTP:alice@example.com"]}]"#;

pub const MESSAGE: &str = "From: Alice Example <alice@example.com>\r\nTo: bob@example.org\r\nSubject: relay test\r\nMessage-ID: <t1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\n.leading dot\r\nbye\r\n";

pub fn stamper() -> Arc<Stamper> {
    let dir = Arc::new(Directory::new());
    dir.replace_users(
        directory::file::parse(DIRECTORY_JSON.as_bytes()).unwrap(),
        Source::File,
    );
    Arc::new(Stamper::new(dir, Templates::embedded()))
}

/// What the next hop must receive for `original` from a directory user: the pipeline's
/// stamped message (asserted to be stamped: trace header and the user's job title).
pub fn expected_delivery(
    stamper: &Stamper,
    original: &[u8],
    from: &str,
    rcpts: &[String],
) -> Vec<u8> {
    match stamper.process(
        original,
        &Envelope {
            mail_from: Some(from),
            rcpt_to: rcpts,
        },
    ) {
        Verdict::Stamped { message, .. } => {
            assert_stamped(&message);
            message
        }
        Verdict::Unchanged(why) => panic!("the test message should be stamped, got: {why}"),
    }
}

/// A message stamped for the test directory's user.
pub fn assert_stamped(message: &[u8]) {
    let text = String::from_utf8_lossy(message);
    assert!(
        text.starts_with(&format!("{}:", sigstamp::stamp::TRACE_HEADER))
            || text.contains(&format!("\r\n{}:", sigstamp::stamp::TRACE_HEADER)),
        "trace header missing:\n{text}"
    );
    assert!(text.contains("Engineer"), "signature missing:\n{text}");
}

pub struct TestRelay {
    pub addr: SocketAddr,
    pub sink_addr: SocketAddr,
    pub delivered: UnboundedReceiver<Delivered>,
    pub stamper: Arc<Stamper>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    _sink: Sink,
}

impl TestRelay {
    /// Next delivered message, waiting briefly (the sink hands it over before its 250).
    pub async fn next(&mut self) -> Option<Delivered> {
        tokio::time::timeout(Duration::from_secs(5), self.delivered.recv())
            .await
            .ok()
            .flatten()
    }

    /// Nothing (more) was delivered.
    pub fn none_left(&mut self) -> bool {
        self.delivered.try_recv().is_err()
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A relay on 127.0.0.1:0 in front of a sink, both in this process.
pub async fn relay(edit: impl FnOnce(&mut SmtpConfig), sink: SinkOptions) -> TestRelay {
    relay_with(stamper(), edit, sink).await
}

/// [`relay`] with a stamper of the test's own (e.g. one with rules).
pub async fn relay_with(
    stamper: Arc<Stamper>,
    edit: impl FnOnce(&mut SmtpConfig),
    sink: SinkOptions,
) -> TestRelay {
    let (sink_handle, delivered) = Sink::start("127.0.0.1:0", sink).await.unwrap();
    let mut cfg = SmtpConfig::new("127.0.0.1:0", sink_handle.addr().to_string());
    cfg.hostname = "relay.test".into();
    cfg.command_timeout = Duration::from_secs(10);
    cfg.next_hop_timeout = Duration::from_secs(5);
    edit(&mut cfg);
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let relay = Relay::bind(cfg, stamper.clone(), metrics.clone(), shutdown.clone())
        .await
        .unwrap();
    let addr = relay.local_addr().unwrap();
    tokio::spawn(relay.serve());
    TestRelay {
        addr,
        sink_addr: sink_handle.addr(),
        delivered,
        stamper,
        metrics,
        shutdown,
        _sink: sink_handle,
    }
}

pub fn policy(
    f: impl Fn(sigstamp::smtp::sink::Stage<'_>) -> Option<sigstamp::smtp::replies::Reply>
        + Send
        + Sync
        + 'static,
) -> SinkOptions {
    let p: Policy = Arc::new(f);
    SinkOptions {
        tls: None,
        policy: Some(p),
    }
}

/// A CA, a server certificate for `localhost`/127.0.0.1 and a client certificate, as PEM
/// files in a temporary directory (generated per test run; nothing committed).
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn new(client_cn: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sigstamp test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        sp.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = sp.signed_by(&server_key, &issuer).unwrap();

        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (client_cert, client_key) = client_pair(&issuer, client_cn);
        Pki {
            ca: write("ca.pem", ca_cert.pem()),
            server_cert: write("server.pem", server_cert.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client_cert: write("client.pem", client_cert),
            client_key: write("client.key", client_key),
            dir,
            issuer,
        }
    }

    /// Another client certificate from the same CA: (cert path, key path).
    pub fn client(&self, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = client_pair(&self.issuer, cn);
        let c = self.dir.path().join(format!("{cn}.pem"));
        let k = self.dir.path().join(format!("{cn}.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        (c, k)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn client_pair(issuer: &Issuer<'static, KeyPair>, cn: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.distinguished_name.push(DnType::CommonName, cn);
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = cp.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Run python3 with `script`; returns stdout (asserting success).
pub fn python(script: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python3 failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Run a command in a blocking thread (the relay keeps running on the test runtime).
pub async fn run(cmd: &str, args: Vec<String>) -> std::process::Output {
    let cmd = cmd.to_string();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(&cmd)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    })
    .await
    .unwrap()
}

pub async fn python_async(script: String) -> String {
    tokio::task::spawn_blocking(move || python(&script))
        .await
        .unwrap()
}

/// A raw SMTP client for fault tests: exact bytes out, whole replies in.
pub struct RawClient {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RawClient> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        Ok(RawClient {
            stream: tokio::io::BufReader::new(stream),
        })
    }

    /// Read one reply (all its lines); empty string on EOF.
    pub async fn reply(&mut self) -> String {
        use tokio::io::AsyncBufReadExt;
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_line(&mut line))
                    .await
                    .expect("reply within 10s");
            if read.unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    pub async fn send(&mut self, bytes: &str) {
        use tokio::io::AsyncWriteExt;
        self.stream
            .get_mut()
            .write_all(bytes.as_bytes())
            .await
            .unwrap();
    }

    /// Send one command line and return its reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    /// The connection, e.g. for a TLS handshake after STARTTLS.
    pub fn into_inner(self) -> tokio::net::TcpStream {
        self.stream.into_inner()
    }

    /// True once the server has closed the connection.
    pub async fn closed(&mut self) -> bool {
        self.reply().await.is_empty()
    }
}
