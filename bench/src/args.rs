//! Command-line arguments.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Side-by-side SMTP load: straight to a sink, through sigstamp's relay, through Postfix as a
/// relay, through Postfix with a null milter and through Postfix with sigstamp's milter.
/// Prints one table.
#[derive(Parser, Debug, Clone)]
#[command(name = "sigstamp-bench", version)]
pub struct Args {
    /// Concurrent SMTP sessions.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sessions: u32,
    /// Messages per row (ignored when --duration is given).
    #[arg(long, default_value_t = 2000)]
    pub messages: u64,
    /// Run each row for this long instead of a message count (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// A message file, or a folder of .eml files sent in turn [default: the built-in ~40 KB
    /// multipart/alternative message].
    #[arg(long)]
    pub message: Option<PathBuf>,
    /// A fixed total rate (messages per second) instead of as fast as possible; latency is
    /// then measured from each message's scheduled start.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The rows to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "direct,relay,postfix,null-milter,milter"
    )]
    pub rows: Vec<RowKind>,
    /// The sink at the end of every path.
    #[arg(long, value_enum, default_value_t = SinkKind::Auto)]
    pub sink: SinkKind,
    /// How Postfix reaches the milter: TCP on loopback, or a unix socket.
    #[arg(long, value_enum, default_value_t = MilterSocket::Inet)]
    pub milter_socket: MilterSocket,
    /// The sigstamp binary [default: `sigstamp` next to this binary].
    #[arg(long)]
    pub sigstamp: Option<PathBuf>,
    /// Envelope sender [default: each message's From address].
    #[arg(long)]
    pub from: Option<String>,
    /// Envelope recipient.
    #[arg(long, default_value = "bob@partner.example")]
    pub to: String,
    /// Messages sent before each row's measurement starts (not counted).
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    /// After the throughput rows, rerun straight and relay at half the relay's throughput
    /// to measure the latency sigstamp adds (skipped with --rate).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub half_rate: bool,
    /// After the rows, the milter and the null milter once more side by side (each behind
    /// its own Postfix, half the sessions each, the same window): their ratio on the same box
    /// at the same time.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub side_by_side: bool,
    /// Idle sessions held open against a fresh sigstamp relay to measure its memory (0: skip).
    #[arg(long, default_value_t = 1000)]
    pub idle_sessions: u32,
    /// Instead of the SMTP table: sync this many users from the fake Graph tenant with
    /// `sigstamp sync --once`, and report sync time, peak RSS and lookup time.
    #[arg(long)]
    pub directory_users: Option<usize>,
    /// Instead of the SMTP table: sync this many users from a real slapd (the tests' OpenLDAP)
    /// with `sigstamp sync --once`, and report sync time and peak RSS.
    #[arg(long)]
    pub ldap_users: Option<usize>,
    /// Instead of the SMTP table: the peak RSS of `sigstamp stamp` on three generated
    /// pathological messages (50 MB attachment, 4M empty parts, 10 MB header line).
    #[arg(long)]
    pub stamp_memory: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Internal: serve the null milter on this address (`inet:…` or `unix:…`) until killed;
    /// the bench starts itself this way for the "Postfix + null milter" row.
    #[arg(long, hide = true)]
    pub null_milter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RowKind {
    /// Straight to the sink.
    Direct,
    /// Through `sigstamp serve`'s SMTP relay.
    Relay,
    /// Through Postfix as a plain relay.
    Postfix,
    /// Through Postfix with a null milter: the same negotiation as sigstamp's milter, each
    /// body replaced by itself (the milter protocol's cost, the milter row's floor).
    NullMilter,
    /// Through Postfix with sigstamp as its milter.
    Milter,
}

impl RowKind {
    pub fn label(self) -> &'static str {
        match self {
            RowKind::Direct => "straight to sink",
            RowKind::Relay => "sigstamp relay",
            RowKind::Postfix => "Postfix relay",
            RowKind::NullMilter => "Postfix + null milter",
            RowKind::Milter => "Postfix + milter",
        }
    }

    pub fn needs_postfix(self) -> bool {
        matches!(
            self,
            RowKind::Postfix | RowKind::NullMilter | RowKind::Milter
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MilterSocket {
    /// `inet:127.0.0.1:PORT`.
    Inet,
    /// `unix:/path/milter.sock` (no TCP acknowledgements in the way).
    Unix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// Postfix's smtp-sink when installed, else the built-in one.
    Auto,
    /// Postfix's smtp-sink.
    SmtpSink,
    /// sigstamp's built-in sink (counts stamped messages).
    Builtin,
}

impl Args {
    /// The load each row runs: a count, or a duration.
    pub fn load(&self) -> Load {
        match self.duration {
            Some(d) => Load::For(d),
            None => Load::Count(self.messages),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    Count(u64),
    For(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("sigstamp-bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_issue_7s_load() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.sessions, 32);
        assert_eq!(a.load(), Load::Count(2000));
        assert_eq!(
            a.rows,
            [
                RowKind::Direct,
                RowKind::Relay,
                RowKind::Postfix,
                RowKind::NullMilter,
                RowKind::Milter
            ]
        );
        assert_eq!(a.sink, SinkKind::Auto);
        assert_eq!(a.milter_socket, MilterSocket::Inet);
        assert!(a.half_rate);
        assert_eq!(a.rate, None);
        assert_eq!(a.directory_users, None);
        assert_eq!(a.null_milter, None);
        let a = parse(&[
            "--rows",
            "null-milter,milter",
            "--null-milter",
            "unix:/x.sock",
        ])
        .unwrap();
        assert_eq!(a.rows, [RowKind::NullMilter, RowKind::Milter]);
        assert_eq!(a.null_milter.as_deref(), Some("unix:/x.sock"));
    }

    #[test]
    fn every_flag_parses() {
        let a = parse(&[
            "--sessions",
            "8",
            "--messages",
            "300",
            "--duration",
            "1m 30s",
            "--message",
            "msgs/",
            "--rate",
            "750.5",
            "--rows",
            "direct,relay",
            "--sink",
            "builtin",
            "--milter-socket",
            "unix",
            "--sigstamp",
            "/x/sigstamp",
            "--from",
            "a@b.example",
            "--warmup",
            "0",
            "--half-rate",
            "false",
            "--idle-sessions",
            "0",
            "-q",
        ])
        .unwrap();
        assert_eq!(a.sessions, 8);
        assert_eq!(a.load(), Load::For(Duration::from_secs(90)));
        assert_eq!(a.message.as_deref(), Some(std::path::Path::new("msgs/")));
        assert_eq!(a.rate, Some(750.5));
        assert_eq!(a.rows, [RowKind::Direct, RowKind::Relay]);
        assert_eq!(a.sink, SinkKind::Builtin);
        assert_eq!(a.milter_socket, MilterSocket::Unix);
        assert_eq!(a.from.as_deref(), Some("a@b.example"));
        assert_eq!(a.warmup, 0);
        assert!(!a.half_rate);
        assert_eq!(a.idle_sessions, 0);
        assert!(a.quiet);
    }

    #[test]
    fn directory_mode() {
        let a = parse(&["--directory-users", "100000"]).unwrap();
        assert_eq!(a.directory_users, Some(100_000));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--sessions", "0"]).is_err());
        assert!(parse(&["--duration", "soon"]).is_err());
        assert!(parse(&["--rows", "direct,sendmail"]).is_err());
        assert!(parse(&["--sink", "mine"]).is_err());
        assert!(parse(&["--milter-socket", "pipe"]).is_err());
    }
}
