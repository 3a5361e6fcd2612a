//! A real OpenLDAP `slapd` for the LDAP source's tests: its own config file and database in
//! a temporary folder, listening on free loopback ports (plain + StartTLS, and LDAPS when
//! given a certificate), seeded with `ldapadd`. Killed when dropped.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=test";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
pub const ROOT_PW: &str = "root-secret";
pub const BIND_DN: &str = "cn=sigstamp,ou=services,dc=example,dc=test";
pub const BIND_PW: &str = "svc-secret";
pub const PEOPLE: &str = "ou=people,dc=example,dc=test";

/// slapd and the ldap-utils clients: missing, skip (false) outside CI, fail in CI.
pub fn have_slapd() -> bool {
    let found = ["slapd", "ldapadd", "ldapmodify", "ldapdelete", "ldapsearch"]
        .iter()
        .all(|t| sigstamp_testkit::find_tool(t).is_some());
    sigstamp_testkit::require("slapd and ldap-utils", found)
}

/// TLS material for slapd: certificate and key files.
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Slapd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    pub ldaps_port: Option<u16>,
    tls: bool,
}

impl Slapd {
    /// A fresh server with the base entries, the service account and a `sizelimit` of 5
    /// for it (so only a paged search can read more than 5 entries).
    pub fn start(tls: Option<Tls>) -> Slapd {
        Slapd::start_with(tls, Some(5))
    }

    /// [`Slapd::start`] with the service account's size limit (`None`: unlimited).
    pub fn start_with(tls: Option<Tls>, size_limit: Option<u32>) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let tls_lines = match &tls {
            Some(t) => format!(
                "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                t.cert.display(),
                t.key.display()
            ),
            None => String::new(),
        };
        let limit = match size_limit {
            Some(n) => format!("size.soft={n} size.hard={n} size.prtotal=unlimited"),
            None => "size=unlimited".into(),
        };
        let conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {dir}/slapd.pid
{tls_lines}database mdb
maxsize 1073741824
dbnosync
suffix \"{SUFFIX}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PW}
directory {dir}/db
limits dn.exact=\"{ROOT_DN}\" size=unlimited
limits dn.exact=\"{BIND_DN}\" {limit}
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
overlay memberof
",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("slapd.conf"), conf).unwrap();
        let mut s = Slapd {
            dir,
            child: None,
            port: sigstamp_testkit::free_port(),
            ldaps_port: tls.is_some().then(sigstamp_testkit::free_port),
            tls: tls.is_some(),
        };
        s.run();
        s.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: sigstamp\nuserPassword: {BIND_PW}\n"
        ));
        s
    }

    /// (Re)start slapd on the same config, database and ports; waits until it answers.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "slapd already running");
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.ldaps_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let slapd = sigstamp_testkit::find_tool("slapd").expect("slapd installed");
        let child = Command::new(slapd)
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("slapd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                let _ = self
                    .child
                    .take()
                    .unwrap()
                    .stderr
                    .unwrap()
                    .read_to_string(&mut err);
                panic!("slapd exited ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "slapd does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop slapd (the database stays for [`Slapd::run`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://localhost:{}", self.ldaps_port.expect("TLS server"))
    }

    fn tool(&self, tool: &str, args: &[&str], input: &str) {
        let mut child = Command::new(tool)
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}\n{input}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ldapadd` the LDIF.
    pub fn add(&self, ldif: &str) {
        self.tool("ldapadd", &[], ldif);
    }

    /// `ldapmodify` the LDIF.
    pub fn modify(&self, ldif: &str) {
        self.tool("ldapmodify", &[], ldif);
    }

    pub fn delete(&self, dn: &str) {
        self.tool("ldapdelete", &[dn], "");
    }

    /// A new password for the service account.
    pub fn set_bind_password(&self, pw: &str) {
        self.modify(&format!(
            "dn: {BIND_DN}\nchangetype: modify\nreplace: userPassword\nuserPassword: {pw}\n"
        ));
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// LDIF for `n` users `user0000…`, every one in `ou=people` with a mail address, a title and
/// a phone; user 0 also in the group `Sales`.
pub fn users_ldif(from: usize, n: usize) -> String {
    let mut out = String::new();
    for i in from..from + n {
        out.push_str(&format!(
            "dn: uid=user{i:04},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: user{i:04}\n\
             cn: User {i}\nsn: Number{i}\ngivenName: User\nmail: user{i:04}@example.test\n\
             title: Engineer\ntelephoneNumber: +1 555 {i:04}\no: Example Ltd\n\n"
        ));
    }
    out
}

pub fn sales_group(member_uids: &[&str]) -> String {
    let mut s = format!("dn: cn=Sales,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: Sales\n");
    for m in member_uids {
        s.push_str(&format!("member: uid={m},{PEOPLE}\n"));
    }
    s
}

/// The `[ldap]` section for this server (plain ldap:// on loopback), with extra lines.
pub fn ldap_section(url: &str, extra: &str) -> String {
    format!(
        "[ldap]\nurl = \"{url}\"\nbind_dn = \"{BIND_DN}\"\nbind_password = \"{BIND_PW}\"\n\
         base_dn = \"{PEOPLE}\"\nsync_interval = \"1s\"\nfull_sync_interval = \"1h\"\n\
         page_size = 5\ntimeout = \"5s\"\n{extra}"
    )
}

/// Poll `f` every 50 ms until it is true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
