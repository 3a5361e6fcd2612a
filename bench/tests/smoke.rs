//! Smoke runs of the real binary: a few hundred messages straight to the built-in sink and
//! through a debug-build `sigstamp serve`, then a short fixed-rate run by duration. Proves
//! the tool works end to end; asserts counts, never speed.

use std::path::PathBuf;
use std::process::{Command, Output};

const BENCH: &str = env!("CARGO_BIN_EXE_sigstamp-bench");

/// `sigstamp` from the same target folder (`cargo test --workspace` builds it for the main
/// crate's own integration tests).
fn sigstamp() -> Option<PathBuf> {
    let p = PathBuf::from(BENCH).parent()?.join("sigstamp");
    p.is_file().then_some(p)
}

fn bench(args: &[&str]) -> (Output, String) {
    let out = Command::new(BENCH)
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run sigstamp-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sigstamp-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, stdout)
}

/// The table row starting with `label`, split into columns after the label.
fn row<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{table}"));
    line[label.len()..].split_whitespace().collect()
}

#[test]
fn a_few_hundred_messages_through_the_relay_get_stamped() {
    let what = format!("a sigstamp binary next to {BENCH} (cargo build --bin sigstamp)");
    let Some(sigstamp) = sigstamp_testkit::required(&what, sigstamp()) else {
        return;
    };
    let (_, out) = bench(&[
        "--sigstamp",
        sigstamp.to_str().unwrap(),
        "--sink",
        "builtin",
        "--rows",
        "direct,relay",
        "--message",
        "examples",
        "--messages",
        "300",
        "--sessions",
        "4",
        "--warmup",
        "8",
        "--half-rate",
        "false",
        "--idle-sessions",
        "20",
        "--quiet",
    ]);
    // msgs, failed, …, stamped as the last column.
    let straight = row(&out, "straight to sink");
    assert_eq!(straight[..2], ["300", "0"], "{out}");
    assert_eq!(straight.last(), Some(&"-"), "{out}");
    let relay = row(&out, "sigstamp relay");
    assert_eq!(relay[..2], ["300", "0"], "{out}");
    assert_eq!(relay.last(), Some(&"300/300"), "{out}");
    assert!(out.contains("4 message(s)"), "{out}");
    assert!(out.contains("20 idle sessions: sigstamp RSS"), "{out}");
}

#[test]
fn fixed_rate_for_a_duration() {
    let (_, out) = bench(&[
        "--sink",
        "builtin",
        "--rows",
        "direct",
        "--duration",
        "1s",
        "--rate",
        "200",
        "--sessions",
        "4",
        "--warmup",
        "0",
        "--idle-sessions",
        "0",
        "--quiet",
    ]);
    assert!(out.contains("1s per row at 200 msgs/s"), "{out}");
    // 200 messages are due within the second.
    assert_eq!(row(&out, "straight to sink")[..2], ["200", "0"], "{out}");
}

/// The milter rows, the null milter (the floor) and sigstamp's, in one run through a private
/// Postfix: every message arrives, sigstamp's are stamped, the null milter's are not, and
/// the ratio of the two is printed.
#[test]
fn milter_and_null_milter_rows() {
    let what = format!("a sigstamp binary next to {BENCH} (cargo build --bin sigstamp)");
    let Some(sigstamp) = sigstamp_testkit::required(&what, sigstamp()) else {
        return;
    };
    if !sigstamp_testkit::require_tool("postfix")
        || !sigstamp_testkit::require("root (Postfix's master)", sigstamp_testkit::is_root())
    {
        return;
    }
    let (_, out) = bench(&[
        "--sigstamp",
        sigstamp.to_str().unwrap(),
        "--sink",
        "builtin",
        "--rows",
        "null-milter,milter",
        "--messages",
        "100",
        "--sessions",
        "4",
        "--warmup",
        "4",
        "--idle-sessions",
        "0",
        "--quiet",
    ]);
    let null = row(&out, "Postfix + null milter");
    assert_eq!(null[..2], ["100", "0"], "{out}");
    assert_eq!(null.last(), Some(&"-"), "{out}");
    let milter = row(&out, "Postfix + milter");
    assert_eq!(milter[..2], ["100", "0"], "{out}");
    assert_eq!(milter.last(), Some(&"100/100"), "{out}");
    assert!(
        out.contains("Postfix + milter / Postfix + null milter: "),
        "{out}"
    );
}
