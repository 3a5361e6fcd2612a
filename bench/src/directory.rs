//! `--directory-users N`: issue 4's directory figures. A fake tenant of N generated users
//! (the fake Entra ID + Graph of `tests/fake_graph/`, compiled in, not copied), one
//! `sigstamp sync --once` against it as a separate process (wall time, CPU time from wait4,
//! peak RSS from the child's own VmHWM), then the written snapshot loaded here and looked up
//! (time per lookup), and finally `sigstamp serve` restarted on that snapshot (its memory once
//! it has loaded it and finished an incremental sync).

#[allow(clippy::all, unused_imports)]
#[path = "../../tests/fake_graph/mod.rs"]
mod fake_graph;

use crate::procs::{http_get, sigstamp_binary, Memory};
use crate::stats::{fmt_latency, fmt_mb};
use anyhow::{bail, Context};
use fake_graph::{FakeGraph, CLIENT_ID, SECRET, TENANT};
use hdrhistogram::Histogram;
use sigstamp::directory::{snapshot, Directory};
use sigstamp_testkit::free_addr;
use std::hint::black_box;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// One `sigstamp sync --once --config cfg` as a child process, measured.
pub struct SyncRun {
    pub took: Duration,
    /// CPU time (user + sys) of the child alone.
    pub cpu: Duration,
    pub peak_rss: u64,
    pub stdout: String,
}

/// Run `sigstamp sync --once` on `cfg`; an error when it fails.
pub async fn sync_once(bin: &Path, cfg: &Path) -> anyhow::Result<SyncRun> {
    let mut child = Command::new(bin)
        .args(["sync", "--once", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let started = Instant::now();
    let pid = child.id();
    let peak = std::thread::spawn(move || watch_peak(pid));
    // The fake serves from this runtime: wait in a blocking thread.
    let (code, cpu) = tokio::task::spawn_blocking(move || wait4(pid)).await??;
    let max_rss = peak.join().expect("the VmHWM watcher panicked");
    let took = started.elapsed();
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    if code != 0 {
        bail!("sigstamp sync --once exited {code}:\n{out}\n{err}");
    }
    Ok(SyncRun {
        took,
        cpu,
        peak_rss: max_rss,
        stdout: out,
    })
}

/// Lookups per timed batch (one batch is one histogram sample, in ns per lookup).
const BATCH: usize = 1000;
const BATCHES: usize = 2000;

pub async fn run(users: usize, sigstamp: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bin = sigstamp_binary(sigstamp)?;
    let fake = FakeGraph::start().await;
    let seeded = Instant::now();
    fake.add_generated_users(users);
    println!(
        "fake tenant: {users} users generated in {:.1?}",
        seeded.elapsed()
    );
    let dir = tempfile::Builder::new()
        .prefix("sigstamp-bench-dir")
        .tempdir()?;
    let snap = dir.path().join("directory.json");
    let cfg = dir.path().join("sigstamp.toml");
    let graph_cfg = format!(
        "[graph]\ntenant_id = {TENANT:?}\nclient_id = {CLIENT_ID:?}\nclient_secret = {SECRET:?}\n\
         authority = {base:?}\nendpoint = {base:?}\n\n[directory]\nsnapshot = {snap:?}\n",
        base = fake.base,
    );
    std::fs::write(&cfg, &graph_cfg)?;
    let run = sync_once(&bin, &cfg).await?;
    let (took, cpu, max_rss) = (run.took, run.cpu, run.peak_rss);
    print!("{}", run.stdout);

    let d = Directory::new();
    let loading = Instant::now();
    let loaded = snapshot::load(&snap, &d)?.context("no snapshot written")?;
    let load_time = loading.elapsed();
    let hits = lookup_times(&d, users, true)?;
    let misses = lookup_times(&d, users, false)?;
    let size = std::fs::metadata(&snap)?.len();
    drop(d);
    let (serve_mem, serve_ready) = serve_memory(&bin, dir.path(), &graph_cfg, users).await?;

    println!();
    println!("{:<34} {:>12}  target", "directory, Graph sync", "");
    println!("{}", "-".repeat(58));
    let line = |what: &str, value: String, target: &str| {
        println!("{what:<34} {value:>12}  {target}");
    };
    line(
        "users synced",
        loaded.users.to_string(),
        &format!("{users}"),
    );
    line(
        "sync --once, wall time",
        format!("{:.2} s", took.as_secs_f64()),
        "≤ 20 s",
    );
    line(
        "sync --once, CPU time (user+sys)",
        format!("{:.2} s", cpu.as_secs_f64()),
        "",
    );
    line("sync --once, peak RSS", fmt_mb(max_rss), "≤ 200 MB");
    line("snapshot size", fmt_mb(size), "");
    line(
        "snapshot load (here)",
        format!("{:.0} ms", load_time.as_secs_f64() * 1e3),
        "",
    );
    line(
        "serve on the snapshot, ready+synced",
        format!("{:.2} s", serve_ready.as_secs_f64()),
        "",
    );
    line("serve on the snapshot, RSS", fmt_mb(serve_mem.rss), "");
    line(
        "serve on the snapshot, peak RSS",
        fmt_mb(serve_mem.peak),
        "",
    );
    for (name, h) in [("lookup, hit", &hits), ("lookup, miss", &misses)] {
        line(
            &format!("{name}: p50 / p99"),
            format!(
                "{} / {}",
                fmt_ns(h.value_at_quantile(0.5)),
                fmt_ns(h.value_at_quantile(0.99))
            ),
            "< 1 µs",
        );
    }
    let ok = loaded.users == users
        && took <= Duration::from_secs(20)
        && max_rss <= 200 << 20
        && hits.value_at_quantile(0.5) < 1000;
    println!(
        "\n{}",
        if ok {
            "all directory targets met"
        } else {
            "NOT all directory targets met"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `sigstamp serve` restarted on the written snapshot, as after a restart: its memory once
/// it has loaded the snapshot and published an incremental sync from the fake (still
/// running), and how long that took.
async fn serve_memory(
    bin: &Path,
    dir: &Path,
    graph_cfg: &str,
    users: usize,
) -> anyhow::Result<(Memory, Duration)> {
    let admin = free_addr();
    let milter = free_addr();
    let cfg = dir.join("serve.toml");
    std::fs::write(
        &cfg,
        format!("{graph_cfg}\n[milter]\nlisten = \"{milter}\"\n\n[admin]\nlisten = \"{admin}\"\n"),
    )?;
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let started = Instant::now();
    let want = format!("\"users\":{users},\"source\":\"graph\"");
    let ready = loop {
        if let Some(status) = child.try_wait()? {
            bail!("sigstamp serve exited ({status})");
        }
        if let Ok(body) = http_get(admin, "/status").await {
            if body.contains(&want) {
                break Ok(started.elapsed());
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            break Err(anyhow::anyhow!(
                "sigstamp serve did not sync {users} users within 60 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mem = Memory::of(child.id());
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    tokio::task::spawn_blocking(move || child.wait()).await??;
    Ok((mem?, ready?))
}

fn fmt_ns(ns: u64) -> String {
    if ns < 1000 {
        format!("{ns} ns")
    } else {
        fmt_latency(ns / 1000)
    }
}

/// Time `BATCHES` × `BATCH` lookups of existing (`hit`) or unknown addresses, in a
/// scattered order and with mixed case, as mail would ask; ns per lookup per batch.
fn lookup_times(d: &Directory, users: usize, hit: bool) -> anyhow::Result<Histogram<u64>> {
    let n = users.max(1);
    let addrs: Vec<String> = (0..4096)
        .map(|k| {
            let i = (k * 7919 + 13) % n;
            match (hit, k % 3) {
                (true, 0) => format!("U{i:07}@Contoso.test"),
                (true, 1) => format!("u{i}@contoso.onmicrosoft.com"),
                (true, _) => format!("u{i:07}@contoso.test"),
                (false, _) => format!("nobody{i}@elsewhere.example"),
            }
        })
        .collect();
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("valid bounds");
    let mut found = 0usize;
    for b in 0..BATCHES {
        let t = Instant::now();
        for j in 0..BATCH {
            let a = &addrs[(b * BATCH + j) % addrs.len()];
            found += black_box(d.lookup(black_box(a))).is_some() as usize;
        }
        let per = (t.elapsed().as_nanos() / BATCH as u128).max(1) as u64;
        let _ = h.record(per.min(h.high()));
    }
    let want = if hit && users > 0 { BATCH * BATCHES } else { 0 };
    if found != want {
        bail!("lookups found {found} users, expected {want}");
    }
    Ok(h)
}

/// The peak RSS of `pid` (its VmHWM, a high-water mark the kernel keeps), read until the
/// process has exited: the last reading is the peak up to a few milliseconds before exit.
///
/// Not `ru_maxrss` from wait4: a child spawned from this process starts with this process's
/// RSS as its recorded maximum (exec keeps the larger of the old and new high-water marks),
/// and here that is the fake tenant's hundreds of megabytes.
fn watch_peak(pid: u32) -> u64 {
    let mut peak = 0;
    // Gone (or a zombie, which has no VmHWM line): the process has exited.
    while let Ok(m) = Memory::of(pid) {
        peak = peak.max(m.peak);
        std::thread::sleep(Duration::from_millis(5));
    }
    peak
}

/// Wait for `pid`: exit code and CPU time, from the kernel's rusage. (The CPU time tells
/// sigstamp's share of the wall time from the fake's.)
fn wait4(pid: u32) -> anyhow::Result<(i32, Duration)> {
    let mut status = 0;
    // SAFETY: plain syscall on our own child with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((code, tv(usage.ru_utime) + tv(usage.ru_stime)))
}
