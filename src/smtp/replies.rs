//! Every reply sigstamp itself sends, in one table, and the error type that carries a reply.
//!
//! The code that fails decides what the client hears: handlers return
//! `Err(SmtpError::from(replies::X))` and the session writes it. Replies relayed from the next
//! hop are [`Reply`] values built from its response, never from this table.

use std::fmt;

/// A fixed reply: basic code, enhanced status code (RFC 3463), text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canned {
    pub code: u16,
    pub status: &'static str,
    pub text: &'static str,
}

const fn r(code: u16, status: &'static str, text: &'static str) -> Canned {
    Canned { code, status, text }
}

// Greeting, session end.
pub const GREETING: Canned = r(220, "", "ESMTP sigstamp");
pub const BYE: Canned = r(221, "2.0.0", "Bye");
pub const SHUTTING_DOWN: Canned = r(421, "4.3.2", "Service shutting down, try again later");
pub const TIMEOUT: Canned = r(421, "4.4.2", "Timeout exceeded, closing connection");
pub const TOO_MANY_SESSIONS: Canned = r(421, "4.7.0", "Too many connections, try again later");
pub const TOO_MANY_ERRORS: Canned = r(421, "4.7.0", "Too many errors, closing connection");
pub const CLIENT_REFUSED: Canned = r(554, "5.7.1", "Client host not allowed to relay");

// Positive.
pub const OK: Canned = r(250, "2.0.0", "OK");
pub const RESET: Canned = r(250, "2.0.0", "Reset OK");
pub const CHUNK_OK: Canned = r(250, "2.0.0", "Chunk received");
pub const START_DATA: Canned = r(354, "", "End data with <CR><LF>.<CR><LF>");
pub const READY_TLS: Canned = r(220, "2.0.0", "Ready to start TLS");
pub const VRFY: Canned = r(252, "2.5.2", "Cannot VRFY user, but will accept message");
pub const HELP: Canned = r(
    214,
    "2.0.0",
    "See RFC 5321; sigstamp relays mail to its next hop",
);

// Syntax and sequence.
pub const UNKNOWN_COMMAND: Canned = r(500, "5.5.2", "Syntax error, command unrecognized");
pub const LINE_TOO_LONG: Canned = r(500, "5.5.2", "Line too long");
pub const SYNTAX: Canned = r(501, "5.5.4", "Syntax error in parameters or arguments");
pub const BAD_SENDER: Canned = r(501, "5.1.7", "Bad sender address syntax");
pub const BAD_RECIPIENT: Canned = r(501, "5.1.3", "Bad recipient address syntax");
/// RFC 6531 §3.7.4.1: a non-ASCII address in a transaction without SMTPUTF8.
pub const NON_ASCII_ADDRESS: Canned = r(
    553,
    "5.6.7",
    "Non-ASCII address requires the SMTPUTF8 parameter",
);
pub const BAD_PARAMETER: Canned = r(501, "5.5.4", "Invalid command parameter");
pub const UNSUPPORTED_PARAMETER: Canned = r(555, "5.5.4", "Unsupported command parameter");
pub const NOT_IMPLEMENTED: Canned = r(502, "5.5.1", "Command not implemented");
pub const NEED_HELO: Canned = r(503, "5.5.1", "Send HELO/EHLO first");
pub const XFORWARD_IN_TRANSACTION: Canned =
    r(503, "5.5.1", "XFORWARD not allowed in a mail transaction");
pub const NESTED_MAIL: Canned = r(503, "5.5.1", "Sender already specified");
pub const NEED_MAIL: Canned = r(503, "5.5.1", "Need MAIL command");
pub const NEED_RCPT: Canned = r(503, "5.5.1", "Need RCPT command");
pub const NO_VALID_RECIPIENTS: Canned = r(554, "5.5.1", "No valid recipients");
pub const TLS_ACTIVE: Canned = r(503, "5.5.1", "TLS already active");
pub const BDAT_AFTER_DATA: Canned = r(503, "5.5.1", "BDAT and DATA cannot be mixed");
pub const SMUGGLING: Canned = r(
    550,
    "5.5.2",
    "Bare CR or LF before a dot in message data is not allowed",
);

// Policy.
pub const MUST_STARTTLS: Canned = r(530, "5.7.0", "Must issue a STARTTLS command first");
pub const CLIENT_CERT_REJECTED: Canned =
    r(554, "5.7.1", "Client certificate missing or not accepted");
pub const TLS_UNAVAILABLE: Canned = r(454, "4.7.0", "TLS not available");

// Limits.
pub const TOO_MANY_RECIPIENTS: Canned = r(452, "4.5.3", "Too many recipients");
pub const MESSAGE_TOO_BIG: Canned = r(
    552,
    "5.3.4",
    "Message size exceeds fixed maximum message size",
);

// A message split into one next-hop transaction per recipient group (rules give internal
// and external recipients different signatures): every part was accepted. The detail lists
// each part's own reply.
pub const SPLIT_ACCEPTED: Canned = r(
    250,
    "2.0.0",
    "Accepted as one transaction per recipient group",
);

// Next hop trouble: temporary, so the client keeps the message and retries.
pub const NEXT_HOP_UNREACHABLE: Canned = r(451, "4.4.1", "Next hop unreachable, try again later");
pub const NEXT_HOP_TIMEOUT: Canned = r(451, "4.4.2", "Next hop timed out, try again later");
pub const NEXT_HOP_BROKEN: Canned = r(451, "4.4.2", "Next hop connection lost, try again later");
pub const NEXT_HOP_NO_TLS: Canned = r(
    451,
    "4.7.5",
    "Next hop does not offer the required TLS, try again later",
);
pub const LOCAL_ERROR: Canned = r(451, "4.3.0", "Local error, try again later");

/// Any reply: one code and one or more text lines. Relayed next-hop replies keep their lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// Serialise as `code-line` … `code line` with CRLF.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let line = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            // A reply line must not smuggle a line break from a next hop's text.
            let line: String = line.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, line).as_bytes());
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

impl From<Canned> for Reply {
    fn from(c: Canned) -> Self {
        let text = if c.status.is_empty() {
            c.text.to_string()
        } else {
            format!("{} {}", c.status, c.text)
        };
        Reply::new(c.code, text)
    }
}

impl Canned {
    /// This reply with extra detail appended to the text (e.g. the parameter name).
    pub fn with_detail(self, detail: impl fmt::Display) -> Reply {
        let mut r = Reply::from(self);
        if let Some(l) = r.lines.first_mut() {
            l.push_str(&format!(": {detail}"));
        }
        r
    }
}

/// A failure that carries the reply the client must hear, and whether the session ends.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reply}")]
pub struct SmtpError {
    pub reply: Reply,
    pub close: bool,
}

impl SmtpError {
    pub fn closing(reply: impl Into<Reply>) -> Self {
        SmtpError {
            reply: reply.into(),
            close: true,
        }
    }
}

impl From<Canned> for SmtpError {
    fn from(c: Canned) -> Self {
        SmtpError {
            reply: c.into(),
            close: false,
        }
    }
}

impl From<Reply> for SmtpError {
    fn from(reply: Reply) -> Self {
        SmtpError {
            reply,
            close: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_reply_uses_dash_then_space() {
        let r = Reply {
            code: 250,
            lines: vec!["a".into(), "b".into()],
        };
        let mut out = Vec::new();
        r.write_to(&mut out);
        assert_eq!(out, b"250-a\r\n250 b\r\n");
    }

    #[test]
    fn canned_reply_carries_enhanced_code() {
        let mut out = Vec::new();
        Reply::from(TIMEOUT).write_to(&mut out);
        assert_eq!(out, b"421 4.4.2 Timeout exceeded, closing connection\r\n");
    }

    #[test]
    fn relayed_text_cannot_inject_lines() {
        let mut out = Vec::new();
        Reply::new(550, "5.0.0 no\r\n250 ok").write_to(&mut out);
        assert_eq!(out, b"550 5.0.0 no250 ok\r\n");
    }
}
