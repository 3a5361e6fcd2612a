//! The real `sigstamp serve` binary in a test: started on a config, its address read from
//! its log.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Kills the child if the test ends before it exits.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Write `config` to `<dir>/sigstamp.toml`, start `sigstamp serve` on it in `dir` (relative
/// paths in the config are inside it) and wait (20 s at most) for the log line containing
/// `needle`. Returns the value of `key=` on that line and the log lines after it. `dir` lives
/// as long as the log reader (until the child's stderr closes), so a `TempDir` may be handed
/// over. The reader drains the pipe even when the receiver is dropped, so the child never
/// blocks on a full pipe.
pub fn serve<D: AsRef<Path> + Send + 'static>(
    config: &str,
    dir: D,
    needle: &str,
    key: &str,
) -> (Guard, String, Receiver<String>) {
    let (guard, mut values, _, rx) = serve_until(config, dir, &[(needle, key)]);
    (guard, values.remove(0), rx)
}

/// [`serve`] waiting for several log lines, in any order: the value of each `(needle, key)`,
/// and the log lines read until then.
pub fn serve_until<D: AsRef<Path> + Send + 'static>(
    config: &str,
    dir: D,
    wanted: &[(&str, &str)],
) -> (Guard, Vec<String>, Vec<String>, Receiver<String>) {
    let path = dir.as_ref().join("sigstamp.toml");
    std::fs::write(&path, config).unwrap();
    let mut guard = Guard(
        Command::new(env!("CARGO_BIN_EXE_sigstamp"))
            .args(["serve", "--config", path.to_str().unwrap()])
            .current_dir(dir.as_ref())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = guard.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _keep = dir;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(strip_ansi(&line));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut values: Vec<Option<String>> = vec![None; wanted.len()];
    let mut seen = Vec::new();
    while values.iter().any(Option::is_none) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("sigstamp serve logs {wanted:?}"));
        seen.push(line.clone());
        for ((needle, key), value) in wanted.iter().zip(values.iter_mut()) {
            if value.is_none() && line.contains(needle) {
                *value = Some(
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(key).and_then(|w| w.strip_prefix('=')))
                        .unwrap_or_else(|| panic!("{key}= in the log line {line:?}"))
                        .to_string(),
                );
            }
        }
    }
    (guard, values.into_iter().flatten().collect(), seen, rx)
}

/// The body of a GET to `url` (an admin endpoint of the test's sigstamp).
pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// The JSON body of a GET to `url`.
pub async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}
