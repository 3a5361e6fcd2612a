//! The processes a run needs: `sigstamp serve` with a generated config, a sink (Postfix's
//! smtp-sink or sigstamp's built-in one), and memory figures from /proc.

use anyhow::{bail, Context};
use sigstamp::smtp::sink::{Sink, SinkOptions};
use sigstamp_testkit::free_addr;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The sample directory: messages from its users get stamped.
const DIRECTORY_JSON: &str = include_str!("../../examples/directory.json");
/// sigstamp's log, under its temporary folder.
const LOG: &str = "log/sigstamp.log";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Poll until `addr` accepts a connection.
pub async fn wait_listening(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    sigstamp_testkit::wait_listening(addr, START_TIMEOUT)
        .await
        .with_context(|| format!("{what} never listened on {addr}"))
}

/// [`wait_listening`] for a unix socket.
pub async fn wait_listening_unix(path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("sigstamp never listened on {}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `sigstamp` next to this binary (target/<profile>/), unless given.
pub fn sigstamp_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no folder")?
            .join("sigstamp"),
    };
    if !path.is_file() {
        bail!(
            "no sigstamp binary at {} (build it: cargo build --release --workspace, or pass --sigstamp)",
            path.display()
        );
    }
    Ok(path)
}

/// Which edge a sigstamp process serves.
#[derive(Debug, Clone, Copy)]
pub enum Edge {
    /// The SMTP relay, relaying to this next hop.
    Relay { next_hop: SocketAddr },
    /// The milter, on TCP or (`unix`) on a unix socket.
    Milter { unix: bool },
    /// The null milter (this bench binary, `--null-milter`), on TCP or a unix socket.
    NullMilter { unix: bool },
}

/// A running `sigstamp serve`; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Sigstamp {
    child: Child,
    /// Where the edge listens (the relay's SMTP port or the milter's TCP port).
    pub addr: SocketAddr,
    /// The milter as Postfix names it (`inet:IP:PORT` or `unix:PATH`).
    pub milter: String,
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Sigstamp {
    pub async fn start(bin: &Path, edge: Edge) -> anyhow::Result<Sigstamp> {
        let dir = tempfile::Builder::new()
            .prefix("sigstamp-bench")
            .tempdir()?;
        let users = dir.path().join("directory.json");
        std::fs::write(&users, DIRECTORY_JSON)?;
        let addr = free_addr();
        let admin = free_addr();
        let socket = dir.path().join("milter.sock");
        let mut milter = format!("inet:{addr}");
        let section = match edge {
            // Room for the idle-session measurement; no TLS on loopback.
            Edge::Relay { next_hop } => format!(
                "[smtp]\nlisten = \"{addr}\"\nnext_hop = \"{next_hop}\"\nnext_hop_tls = \"none\"\n\
                 max_sessions = 20000\n"
            ),
            Edge::Milter { unix: false } | Edge::NullMilter { unix: false } => {
                format!("[milter]\nlisten = \"{addr}\"\nmax_sessions = 20000\n")
            }
            Edge::Milter { unix: true } | Edge::NullMilter { unix: true } => {
                // Postfix's smtpd runs as the postfix user: it must reach the socket.
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
                milter = format!("unix:{}", socket.display());
                format!(
                    "[milter]\nlisten = \"{milter}\"\nsocket_mode = \"0666\"\n\
                     max_sessions = 20000\n"
                )
            }
        };
        let config = format!(
            "{section}\n[directory]\nfile = {users:?}\n\n[admin]\nlisten = \"{admin}\"\n",
            users = users.display().to_string()
        );
        let config_path = dir.path().join("sigstamp.toml");
        std::fs::write(&config_path, config)?;
        // Not beside the config: sigstamp watches that folder for changes, and a log line
        // per message written there would wake its watcher on every message.
        std::fs::create_dir(dir.path().join("log"))?;
        let log = std::fs::File::create(dir.path().join(LOG))?;
        let mut cmd = match edge {
            Edge::NullMilter { .. } => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("--null-milter").arg(&milter);
                c
            }
            _ => {
                let mut c = Command::new(bin);
                c.arg("serve").arg("--config").arg(&config_path);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let unix = matches!(
            edge,
            Edge::Milter { unix: true } | Edge::NullMilter { unix: true }
        );
        let mut s = Sigstamp {
            child,
            addr,
            milter,
            admin,
            dir,
        };
        let up = if unix {
            wait_listening_unix(&socket).await
        } else {
            wait_listening(addr, "sigstamp").await
        };
        // The admin listener too (the counters come from it): it may come up after the edge
        // (tens of ms in a debug build), and a scrape before it is refused.
        // (The null milter has no admin listener.)
        let up = match up {
            Ok(()) if !matches!(edge, Edge::NullMilter { .. }) => {
                wait_listening(admin, "sigstamp admin").await
            }
            e => e,
        };
        if let Err(e) = up {
            bail!("{e}\n{}", s.log());
        }
        if let Some(status) = s.child.try_wait()? {
            bail!("sigstamp exited ({status}):\n{}", s.log());
        }
        Ok(s)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG)).unwrap_or_default()
    }

    pub async fn counters(&self) -> anyhow::Result<Counters> {
        Ok(Counters::parse(&http_get(self.admin, "/metrics").await?))
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        Memory::of(self.pid())
    }
}

impl Drop for Sigstamp {
    fn drop(&mut self) {
        // SIGTERM lets it drain; a few seconds later it is killed regardless.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counters read from sigstamp's /metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counters {
    /// `sigstamp_messages_total` with outcome="stamped", and over every outcome.
    pub stamped: u64,
    pub all: u64,
    /// `sigstamp_stamp_seconds` sum and count (time in the stamping pipeline).
    pub stamp_secs: f64,
    pub stamp_count: u64,
    /// `sigstamp_stamp_cpu_seconds_total` (CPU time in the stamping pipeline).
    pub stamp_cpu_secs: f64,
    /// `sigstamp_relay_seconds` sum and count (end of DATA to the next hop's final reply).
    pub relay_secs: f64,
    pub relay_count: u64,
}

impl Counters {
    pub fn parse(metrics: &str) -> Counters {
        let mut c = Counters::default();
        for line in metrics.lines().filter(|l| !l.starts_with('#')) {
            let (Some(name), Some(v)) = (
                line.split(['{', ' ']).next(),
                line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            match name {
                "sigstamp_messages_total" => {
                    c.all += v as u64;
                    if line.contains("outcome=\"stamped\"") {
                        c.stamped += v as u64;
                    }
                }
                "sigstamp_stamp_seconds_sum" => c.stamp_secs = v,
                "sigstamp_stamp_seconds_count" => c.stamp_count = v as u64,
                "sigstamp_stamp_cpu_seconds_total" => c.stamp_cpu_secs = v,
                "sigstamp_relay_seconds_sum" => c.relay_secs = v,
                "sigstamp_relay_seconds_count" => c.relay_count = v as u64,
                _ => {}
            }
        }
        c
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            stamped: self.stamped - before.stamped,
            all: self.all - before.all,
            stamp_secs: self.stamp_secs - before.stamp_secs,
            stamp_count: self.stamp_count - before.stamp_count,
            stamp_cpu_secs: self.stamp_cpu_secs - before.stamp_cpu_secs,
            relay_secs: self.relay_secs - before.relay_secs,
            relay_count: self.relay_count - before.relay_count,
        }
    }

    /// Mean seconds per stamping, and per next-hop data exchange, when counted.
    pub fn means(&self) -> (Option<f64>, Option<f64>) {
        (
            mean(self.stamp_secs, self.stamp_count),
            mean(self.relay_secs, self.relay_count),
        )
    }

    /// Mean CPU seconds per stamping, when counted.
    pub fn cpu_mean(&self) -> Option<f64> {
        mean(self.stamp_cpu_secs, self.stamp_count)
    }
}

fn mean(sum: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

/// A minimal HTTP/1.0 GET (the admin endpoint is on loopback; no client library needed).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await??;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let code = head.split(' ').nth(1);
    if !head.starts_with("HTTP/1.") || code != Some("200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    /// Peak RSS (VmHWM).
    pub peak: u64,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        parse_status(&status).context("no VmRSS/VmHWM in /proc/PID/status")
    }
}

pub fn parse_status(status: &str) -> Option<Memory> {
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    Some(Memory {
        rss: kb("VmRSS:")?,
        peak: kb("VmHWM:")?,
    })
}

/// The sink at the end of every path.
pub enum RunningSink {
    /// Postfix's smtp-sink, a child process.
    Postfix { child: Child, addr: SocketAddr },
    /// sigstamp's built-in sink, in this process; counts messages with sigstamp's trace
    /// header.
    Builtin {
        sink: Sink,
        received: Arc<AtomicU64>,
        stamped: Arc<AtomicU64>,
    },
}

impl RunningSink {
    pub fn addr(&self) -> SocketAddr {
        match self {
            RunningSink::Postfix { addr, .. } => *addr,
            RunningSink::Builtin { sink, .. } => sink.addr(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            RunningSink::Postfix { .. } => "Postfix smtp-sink",
            RunningSink::Builtin { .. } => "sigstamp built-in sink",
        }
    }

    /// smtp-sink from PATH, /usr/sbin or /usr/libexec/postfix.
    pub fn smtp_sink_binary() -> Option<PathBuf> {
        sigstamp_testkit::find_tool("smtp-sink")
    }

    pub async fn start_smtp_sink(bin: &Path) -> anyhow::Result<RunningSink> {
        let addr = free_addr();
        let mut cmd = Command::new(bin);
        // As root smtp-sink wants a user to drop to.
        if sigstamp_testkit::is_root() {
            cmd.args(["-u", "postfix"]);
        }
        // A backlog of 1024 so no connection waits on accept.
        let child = cmd
            .arg(addr.to_string())
            .arg("1024")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let sink = RunningSink::Postfix { child, addr };
        wait_listening(addr, "smtp-sink").await?;
        Ok(sink)
    }

    pub async fn start_builtin() -> anyhow::Result<RunningSink> {
        let (sink, mut rx) = Sink::start("127.0.0.1:0", SinkOptions::default()).await?;
        let received = Arc::new(AtomicU64::new(0));
        let stamped = Arc::new(AtomicU64::new(0));
        let (r, s) = (received.clone(), stamped.clone());
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                r.fetch_add(1, Ordering::Relaxed);
                if has_trace_header(&d.message) {
                    s.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(RunningSink::Builtin {
            sink,
            received,
            stamped,
        })
    }

    /// (received, carrying sigstamp's trace header) so far; only the built-in sink knows.
    pub fn counts(&self) -> Option<(u64, u64)> {
        match self {
            RunningSink::Builtin {
                received, stamped, ..
            } => Some((
                received.load(Ordering::Relaxed),
                stamped.load(Ordering::Relaxed),
            )),
            RunningSink::Postfix { .. } => None,
        }
    }
}

impl Drop for RunningSink {
    fn drop(&mut self) {
        if let RunningSink::Postfix { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the header section has `X-Sigstamp:` (what sigstamp adds to what it stamped).
pub fn has_trace_header(msg: &[u8]) -> bool {
    let name = sigstamp::stamp::TRACE_HEADER.as_bytes();
    let end = memchr::memmem::find(msg, b"\r\n\r\n").unwrap_or(msg.len());
    msg[..end].split(|&b| b == b'\n').any(|l| {
        l.len() > name.len() && l[..name.len()].eq_ignore_ascii_case(name) && l[name.len()] == b':'
    })
}

/// `--null-milter LISTEN`: the null milter in this process, until killed. sigstamp's own
/// milter session with stamping switched off (`sigstamp::milter::run_null`), so the
/// negotiation, the packets and the reply path are exactly the milter row's.
pub fn null_milter(listen: &str) -> anyhow::Result<std::process::ExitCode> {
    use sigstamp::directory::Directory;
    use sigstamp::milter::{MilterConfig, MilterHandles};
    use sigstamp::pipeline::Stamper;
    use sigstamp::render::Templates;
    let cfg = MilterConfig {
        listen: listen.to_string(),
        max_sessions: 20_000,
        socket_mode: "0666".into(),
        ..MilterConfig::default()
    };
    let handles = MilterHandles {
        stamper: Arc::new(Stamper::new(
            Arc::new(Directory::new()),
            Templates::embedded(),
        )),
        metrics: Arc::new(sigstamp::metrics::Metrics::new()),
        status: Arc::default(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        sent_items: Default::default(),
    };
    // The same runtime as `sigstamp serve` (multi-threaded, one worker per core).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(sigstamp::milter::run_null(cfg, handles))?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_counters() {
        let m = "# HELP sigstamp_messages Messages\n\
                 sigstamp_messages_total{edge=\"smtp\",outcome=\"stamped\"} 1990\n\
                 sigstamp_messages_total{edge=\"smtp\",outcome=\"unknown_sender\"} 10\n\
                 sigstamp_stamp_seconds_sum 0.5\n\
                 sigstamp_stamp_seconds_count 2000\n\
                 sigstamp_stamp_seconds_bucket{le=\"0.001\"} 2000\n\
                 sigstamp_stamp_cpu_seconds_total 0.2\n\
                 sigstamp_relay_seconds_sum 80.0\n\
                 sigstamp_relay_seconds_count 2000\n";
        let c = Counters::parse(m);
        assert_eq!(
            (c.stamped, c.all, c.stamp_count, c.relay_count),
            (1990, 2000, 2000, 2000)
        );
        let d = c.since(&Counters {
            stamped: 990,
            all: 1000,
            stamp_secs: 0.25,
            stamp_count: 1000,
            stamp_cpu_secs: 0.1,
            relay_secs: 40.0,
            relay_count: 1000,
        });
        assert_eq!((d.stamped, d.all), (1000, 1000));
        assert_eq!(d.means(), (Some(0.00025), Some(0.04)));
        assert_eq!(d.cpu_mean(), Some(0.0001));
        assert_eq!(Counters::parse("").means(), (None, None));
    }

    #[test]
    fn proc_status() {
        let s = "Name:\tsigstamp\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            parse_status(s),
            Some(Memory {
                rss: 10 << 20,
                peak: 20 << 20
            })
        );
        assert_eq!(parse_status("Name: x\n"), None);
        let me = Memory::of(std::process::id()).unwrap();
        assert!(me.peak >= me.rss && me.rss > 0);
    }

    #[test]
    fn trace_header() {
        assert!(has_trace_header(
            b"From: a\r\nX-Sigstamp: stamped\r\n\r\nbody"
        ));
        assert!(has_trace_header(b"x-sigstamp: stamped\r\n\r\n"));
        assert!(!has_trace_header(
            b"From: a\r\n\r\nX-Sigstamp: in the body\r\n"
        ));
        assert!(!has_trace_header(b"X-Sigstamped: no\r\n\r\n"));
    }
}
