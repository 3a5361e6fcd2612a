//! `--stamp-memory`: issue 11's memory figures. Peak RSS (VmHWM) of one
//! `sigstamp stamp` process on each of three generated pathological messages, against the
//! bound "3 × the message size + 64 MB": a 50 MB attachment, 4,000,000 empty MIME parts
//! (19 MB) and a 10 MB single header line.

use crate::procs::{sigstamp_binary, Memory};
use crate::stats::fmt_mb;
use anyhow::Context;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// A sender of the sample directory `sigstamp stamp` uses by default.
const FROM: &str = "Jose Mueller <jose.mueller@lumen-optics.example>";

fn head(content_type: &str) -> String {
    format!(
        "From: {FROM}\r\nTo: bob@partner.example\r\nSubject: memory\r\n\
         Message-ID: <memory@bench.example>\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
    )
}

/// A text body and a 50 MB base64 attachment (the stamped part is small, the rest is copied).
fn attachment() -> Vec<u8> {
    let mut m = head("multipart/mixed; boundary=b").into_bytes();
    m.extend_from_slice(b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the file.\r\n");
    m.extend_from_slice(
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
          Content-Disposition: attachment; filename=\"big.bin\"\r\n\r\n",
    );
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
    while m.len() < 50 * 1024 * 1024 {
        m.extend_from_slice(line);
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

/// 4,000,000 empty parts of one multipart/mixed: about 19 MB.
fn empty_parts() -> Vec<u8> {
    let mut m = head("multipart/mixed; boundary=b").into_bytes();
    m.extend_from_slice(b"--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n");
    for _ in 0..4_000_000 {
        m.extend_from_slice(b"--b\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

/// One 10 MB header line (no folding) above a plain text body.
fn long_header() -> Vec<u8> {
    let mut m = format!("From: {FROM}\r\nTo: bob@partner.example\r\nX-Long: ").into_bytes();
    m.resize(m.len() + 10 * 1024 * 1024, b'x');
    m.extend_from_slice(b"\r\nContent-Type: text/plain\r\n\r\nHello\r\n");
    m
}

/// Makes one input message.
type Generator = fn() -> Vec<u8>;

pub fn run(sigstamp: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bin = sigstamp_binary(sigstamp)?;
    let dir = tempfile::Builder::new()
        .prefix("sigstamp-bench-mem")
        .tempdir()?;
    let inputs: [(&str, Generator); 3] = [
        ("50 MB attachment", attachment),
        ("4,000,000 empty parts", empty_parts),
        ("10 MB single header line", long_header),
    ];
    println!(
        "{:<26} {:>10} {:>12} {:>12}  outcome",
        "sigstamp stamp on", "size", "peak RSS", "bound"
    );
    let mut over = false;
    for (name, make) in inputs {
        let path = dir.path().join("message.eml");
        let size = {
            let m = make();
            std::fs::write(&path, &m)?;
            m.len() as u64
        };
        let (peak, outcome) = measure(&bin, &path)?;
        let bound = 3 * size + 64 * 1024 * 1024;
        over |= peak > bound;
        println!(
            "{name:<26} {:>10} {:>12} {:>12}  {outcome}{}",
            fmt_mb(size),
            fmt_mb(peak),
            fmt_mb(bound),
            if peak > bound { "  OVER THE BOUND" } else { "" }
        );
    }
    println!("peak RSS: the child's VmHWM, read while it runs and as its output starts");
    Ok(if over {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Run `sigstamp stamp FILE`: its peak RSS and the outcome it printed.
fn measure(bin: &Path, message: &Path) -> anyhow::Result<(u64, String)> {
    let mut child = Command::new(bin)
        .arg("stamp")
        .arg(message)
        .current_dir(message.parent().context("no folder")?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let pid = child.id();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while let Ok(m) = Memory::of(pid) {
            peak = peak.max(m.peak);
            std::thread::sleep(Duration::from_millis(2));
        }
        peak
    });
    // The first output bytes mean stamping is done and its memory still held: one more
    // reading there, so a quick exit cannot hide the peak between two polls.
    let mut out = child.stdout.take().context("no stdout")?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at_output = 0;
    if out.read(&mut buf)? > 0 {
        at_output = Memory::of(pid).map(|m| m.peak).unwrap_or(0);
    }
    while out.read(&mut buf)? > 0 {}
    let mut err = String::new();
    child
        .stderr
        .take()
        .context("no stderr")?
        .read_to_string(&mut err)?;
    let status = child.wait()?;
    let polled = watcher.join().expect("the VmHWM watcher panicked");
    anyhow::ensure!(status.success(), "sigstamp stamp failed: {err}");
    let outcome = err.trim().trim_start_matches("sigstamp: ").to_string();
    Ok((polled.max(at_output), outcome))
}
