//! Headless Chromium for the tests: found (or skipped) by [`chromium`], started isolated by
//! [`isolated_args`] and checked by [`assert_loopback_only`]; and [`Browser`], driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
//! commands in on fd 3, answers out on fd 4, NUL-terminated JSON), so a test can sign in
//! through a form, type into a page and take a screenshot. No WebSocket client needed: a
//! shell maps the child's stdin/stdout to fds 3/4.
//!
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

const CHROMIUM: &str = "/usr/bin/chromium";
/// A bound on each protocol call (a navigation answers once the response starts).
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// The browser (`SIGSTAMP_CHROMIUM` overrides the path), or `None` (with the reason
/// printed) when the test must be skipped; under CI a missing browser fails.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("SIGSTAMP_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| CHROMIUM.into());
    let what = format!("Chromium ({})", path.display());
    sigstamp_testkit::required(&what, path.exists().then_some(path))
}

/// The `--ignore-certificate-errors-spki-list` value that makes Chromium trust exactly the
/// certificate in `cert_pem` (base64 of the SHA-256 of its public key info).
pub fn spki_pin(cert_pem: &Path) -> String {
    use base64::Engine;
    let pem = std::fs::read(cert_pem).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
        .map(|c: rustls_pki_types::CertificateDer<'static>| c)
        .expect("a PEM certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.public_key().raw);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The net log [`isolated_args`] has Chromium write into its profile folder.
pub const NET_LOG: &str = "net-log.json";

/// Headless Chromium with its profile in `profile`, reaching loopback only (every name
/// resolves to nothing, anything else goes to a closed proxy port), logging its connections
/// to `profile/`[`NET_LOG`].
pub fn isolated_args(profile: &Path) -> Vec<String> {
    // A port nothing listens on: the proxy for anything that is not loopback.
    let dead_port = sigstamp_testkit::free_port();
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]
    .map(String::from)
    .into();
    // Loopback bypasses a proxy implicitly; everything else meets a closed port.
    args.push(format!("--proxy-server=http://127.0.0.1:{dead_port}"));
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(format!("--log-net-log={}", profile.join(NET_LOG).display()));
    args
}

/// Every TCP connection Chromium attempted (its net log records each) went to loopback.
/// It does try Google hosts in the background; the resolver rules and the dead proxy stop
/// those before any packet leaves.
pub fn assert_loopback_only(net_log: &Path) {
    let log: Value = serde_json::from_slice(&std::fs::read(net_log).unwrap())
        .expect("chromium wrote a complete net log");
    let types = &log["constants"]["logEventTypes"];
    let wanted: Vec<&Value> = ["TCP_CONNECT_ATTEMPT", "TCP_CONNECT"]
        .iter()
        .map(|t| &types[t])
        .collect();
    let mut seen = 0;
    for event in log["events"].as_array().unwrap() {
        if !wanted.contains(&&event["type"]) {
            continue;
        }
        let p = &event["params"];
        let addrs = p["address_list"]
            .as_array()
            .into_iter()
            .flatten()
            .chain([&p["address"], &p["remote_address"]])
            .filter_map(Value::as_str);
        for a in addrs {
            let ip = a.parse::<std::net::SocketAddr>().unwrap().ip();
            assert!(ip.is_loopback(), "chromium connected to {a}");
            seen += 1;
        }
    }
    assert!(seen > 0, "the net log records the page's own connections");
}

/// One Chromium with one page.
pub struct Browser {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Start Chromium (with `extra` arguments) and open a blank page.
    pub async fn launch(chromium: &Path, extra: &[String]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut args = isolated_args(profile.path());
        args.push("--hide-scrollbars".into());
        args.push("--remote-debugging-pipe".into());
        args.extend(extra.iter().cloned());
        args.push("about:blank".into());
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            // fd 3 reads our commands (stdin), fd 4 writes the answers (stdout).
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 </dev/null >/dev/null")
            .arg(chromium)
            .args(&args)
            .env("HOME", profile.path())
            .env("XDG_CONFIG_HOME", profile.path())
            .env("XDG_CACHE_HOME", profile.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let mut b = Browser {
            child,
            input,
            output,
            next_id: 0,
            session: String::new(),
            profile,
        };
        let target = b
            .send("Target.createTarget", json!({"url": "about:blank"}), None)
            .await;
        let attached = b
            .send(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
                None,
            )
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({})).await;
        b.call("Runtime.enable", json!({})).await;
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        b
    }

    async fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.input
            .write_all(&bytes)
            .await
            .expect("chromium takes commands");
        self.input.flush().await.unwrap();
        let deadline = tokio::time::Instant::now() + CALL_LIMIT;
        loop {
            let mut buf = Vec::new();
            let n = tokio::time::timeout_at(deadline, self.output.read_until(0, &mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!("chromium did not answer {method} within {CALL_LIMIT:?}")
                })
                .unwrap();
            assert!(n > 0, "chromium exited during {method}");
            buf.pop_if(|b| *b == 0);
            let v: Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// A protocol command on the page.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(method, params, Some(&s)).await
    }

    /// Evaluate `js` in the page (promises awaited); its value as JSON. A thrown exception
    /// fails the test.
    pub async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{js} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Poll `js` (every 50 ms) until it is true, for at most `limit`; the page's URL and text
    /// in the failure.
    pub async fn wait_for(&mut self, js: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            // A navigation in progress destroys the context: try again.
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": format!("Boolean({js})"), "returnByValue": true}),
                )
                .await;
            if r["result"]["value"] == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let page = self
                    .eval("location.href + '\\n' + (document.body ? document.body.innerText : '')")
                    .await;
                panic!(
                    "timed out waiting for {js}; page: {}",
                    page.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Go to `url` (the load is awaited with [`Browser::wait_for`] by the caller).
    pub async fn goto(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url})).await;
        if let Some(e) = r.get("errorText") {
            panic!("navigating to {url}: {e}");
        }
    }

    /// Type `text` at the caret of the focused element, as a keyboard would (input events).
    pub async fn insert_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// A PNG of the page as it is shown.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }

    /// Ask Chromium to quit, wait for it, and check it connected to loopback only (it is
    /// killed on drop anyway).
    pub async fn close(mut self) {
        self.next_id += 1;
        let msg = json!({"id": self.next_id, "method": "Browser.close", "params": {}});
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        let _ = self.input.write_all(&bytes).await;
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("chromium quits")
            .unwrap();
        assert_loopback_only(&self.profile.path().join(NET_LOG));
    }
}
