//! Headless Chromium driven over the DevTools protocol (`--remote-debugging-pipe`: JSON
//! messages ended by NUL on fds 3 and 4, so no WebSocket client is needed): open a page,
//! run script in it, wait for a condition, take a screenshot. Blocking; run it on a blocking
//! thread of an async test.
//!
//! Chromium may reach loopback only: every name resolves to nothing and anything that is
//! not loopback goes to a closed proxy port.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// A bound on any one protocol call.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// The browser (`SIGSTAMP_CHROMIUM` overrides the path), or `None` (with the reason
/// printed) when the test must be skipped.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("SIGSTAMP_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| CHROMIUM.into());
    let what = format!("Chromium ({})", path.display());
    sigstamp_testkit::required(&what, path.exists().then_some(path))
}

/// The base64 SHA-256 of a PEM certificate's public key, for
/// `--ignore-certificate-errors-spki-list`: Chromium trusts that one test key, nothing more.
pub fn spki_hash(cert_pem: &Path) -> String {
    use base64::Engine;
    let pem = std::fs::read(cert_pem).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        cert.tbs_certificate.subject_pki.raw,
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fd` duplicated to a number above 10 (so moving it to 3 or 4 cannot clobber the other).
fn high(fd: &OwnedFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl on a valid fd; the new fd is owned by the returned OwnedFd.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    assert!(n >= 10, "{}", std::io::Error::last_os_error());
    unsafe { OwnedFd::from_raw_fd(n) }
}

impl Browser {
    /// Start headless Chromium with one blank page, its window `width`×`height`;
    /// `trusted_spki` is the server key it accepts (see [`spki_hash`]).
    pub fn launch(chromium: &Path, trusted_spki: &str, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let dead_port = sigstamp_testkit::free_port();
        let (cmd_read, cmd_write) = std::io::pipe().unwrap();
        let (evt_read, evt_write) = std::io::pipe().unwrap();
        let (cmd_read, evt_write): (OwnedFd, OwnedFd) = (cmd_read.into(), evt_write.into());
        let (a, b) = (high(&cmd_read), high(&evt_write));
        let (a_fd, b_fd) = (a.as_raw_fd(), b.as_raw_fd());
        let mut cmd = Command::new(chromium);
        cmd.args([
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
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!(
            "--ignore-certificate-errors-spki-list={trusted_spki}"
        ))
        .arg(format!("--proxy-server=http://127.0.0.1:{dead_port}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .env("HOME", profile.path())
        .env("XDG_CONFIG_HOME", profile.path())
        .env("XDG_CACHE_HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe dup2 calls between fork and exec; dup2 clears
        // close-on-exec on the copies, so the browser inherits exactly fds 3 and 4.
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in [(a_fd, 3), (b_fd, 4)] {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium starts");
        drop((a, b, cmd_read, evt_write));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut evt_read = evt_read;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n) = evt_read.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Value = serde_json::from_slice(&buf[..end]).unwrap();
                    buf.drain(..=end);
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to_browser: std::fs::File::from(OwnedFd::from(cmd_write)),
            from_browser: rx,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .unwrap();
        let attached = b
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .unwrap();
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.page("Page.enable", json!({})).unwrap();
        b
    }

    /// One protocol call (on the page's session unless `session` is `None`): its result,
    /// or its error.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("chromium is running");
        let deadline = Instant::now() + CALL_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(m) if m["id"] == json!(id) => {
                    return match m.get("error") {
                        Some(e) => Err(e.clone()),
                        None => Ok(m["result"].clone()),
                    }
                }
                Ok(_event) => {}
                Err(RecvTimeoutError::Timeout) => panic!("chromium: no answer to {method}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium exited during {method}"),
            }
        }
    }

    fn page(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let s = self.session.clone();
        self.call(Some(&s), method, params)
    }

    /// Go to `url` (its load is waited for with [`Browser::wait_for`]).
    pub fn goto(&mut self, url: &str) {
        let r = self.page("Page.navigate", json!({"url": url})).unwrap();
        assert!(r.get("errorText").is_none(), "navigating to {url}: {r}");
    }

    /// Evaluate `expr` in the page: its value, or the exception (a navigation in progress
    /// destroys the context, for instance).
    pub fn eval(&mut self, expr: &str) -> Result<Value, Value> {
        let r = self.page(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        match r.get("exceptionDetails") {
            Some(e) => Err(e.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// Poll `expr` until it is truthy in a loaded page, for at most `limit`.
    pub fn wait_for(&mut self, expr: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        let guarded = format!("document.readyState === 'complete' && ({expr})");
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.eval(&guarded) {
                Ok(v) if !matches!(v, Value::Null | Value::Bool(false)) && v != json!("") => {
                    return v
                }
                Ok(v) => last = v,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let url = self.eval("location.href").unwrap_or_default();
        let body = self
            .eval("document.body ? document.body.innerText : ''")
            .unwrap_or_default();
        panic!("timed out waiting for {expr} at {url}; last: {last}; page: {body}");
    }

    /// The whole page (not only the window) as PNG.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let size = self.page("Page.getLayoutMetrics", json!({})).unwrap()["cssContentSize"].clone();
        let clip =
            json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let r = self
            .page(
                "Page.captureScreenshot",
                json!({"format": "png", "clip": clip, "captureBeyondViewport": true}),
            )
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }
}
