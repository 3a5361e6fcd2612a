//! Outside tools a test needs: skip when missing, fail when missing under CI.

use std::path::PathBuf;
use std::process::Command;

/// `found` passed through. When false: a failure under CI (`CI` set: `bash .ci/run` installs
/// every tool, so a missing one means the tests did not run), else a printed skip.
pub fn require(what: &str, found: bool) -> bool {
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{what} is required in CI (bash .ci/run installs it)");
        }
        eprintln!("SKIPPED: {what} is not available (bash .ci/run installs it)");
    }
    found
}

/// [`require`] for a lookup: `found` passed through, `None` skips (or fails under CI).
pub fn required<T>(what: &str, found: Option<T>) -> Option<T> {
    require(what, found.is_some()).then_some(found).flatten()
}

/// Is `name` on PATH (or in /usr/sbin, where Postfix's tools live)? See [`require`].
pub fn require_tool(name: &str) -> bool {
    require(name, find_tool(name).is_some())
}

/// Does the shell command `check` succeed (e.g. a perl module loads)? See [`require`].
pub fn require_command(what: &str, check: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(check)
        .output()
        .is_ok_and(|o| o.status.success());
    require(what, ok)
}

/// `name` from PATH, /usr/sbin or /usr/libexec/postfix.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/sbin"),
            PathBuf::from("/usr/libexec/postfix"),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether this process runs as root (Postfix's master must), read from /proc.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_things_pass_through() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("no-such-tool-sigstamp").is_none());
        assert!(require_tool("sh"));
        assert!(require_command("sh", "true"));
        assert_eq!(required("a value", Some(7)), Some(7));
    }
}
