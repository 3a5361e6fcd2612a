//! `sigstamp-bench`: the side-by-side load tool of issue 7. See bench/README.md.

mod args;
mod client;
mod directory;
mod ldap;
mod message;
mod procs;
mod stamp_memory;
mod stats;

use anyhow::Context;
use args::{Args, Load, MilterSocket, RowKind, SinkKind};
use clap::Parser;
use client::{Conn, Plan};
use indicatif::{ProgressBar, ProgressStyle};
use procs::{Edge, RunningSink, Sigstamp};
use sigstamp_testkit::Postfix;
use stats::{fmt_latency, fmt_mb, Measured, Percentiles, Row};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long Postfix may take to deliver its queue after a row.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(listen) = &args.null_milter {
        return procs::null_milter(listen).unwrap_or_else(|e| {
            eprintln!("sigstamp-bench --null-milter: {e:#}");
            ExitCode::FAILURE
        });
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sigstamp-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match (args.directory_users, args.ldap_users) {
        (Some(users), _) => rt.block_on(directory::run(users, args.sigstamp.as_deref())),
        (None, Some(users)) => rt.block_on(ldap::run(users, args.sigstamp.as_deref())),
        (None, None) if args.stamp_memory => stamp_memory::run(args.sigstamp.as_deref()),
        (None, None) => rt.block_on(smtp_table(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sigstamp-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What every row shares.
struct Ctx {
    args: Args,
    sink: RunningSink,
    sigstamp: Option<PathBuf>,
    messages: Arc<Vec<message::Prepared>>,
    /// Things worth saying under the table.
    notes: Vec<String>,
    /// A row failed messages or left some unstamped.
    failed: bool,
    /// Messages accepted by the first hop so far, warm-ups included (each reaches the sink).
    accepted: u64,
}

impl Ctx {
    /// The load of `sessions` sessions on `target`, as fast as it goes.
    fn plan(&self, target: SocketAddr, sessions: u32, load: Load) -> Plan {
        Plan {
            target,
            sessions,
            load,
            rate: None,
            messages: self.messages.clone(),
            rcpt: self.args.to.clone(),
        }
    }
}

async fn smtp_table(args: Args) -> anyhow::Result<ExitCode> {
    let raw = message::load(args.message.as_deref())?;
    let messages: Vec<_> = raw
        .iter()
        .map(|m| message::prepare(m, args.from.as_deref()))
        .collect();
    let needs_sigstamp = args
        .rows
        .iter()
        .any(|r| matches!(r, RowKind::Relay | RowKind::Milter))
        || args.idle_sessions > 0;
    let sigstamp = needs_sigstamp
        .then(|| procs::sigstamp_binary(args.sigstamp.as_deref()))
        .transpose()?;
    let sink = match (args.sink, RunningSink::smtp_sink_binary()) {
        (SinkKind::Builtin, _) | (SinkKind::Auto, None) => RunningSink::start_builtin().await?,
        (_, Some(bin)) => RunningSink::start_smtp_sink(&bin).await?,
        (SinkKind::SmtpSink, None) => anyhow::bail!("--sink smtp-sink: smtp-sink not found"),
    };
    let sizes: u64 = messages.iter().map(|m| m.size).sum::<u64>() / messages.len() as u64;
    println!(
        "sigstamp-bench {}  {} cores, load average {}",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{} message(s) of {} bytes on average, {} sessions, {}{}, sink: {}{}",
        messages.len(),
        sizes,
        args.sessions,
        match args.load() {
            Load::Count(n) => format!("{n} messages per row"),
            Load::For(d) => format!("{} per row", humantime::format_duration(d)),
        },
        args.rate
            .map_or(String::new(), |r| format!(" at {r} msgs/s")),
        sink.name(),
        sigstamp
            .as_ref()
            .map_or(String::new(), |p| format!(", sigstamp: {}", p.display())),
    );
    let mut ctx = Ctx {
        sink,
        sigstamp,
        messages: Arc::new(messages),
        notes: Vec::new(),
        failed: false,
        accepted: 0,
        args,
    };
    let postfix_ok =
        sigstamp_testkit::find_tool("postfix").is_some() && sigstamp_testkit::is_root();
    let mut rows = Vec::new();
    let mut half = Vec::new();
    for kind in ctx.args.rows.clone() {
        if kind.needs_postfix() && !postfix_ok {
            ctx.notes.push(format!(
                "{}: skipped (needs Postfix installed and running as root)",
                kind.label()
            ));
            continue;
        }
        let rate = ctx.args.rate;
        rows.push(run_row(&mut ctx, kind, rate, kind.label().to_string()).await?);
        if kind == RowKind::Relay {
            // Right after the relay row, before any Postfix row: Postfix keeps delivering
            // its queue after a row ends, which would load the box during these.
            half = half_rate_rows(&mut ctx, &rows).await?;
        }
    }
    rows.extend(half);
    milter_floor(&mut ctx, &rows);
    if postfix_ok && ctx.args.side_by_side {
        side_by_side(&mut ctx, &rows).await?;
    }
    println!();
    print!("{}", stats::table(&rows));
    if ctx.args.idle_sessions > 0 {
        idle_sessions(&mut ctx).await?;
    }
    for n in &ctx.notes {
        println!("{n}");
    }
    Ok(if ctx.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The milter row against its floor, the null milter, measured in the same run (issue 18:
/// Postfix + sigstamp milter ≥ 0.9 of Postfix + null milter).
fn milter_floor(ctx: &mut Ctx, rows: &[Row]) {
    let rate = |kind: RowKind| {
        rows.iter()
            .find(|r| r.label == kind.label())
            .map(|r| r.measured.msgs_per_sec())
    };
    if let (Some(milter), Some(null)) = (rate(RowKind::Milter), rate(RowKind::NullMilter)) {
        if null > 0.0 {
            ctx.notes.push(format!(
                "Postfix + milter / Postfix + null milter: {:.2} ({milter:.0} / {null:.0} msgs/s)",
                milter / null
            ));
        }
    }
}

/// The milter against the null milter once more, both at the same time: each behind its own
/// Postfix, half the sessions each, for the same window. Rows measured one after the other
/// move by ±10% on a shared 2-core box (the box itself runs faster or slower from one
/// 10-second window to the next); side by side, both see the same box, so their ratio is
/// the per-message cost of one against the other.
async fn side_by_side(ctx: &mut Ctx, rows: &[Row]) -> anyhow::Result<()> {
    let has = |kind: RowKind| rows.iter().find(|r| r.label == kind.label());
    let (Some(null_row), Some(_), None) = (
        has(RowKind::NullMilter),
        has(RowKind::Milter),
        ctx.args.rate,
    ) else {
        return Ok(());
    };
    let window = match ctx.args.load() {
        Load::For(d) => d,
        Load::Count(_) => null_row
            .measured
            .elapsed
            .clamp(Duration::from_secs(3), Duration::from_secs(30)),
    };
    // Both processes live until the end of this function.
    let (_null, pf_null) = behind_postfix(ctx, RowKind::NullMilter).await?;
    let (_ours, pf_ours) = behind_postfix(ctx, RowKind::Milter).await?;
    let sessions = (ctx.args.sessions / 2).max(1);
    if ctx.args.warmup > 0 {
        for pf in [&pf_null, &pf_ours] {
            let warm = ctx.plan(pf.smtpd, sessions, Load::Count(ctx.args.warmup));
            ctx.accepted += client::run(&warm, Arc::default()).await.ok;
        }
    }
    drain(ctx, &pf_null, "side by side", "warm-up").await;
    drain(ctx, &pf_ours, "side by side", "warm-up").await;
    settle(ctx).await;
    let (a, b) = (
        ctx.plan(pf_null.smtpd, sessions, Load::For(window)),
        ctx.plan(pf_ours.smtpd, sessions, Load::For(window)),
    );
    let (n, m) = tokio::join!(
        client::run(&a, Arc::default()),
        client::run(&b, Arc::default())
    );
    ctx.accepted += n.ok + m.ok;
    drain(ctx, &pf_null, "side by side", "run").await;
    drain(ctx, &pf_ours, "side by side", "run").await;
    settle(ctx).await;
    if n.failed + m.failed > 0 {
        ctx.failed = true;
        ctx.notes.push(format!(
            "side by side: {} messages failed, e.g. {:?}",
            n.failed + m.failed,
            n.errors.iter().chain(&m.errors).next()
        ));
    }
    if n.ok > 0 {
        ctx.notes.push(format!(
            "Postfix + milter / Postfix + null milter, side by side ({} sessions each, {}): {:.2} ({} / {} msgs)",
            a.sessions,
            humantime::format_duration(Duration::from_secs(window.as_secs())),
            m.ok as f64 / n.ok as f64,
            m.ok,
            n.ok
        ));
    }
    Ok(())
}

/// Rerun straight and relay at half the relay's throughput: the latency sigstamp adds when
/// it is not the bottleneck (issue 7: p99 added ≤ 5 ms).
async fn half_rate_rows(ctx: &mut Ctx, rows: &[Row]) -> anyhow::Result<Vec<Row>> {
    let relay = rows.iter().find(|r| r.label == RowKind::Relay.label());
    let (true, None, Some(relay)) = (ctx.args.half_rate, ctx.args.rate, relay) else {
        return Ok(Vec::new());
    };
    let rate = (relay.measured.msgs_per_sec() / 2.0).round().max(1.0);
    let straight = run_row(
        ctx,
        RowKind::Direct,
        Some(rate),
        format!("straight @ {rate}/s"),
    )
    .await?;
    let through = run_row(
        ctx,
        RowKind::Relay,
        Some(rate),
        format!("sigstamp relay @ {rate}/s"),
    )
    .await?;
    if let (Some(a), Some(b)) = (
        Percentiles::of(&straight.measured.latency),
        Percentiles::of(&through.measured.latency),
    ) {
        ctx.notes.push(format!(
            "latency added by sigstamp at {rate} msgs/s (half its throughput): p50 {}, p99 {}, p99.9 {}",
            fmt_delta(a.p50, b.p50),
            fmt_delta(a.p99, b.p99),
            fmt_delta(a.p999, b.p999)
        ));
    }
    Ok(vec![straight, through])
}

fn fmt_delta(base: u64, with: u64) -> String {
    if with >= base {
        fmt_latency(with - base)
    } else {
        format!("-{}", fmt_latency(base - with))
    }
}

/// Start what `kind` needs, warm it up, measure, stop it.
async fn run_row(
    ctx: &mut Ctx,
    kind: RowKind,
    rate: Option<f64>,
    label: String,
) -> anyhow::Result<Row> {
    let sink = ctx.sink.addr();
    let bin = || ctx.sigstamp.clone().context("no sigstamp binary");
    // The null milter: a process of its own like sigstamp's, but no sigstamp counters.
    let mut null_milter = None;
    let (sigstamp, pf) = match kind {
        RowKind::Direct => (None, None),
        RowKind::Relay => (
            Some(Sigstamp::start(&bin()?, Edge::Relay { next_hop: sink }).await?),
            None,
        ),
        RowKind::Postfix => (None, Some(start_postfix(sink, None).await?)),
        RowKind::NullMilter => {
            let (n, pf) = behind_postfix(ctx, RowKind::NullMilter).await?;
            null_milter = Some(n);
            (None, Some(pf))
        }
        RowKind::Milter => {
            let (s, pf) = behind_postfix(ctx, RowKind::Milter).await?;
            (Some(s), Some(pf))
        }
    };
    let target = match (&pf, &sigstamp) {
        (Some(pf), _) => pf.smtpd,
        (None, Some(s)) => s.addr,
        (None, None) => sink,
    };
    let mut plan = ctx.plan(target, ctx.args.sessions, Load::Count(ctx.args.warmup));
    if ctx.args.warmup > 0 {
        let warm = client::run(&plan, Arc::default()).await;
        if warm.ok == 0 {
            anyhow::bail!(
                "{label}: no message got through the warm-up: {:?}",
                warm.errors
            );
        }
        ctx.accepted += warm.ok;
    }
    if let Some(pf) = &pf {
        drain(ctx, pf, &label, "warm-up").await;
    }
    settle(ctx).await;
    let before = match &sigstamp {
        Some(s) => Some(s.counters().await?),
        None => None,
    };
    let sink_before = ctx.sink.counts();
    plan.load = ctx.args.load();
    plan.rate = rate;
    let measured = with_progress(&label, &plan, ctx.args.quiet).await;
    ctx.accepted += measured.ok;
    if let Some(pf) = &pf {
        drain(ctx, pf, &label, "run").await;
    }
    settle(ctx).await;
    let mut row = Row {
        label: label.clone(),
        peak_rss: sigstamp
            .as_ref()
            .map(|s| s.memory())
            .transpose()?
            .map(|m| m.peak),
        stamped: None,
        measured,
    };
    if let (Some(s), Some(before)) = (&sigstamp, before) {
        let c = s.counters().await?.since(&before);
        row.stamped = Some((c.stamped, c.all));
        if c.stamped < row.measured.ok {
            ctx.failed = true;
            ctx.notes.push(format!(
                "{label}: only {} of {} accepted messages were stamped (sigstamp log:\n{})",
                c.stamped,
                row.measured.ok,
                tail(&s.log(), 20)
            ));
        }
        // Where sigstamp's time goes, from its own histograms.
        let us = |s: f64| fmt_latency((s * 1e6).round() as u64);
        let cpu = c
            .cpu_mean()
            .map_or(String::new(), |cpu| format!(", {} CPU", us(cpu)));
        match c.means() {
            (Some(st), Some(hop)) => ctx.notes.push(format!(
                "{label}: sigstamp's metrics: stamping {} per message (mean{cpu}), end of DATA to the next hop's 250 {} (mean)",
                us(st),
                us(hop)
            )),
            (Some(st), None) => ctx.notes.push(format!(
                "{label}: sigstamp's metrics: stamping {} per message (mean{cpu})",
                us(st)
            )),
            _ => {}
        }
    }
    // The built-in sink checks delivery itself: everything accepted arrived, stamped when
    // it went through sigstamp.
    if let (Some((r0, t0)), Some((r1, t1))) = (sink_before, ctx.sink.counts()) {
        let (received, traced) = (r1 - r0, t1 - t0);
        let want_traced = if sigstamp.is_some() { received } else { 0 };
        if received != row.measured.ok || traced != want_traced {
            ctx.failed = true;
            ctx.notes.push(format!(
                "{label}: the sink received {received} messages ({traced} stamped) for {} accepted",
                row.measured.ok
            ));
        }
    }
    drop(null_milter);
    if row.measured.failed > 0 {
        ctx.failed = true;
        ctx.notes.push(format!(
            "{label}: {} messages failed, e.g. {:?}",
            row.measured.failed, row.measured.errors
        ));
    }
    Ok(row)
}

/// Wait (briefly) until the built-in sink has counted every message accepted so far: it
/// counts on its own task, just after answering.
async fn settle(ctx: &Ctx) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ctx
        .sink
        .counts()
        .is_some_and(|(received, _)| received < ctx.accepted)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The milter of a milter row (`RowKind::Milter`: `sigstamp serve`; otherwise the null
/// milter, this binary) and a Postfix in front of it relaying to the sink.
async fn behind_postfix(ctx: &Ctx, kind: RowKind) -> anyhow::Result<(Sigstamp, Postfix)> {
    let unix = ctx.args.milter_socket == MilterSocket::Unix;
    let milter = if kind == RowKind::Milter {
        let bin = ctx.sigstamp.clone().context("no sigstamp binary")?;
        Sigstamp::start(&bin, Edge::Milter { unix }).await?
    } else {
        Sigstamp::start(&std::env::current_exe()?, Edge::NullMilter { unix }).await?
    };
    let pf = start_postfix(ctx.sink.addr(), Some(milter.milter.clone())).await?;
    Ok((milter, pf))
}

/// A private Postfix relaying to `sink`, optionally with sigstamp as its milter (`inet:…`,
/// `unix:…`); a milter that fails tempfails the message, so a broken milter shows as failures.
async fn start_postfix(sink: SocketAddr, milter: Option<String>) -> anyhow::Result<Postfix> {
    tokio::task::spawn_blocking(move || {
        let pf = Postfix::relaying_to(sink).milter_default_action("tempfail");
        match milter {
            Some(m) => pf.milter(&m).start(),
            None => pf.start(),
        }
    })
    .await?
}

async fn drain(ctx: &mut Ctx, pf: &Postfix, label: &str, after: &str) {
    if let Err(left) = pf.drain(DRAIN_LIMIT).await {
        ctx.notes.push(format!(
            "{label}: {left} messages still in Postfix's queue {}s after the {after}",
            DRAIN_LIMIT.as_secs()
        ));
    }
}

/// Run `plan` with a progress bar on stderr (hidden when stderr is not a terminal).
async fn with_progress(label: &str, plan: &Plan, quiet: bool) -> Measured {
    let (len, template) = match plan.load {
        Load::Count(n) => (
            n,
            "{prefix:>24} {bar:30} {pos}/{len} msgs {per_sec} {elapsed}",
        ),
        Load::For(d) => (
            d.as_secs().max(1),
            "{prefix:>24} {bar:30} {elapsed}/{len}s {msg}",
        ),
    };
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar.set_prefix(label.to_string());
    let done = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (bar, done, load) = (bar.clone(), done.clone(), plan.load);
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let n = done.load(Ordering::Relaxed);
                match load {
                    Load::Count(_) => bar.set_position(n),
                    Load::For(_) => {
                        bar.set_position(start.elapsed().as_secs());
                        bar.set_message(format!("{n} msgs"));
                    }
                }
            }
        })
    };
    let measured = client::run(plan, done).await;
    ticker.abort();
    bar.finish_and_clear();
    measured
}

/// Issue 7's memory target: sigstamp's RSS with many idle client sessions (after EHLO).
async fn idle_sessions(ctx: &mut Ctx) -> anyhow::Result<()> {
    let bin = ctx.sigstamp.clone().context("no sigstamp binary")?;
    let s = Sigstamp::start(
        &bin,
        Edge::Relay {
            next_hop: ctx.sink.addr(),
        },
    )
    .await?;
    let before = s.memory()?;
    let n = ctx.args.idle_sessions;
    // Opened a few dozen at a time: idle clients trickle in; a burst of a thousand SYNs
    // would measure the kernel's accept queue instead.
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (addr, gate) = (s.addr, gate.clone());
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await;
            Conn::open(addr).await
        });
    }
    let mut conns = Vec::with_capacity(n as usize);
    let mut errors = 0;
    let mut first_error = None;
    while let Some(c) = opening.join_next().await {
        match c.expect("open task") {
            Ok(c) => conns.push(c),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    // Let the sessions settle into their idle wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = s.memory()?;
    ctx.notes.push(format!(
        "{} idle sessions{}: sigstamp RSS {} (peak {}), {} before they opened, ≈{:.1} KB each",
        conns.len(),
        if let Some(e) = &first_error {
            format!(" ({errors} could not open: {e})")
        } else {
            String::new()
        },
        fmt_mb(after.rss),
        fmt_mb(after.peak),
        fmt_mb(before.rss),
        (after.rss.saturating_sub(before.rss)) as f64 / 1024.0 / conns.len().max(1) as f64
    ));
    if errors > 0 {
        ctx.failed = true;
    }
    drop(conns);
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
