//! A private Postfix instance on loopback, started from its own configuration directory in a
//! temporary directory and stopped on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

pub struct Postfix {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// A port that was free a moment ago (Postfix needs a fixed port in master.cf).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The services a private Postfix needs besides its smtpd listeners (shared by every harness).
const MASTER_BASE: &str = include_str!("../postfix-master.cf");

/// master.cf services of the README's before-queue layout: smtpd on `front` hands every
/// session to sigstamp on `filter` (`smtpd_proxy_filter`), whose next hop is the
/// after-filter smtpd on `back`.
pub fn proxy_filter_services(front: u16, filter: u16, back: u16) -> String {
    format!(
        "127.0.0.1:{front} inet n - n - 20 smtpd
  -o smtpd_proxy_filter=127.0.0.1:{filter}
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
    )
}

impl Postfix {
    /// Start Postfix with `services` (master.cf lines for its smtpd listeners) and mail for
    /// every domain relayed to `relayhost` (`[127.0.0.1]:port`).
    pub fn start(services: &str, relayhost: &str, port: u16) -> Postfix {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Postfix's daemons run as the postfix user and must reach into the directory.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(d.join("queue")).unwrap();
        std::fs::create_dir(d.join("data")).unwrap();
        let ok = Command::new("chown")
            .args(["postfix", d.join("data").to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown postfix (the tests run Postfix as root)");
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = {relayhost}
alias_maps =
alias_database =
local_transport = error:local delivery disabled
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_proxy_timeout = 30s
",
            d = d.display()
        );
        std::fs::write(d.join("main.cf"), main_cf).unwrap();
        std::fs::write(d.join("master.cf"), format!("{services}\n{MASTER_BASE}")).unwrap();
        let out = postfix(d, "start");
        assert!(
            out.status.success(),
            "postfix start failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(d.join("maillog")).unwrap_or_default()
        );
        Postfix { dir, port }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

fn postfix(dir: &Path, verb: &str) -> std::process::Output {
    Command::new("postfix")
        .args(["-c", dir.to_str().unwrap(), verb])
        .output()
        .expect("postfix runs")
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = postfix(self.dir.path(), "stop");
    }
}
