//! A private Postfix for the Postfix rows: its own config, queue and data directories in a
//! temp dir, smtpd on a free loopback port, everything relayed to the sink, optionally with
//! sigstamp as its milter. `postfix -c DIR start`, and `stop` on drop. Needs root (Postfix's
//! master runs as root and drops to the postfix user), as the integration tests do.

use crate::procs::{free_port, loopback, wait_listening};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The services a private Postfix needs besides its smtpd listeners (shared by every harness).
const MASTER_CF: &str = include_str!("../../tests/postfix-master.cf");

pub struct Postfix {
    dir: tempfile::TempDir,
    pub smtpd: SocketAddr,
}

/// Whether `postfix` can be run here.
pub fn available() -> bool {
    Command::new("postfix")
        .arg("-c")
        .arg("/nonexistent")
        .output()
        .is_ok()
        && unsafe { libc::geteuid() } == 0
}

impl Postfix {
    /// `milter`: sigstamp's milter as Postfix names it (`inet:…`, `unix:…`), or `None` for a
    /// plain relay.
    pub async fn start(relay: SocketAddr, milter: Option<&str>) -> anyhow::Result<Postfix> {
        let dir = tempfile::Builder::new()
            .prefix("sigstamp-bench-postfix")
            .tempdir()?;
        let d = dir.path();
        // Postfix's daemons run as the postfix user and must reach their directories.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        std::fs::create_dir_all(d.join("queue"))?;
        std::fs::create_dir_all(d.join("data"))?;
        run(Command::new("chown")
            .arg("postfix:postfix")
            .arg(d.join("data")))?;
        let smtpd = loopback(free_port()?);
        let milter = milter.unwrap_or_default();
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.sigstamp.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [{relay_ip}]:{relay_port}
alias_maps =
alias_database =
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_milters = {milter}
milter_protocol = 6
milter_default_action = tempfail
",
            d = d.display(),
            relay_ip = relay.ip(),
            relay_port = relay.port(),
        );
        std::fs::write(d.join("main.cf"), main_cf)?;
        std::fs::write(
            d.join("master.cf"),
            format!("{smtpd} inet n - n - - smtpd\n{MASTER_CF}"),
        )?;
        let pf = Postfix { dir, smtpd };
        if let Err(e) = pf.postfix("start") {
            bail!("{e}\n{}", pf.log());
        }
        wait_listening(smtpd, "Postfix smtpd").await?;
        Ok(pf)
    }

    fn postfix(&self, verb: &str) -> anyhow::Result<()> {
        run(Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path())
            .arg(verb))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Messages still queued (incoming, active, deferred).
    pub fn queue_len(&self) -> usize {
        ["incoming", "active", "deferred"]
            .iter()
            .map(|q| count_files(&self.dir.path().join("queue").join(q)))
            .sum()
    }

    /// Wait until Postfix delivered what it accepted, so the next row starts from a quiet
    /// machine. Returns how long that took, or the number still queued at the deadline.
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
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix("stop");
    }
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
