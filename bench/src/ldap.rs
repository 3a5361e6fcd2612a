//! `--ldap-users N`: the LDAP source's figures (issue 16). A real OpenLDAP slapd (the test
//! suite's, `tests/ldap_support/`, compiled in, not copied) seeded with N users by ldapadd,
//! then one `sigstamp sync --once` against it as a separate process: wall time, CPU time and
//! peak RSS, as the Graph directory row measures them.

#[allow(clippy::all, unused_imports, dead_code)]
#[path = "../../tests/ldap_support/mod.rs"]
mod ldap_support;

use crate::directory::sync_once;
use crate::procs::sigstamp_binary;
use crate::stats::fmt_mb;
use anyhow::bail;
use ldap_support::{ldap_section, users_ldif, Slapd};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub async fn run(users: usize, sigstamp: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bin = sigstamp_binary(sigstamp)?;
    if !ldap_support::have_slapd() {
        bail!("slapd and ldap-utils are needed (apt-get install slapd ldap-utils)");
    }
    let seeded = Instant::now();
    let slapd = tokio::task::spawn_blocking(move || {
        let slapd = Slapd::start_with(None, None);
        slapd.add(&users_ldif(0, users));
        slapd
    })
    .await?;
    println!("slapd: {users} users added in {:.1?}", seeded.elapsed());
    let dir = tempfile::Builder::new()
        .prefix("sigstamp-bench-ldap")
        .tempdir()?;
    let snap = dir.path().join("directory.json");
    let cfg = dir.path().join("sigstamp.toml");
    // The production page size (500, the default), not the tests' 5.
    let section = ldap_section(&slapd.url(), "").replace("page_size = 5\n", "");
    std::fs::write(&cfg, format!("[directory]\nsnapshot = {snap:?}\n{section}"))?;
    let run = sync_once(&bin, &cfg).await?;
    print!("{}", run.stdout);
    let size = std::fs::metadata(&snap)?.len();
    drop(slapd);

    println!();
    println!("{:<34} {:>12}", "directory, LDAP (slapd) sync", "");
    println!("{}", "-".repeat(48));
    let line = |what: &str, value: String| println!("{what:<34} {value:>12}");
    line("users", users.to_string());
    line(
        "sync --once, wall time",
        format!("{:.2} s", run.took.as_secs_f64()),
    );
    line(
        "sync --once, CPU time (user+sys)",
        format!("{:.2} s", run.cpu.as_secs_f64()),
    );
    line("sync --once, peak RSS", fmt_mb(run.peak_rss));
    line("snapshot size", fmt_mb(size));
    Ok(ExitCode::SUCCESS)
}
