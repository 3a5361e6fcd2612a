//! What sigstamp's integration tests and its bench share, so each exists once:
//!
//! - [`require`] / [`require_tool`]: a test that needs an outside tool skips when it is
//!   missing, except under CI (`CI` set), where a missing tool is a failure.
//! - [`free_port`] / [`free_addr`] and [`wait_listening`]: loopback ports.
//! - [`RecordingSink`]: the SMTP sink tests deliver to (sigstamp's own, collecting what it receives).
//! - [`Postfix`]: a private Postfix instance in a temporary directory, started and ready.
#![forbid(unsafe_code)]

mod net;
mod postfix;
mod sink;
mod tools;

pub use net::{free_addr, free_port, wait_listening, wait_listening_blocking};
pub use postfix::{Postfix, PostfixBuilder};
pub use sink::{Received, RecordingSink};
pub use tools::{find_tool, is_root, require, require_command, require_tool, required};
