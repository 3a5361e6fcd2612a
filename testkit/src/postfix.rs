//! A private Postfix: its own main.cf, master.cf, queue and data directories in a temporary
//! directory, listening on loopback only, relaying everything to one next hop. Started with
//! `postfix -c DIR start` and ready (every smtpd listener accepts connections) when
//! [`PostfixBuilder::start`] returns; stopped on drop. Postfix's master runs as root and
//! drops to the `postfix` user, so this needs root (as the tests and the bench run in CI).

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The services a private Postfix needs besides its smtpd listeners.
const MASTER_BASE: &str = include_str!("../postfix-master.cf");

/// How long Postfix may take to listen after `postfix start`.
const READY_WITHIN: Duration = Duration::from_secs(20);

pub struct Postfix {
    dir: tempfile::TempDir,
    /// Where clients submit mail: the first smtpd listener.
    pub smtpd: SocketAddr,
}

/// What the Postfix will be; [`Postfix::relaying_to`] makes one.
pub struct PostfixBuilder {
    relay: SocketAddr,
    services: Option<String>,
    milter: Option<String>,
    milter_default_action: String,
    main_cf: String,
}

impl Postfix {
    /// A Postfix whose smtpd (on a free loopback port) accepts mail from loopback and relays
    /// every message to `relay`.
    pub fn relaying_to(relay: SocketAddr) -> PostfixBuilder {
        PostfixBuilder {
            relay,
            services: None,
            milter: None,
            milter_default_action: "accept".into(),
            main_cf: String::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Messages still in Postfix's queue (incoming, active, deferred).
    pub fn queue_len(&self) -> usize {
        ["incoming", "active", "deferred"]
            .iter()
            .map(|q| count_files(&self.dir.path().join("queue").join(q)))
            .sum()
    }

    /// Wait until Postfix delivered what it accepted. Returns how long that took, or the
    /// number still queued at the deadline.
    pub async fn drain(&self, limit: Duration) -> Result<Duration, usize> {
        let start = Instant::now();
        loop {
            let left = self.queue_len();
            if left == 0 {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                return Err(left);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Submit over SMTP with swaks; returns its transcript. Panics unless the message was
    /// accepted.
    pub fn swaks(&self, from: &str, to: &str, message: &[u8]) -> String {
        let file = tempfile::Builder::new()
            .prefix("msg-")
            .suffix(".eml")
            .tempfile_in(self.dir.path())
            .unwrap();
        // swaks always ends DATA with CRLF "." CRLF: drop the message's own last CRLF so
        // the bytes on the wire are exactly `message`.
        let exact = message.strip_suffix(b"\r\n").unwrap_or(message);
        std::fs::write(file.path(), exact).unwrap();
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
            .arg(format!("@{}", file.path().display()))
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

    /// Submit locally with Postfix's sendmail command (pickup → cleanup: the path that
    /// `non_smtpd_milters` covers). Panics unless sendmail succeeded.
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

    fn postfix(&self, verb: &str) -> anyhow::Result<()> {
        run(Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path())
            .arg(verb))
    }
}

impl PostfixBuilder {
    /// Ask `milter` (as Postfix names it: `inet:127.0.0.1:7357`, `unix:/path`) about every
    /// message, received over SMTP (`smtpd_milters`) or submitted locally
    /// (`non_smtpd_milters`).
    pub fn milter(mut self, milter: &str) -> Self {
        self.milter = Some(milter.to_string());
        self
    }

    /// What Postfix does when the milter is unreachable: `accept` (the default here) or
    /// `tempfail`.
    pub fn milter_default_action(mut self, action: &str) -> Self {
        self.milter_default_action = action.to_string();
        self
    }

    /// The before-queue layout of docs/recipes-postfix.md instead of one plain smtpd: the
    /// smtpd clients submit to hands every session to `filter` (`smtpd_proxy_filter`),
    /// whose next hop is the after-filter smtpd on 127.0.0.1:`back`.
    pub fn proxy_filter(mut self, filter: SocketAddr, back: u16) -> Self {
        let front = crate::free_port();
        self.services = Some(format!(
            "127.0.0.1:{front} inet n - n - 20 smtpd
  -o smtpd_proxy_filter={filter}
  -o smtpd_client_connection_count_limit=100
127.0.0.1:{back} inet n - n - - smtpd
  -o smtpd_proxy_filter=
  -o smtpd_client_restrictions=
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=permit_mynetworks,reject
  -o smtpd_recipient_restrictions=
  -o mynetworks=127.0.0.0/8
  -o receive_override_options=no_unknown_recipient_checks"
        ));
        self
    }

    /// More main.cf lines (later lines override earlier ones).
    pub fn main_cf(mut self, lines: &str) -> Self {
        self.main_cf.push_str(lines);
        self.main_cf.push('\n');
        self
    }

    /// Write the configuration, `postfix start`, and wait until every smtpd listener accepts
    /// connections. The error carries Postfix's log.
    pub fn start(self) -> anyhow::Result<Postfix> {
        let dir = tempfile::Builder::new()
            .prefix("sigstamp-postfix")
            .tempdir()?;
        let d = dir.path();
        // Postfix's daemons run as the postfix user and must reach their directories.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        std::fs::create_dir(d.join("queue"))?;
        std::fs::create_dir(d.join("data"))?;
        run(Command::new("chown")
            .arg("postfix:postfix")
            .arg(d.join("data")))
        .context("Postfix needs root (chown postfix)")?;
        let services = self
            .services
            .unwrap_or_else(|| format!("127.0.0.1:{} inet n - n - - smtpd", crate::free_port()));
        let listeners = inet_listeners(&services);
        let Some(&smtpd) = listeners.first() else {
            bail!("no inet listener in the master.cf services:\n{services}");
        };
        let milter = self.milter.unwrap_or_default();
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.sigstamp.test
mydomain = sigstamp.test
myorigin = sigstamp.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [{relay_ip}]:{relay_port}
alias_maps =
alias_database =
local_transport = error:local delivery disabled
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_proxy_timeout = 30s
smtpd_milters = {milter}
non_smtpd_milters = {milter}
milter_protocol = 6
milter_default_action = {action}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
{extra}",
            d = d.display(),
            relay_ip = self.relay.ip(),
            relay_port = self.relay.port(),
            action = self.milter_default_action,
            extra = self.main_cf,
        );
        std::fs::write(d.join("main.cf"), main_cf)?;
        std::fs::write(d.join("master.cf"), format!("{services}\n{MASTER_BASE}"))?;
        let pf = Postfix { dir, smtpd };
        if let Err(e) = pf.postfix("start") {
            bail!("{e}\n{}", pf.log());
        }
        for addr in listeners {
            if crate::wait_listening_blocking(addr, READY_WITHIN).is_err() {
                bail!("Postfix's smtpd never listened on {addr}\n{}", pf.log());
            }
        }
        Ok(pf)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix("stop");
    }
}

/// The `IP:port inet …` listeners of master.cf lines, in order.
fn inet_listeners(services: &str) -> Vec<SocketAddr> {
    services
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let addr = words.next()?.parse().ok()?;
            (words.next() == Some("inet")).then_some(addr)
        })
        .collect()
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::inet_listeners;

    #[test]
    fn listeners_are_the_inet_lines() {
        let services =
            "127.0.0.1:2525 inet n - n - 20 smtpd\n  -o smtpd_proxy_filter=127.0.0.1:1\n\
                        127.0.0.1:2526 inet n - n - - smtpd\npickup unix n - n 60 1 pickup";
        assert_eq!(
            inet_listeners(services),
            [
                "127.0.0.1:2525".parse().unwrap(),
                "127.0.0.1:2526".parse().unwrap()
            ]
        );
    }
}
