//! A throwaway Postfix instance: its own config, queue and data directories in a temp dir,
//! smtpd on a free loopback port, relaying everything to `relay`. Stopped on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Postfix {
    dir: tempfile::TempDir,
    pub smtpd: SocketAddr,
}

/// A free loopback port (Postfix's master.cf needs a number up front).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The services a private Postfix needs besides its smtpd listeners (shared by every harness).
const MASTER_CF: &str = include_str!("../postfix-master.cf");

impl Postfix {
    /// `milter`: e.g. `inet:127.0.0.1:7357`, or `None` for a plain relay. `extra`: more
    /// main.cf lines.
    pub fn start(milter: Option<&str>, relay: SocketAddr, extra: &str) -> Postfix {
        let dir = tempfile::Builder::new()
            .prefix("sigstamp-postfix")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // Postfix daemons run as the postfix user and must reach their directories.
        chmod(d, 0o755);
        std::fs::create_dir_all(d.join("queue")).unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        chown_postfix(&d.join("data"));
        let port = free_port();
        let smtpd: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {q}\n\
             data_directory = {data}\n\
             maillog_file_prefixes = {dir}\n\
             maillog_file = {dir}/maillog\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = mta.sigstamp.test\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             relayhost = [{relay_ip}]:{relay_port}\n\
             smtp_dns_support_level = disabled\n\
             smtp_tls_security_level = none\n\
             smtpd_milters = {milter}\n\
             non_smtpd_milters = {milter}\n\
             milter_protocol = 6\n\
             milter_default_action = accept\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             {extra}\n",
            q = d.join("queue").display(),
            data = d.join("data").display(),
            dir = d.display(),
            relay_ip = relay.ip(),
            relay_port = relay.port(),
            milter = milter.unwrap_or(""),
        );
        std::fs::write(d.join("main.cf"), main_cf).unwrap();
        std::fs::write(
            d.join("master.cf"),
            format!("127.0.0.1:{port} inet n - n - - smtpd\n{MASTER_CF}"),
        )
        .unwrap();
        let out = Command::new("postfix")
            .arg("-c")
            .arg(d)
            .arg("start")
            .output()
            .expect("run postfix");
        let pf = Postfix { dir, smtpd };
        assert!(
            out.status.success(),
            "postfix start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            pf.log()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(smtpd).is_err() {
            assert!(
                Instant::now() < deadline,
                "postfix smtpd never listened\n{}",
                pf.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pf
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Messages still in Postfix's queue (incoming, active, deferred).
    pub fn queue_len(&self) -> usize {
        ["incoming", "active", "deferred"]
            .iter()
            .map(|q| count_files(&self.dir.path().join("queue").join(q)))
            .sum()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Submit with swaks; returns its transcript. Panics unless the message was accepted.
    pub fn swaks(&self, from: &str, to: &str, message: &[u8]) -> String {
        let file = self.dir.path().join(format!("msg-{}.eml", rand_suffix()));
        // swaks always ends DATA with CRLF "." CRLF: drop the message's own last CRLF so
        // the bytes on the wire are exactly `message`.
        let exact = message.strip_suffix(b"\r\n").unwrap_or(message);
        std::fs::write(&file, exact).unwrap();
        let out = Command::new("swaks")
            .args(["--server", &self.smtpd.to_string()])
            // swaks reads an empty --from as "use the default"; "<>" is the null sender.
            .args([
                "--from",
                if from.is_empty() { "<>" } else { from },
                "--to",
                to,
            ])
            .args(["--helo", "client.sigstamp.test"])
            .arg("--data")
            .arg(format!("@{}", file.display()))
            .output()
            .expect("run swaks");
        let transcript = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "swaks failed:\n{transcript}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        transcript
    }
}

impl Postfix {
    /// Submit locally with Postfix's sendmail command (pickup → cleanup: the path that
    /// `non_smtpd_milters` covers).
    pub fn sendmail(&self, from: &str, to: &str, message: &[u8]) {
        use std::io::Write as _;
        let mut child = Command::new("sendmail")
            .arg("-C")
            .arg(self.dir.path())
            .args(["-i", "-f", from, to])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run sendmail");
        child.stdin.take().unwrap().write_all(message).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "sendmail failed\n{}", self.log());
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path())
            .arg("stop")
            .output();
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_postfix(p: &Path) {
    let out = Command::new("chown")
        .arg("postfix:postfix")
        .arg(p)
        .output()
        .expect("chown");
    assert!(out.status.success(), "chown postfix: {:?}", out);
}

/// Remove the first Received header (Postfix's own, with its continuation lines),
/// wherever it sits in the header, leaving what the sender submitted plus any milter edits.
pub fn strip_received(msg: &[u8]) -> Vec<u8> {
    let mut pos = 0;
    while pos < msg.len() {
        let end = msg[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(msg.len(), |i| pos + i + 1);
        if msg[pos..end].starts_with(b"Received:") {
            let mut stop = end;
            while matches!(msg.get(stop), Some(b' ') | Some(b'\t')) {
                stop = msg[stop..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(msg.len(), |i| stop + i + 1);
            }
            return [&msg[..pos], &msg[stop..]].concat();
        }
        if msg[pos..end] == *b"\r\n" {
            break;
        }
        pos = end;
    }
    panic!("no Received header: {}", String::from_utf8_lossy(msg));
}
