//! What is checked on the raw command line, before smtp-proto parses it: smtp-proto 0.2.5
//! reads an overflowing number as a smaller one (`BDAT 184467440737095516150005` is 5) and
//! turns bytes that are not UTF-8 into U+FFFD. A relay must neither relay a wrong size nor
//! rewrite an address.

use crate::smtp::replies::{self, SmtpError};

/// The raw line, judged.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Precheck {
    /// BDAT, parsed here: its size must be exact.
    Bdat { size: usize, last: bool },
    /// Anything else: smtp-proto may parse it.
    Parse,
}

pub(super) fn precheck(line: &[u8]) -> Result<Precheck, SmtpError> {
    let line = line
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or(line);
    let mut words = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty());
    let verb = words.next().unwrap_or_default();
    if verb.eq_ignore_ascii_case(b"BDAT") {
        return bdat(words).map(|(size, last)| Precheck::Bdat { size, last });
    }
    let (is_mail, is_rcpt) = (
        verb.eq_ignore_ascii_case(b"MAIL"),
        verb.eq_ignore_ascii_case(b"RCPT"),
    );
    if !(is_mail || is_rcpt) {
        return Ok(Precheck::Parse);
    }
    if std::str::from_utf8(line).is_err() {
        // Where the bad bytes are decides the answer: the address, or a parameter.
        let addr = line
            .iter()
            .position(|b| *b == b'<')
            .map(|s| &line[s..])
            .map(|a| &a[..a.iter().position(|b| *b == b'>').map_or(a.len(), |e| e + 1)]);
        let in_addr = addr.is_some_and(|a| std::str::from_utf8(a).is_err());
        let reply = match (in_addr, is_mail) {
            (true, true) => replies::BAD_SENDER.with_detail("address is not valid UTF-8"),
            (true, false) => replies::BAD_RECIPIENT.with_detail("address is not valid UTF-8"),
            (false, _) => replies::SYNTAX.with_detail("bytes that are not valid UTF-8"),
        };
        return Err(reply.into());
    }
    if is_mail {
        for w in words {
            let Some(value) = w
                .get(..5)
                .filter(|k| k.eq_ignore_ascii_case(b"SIZE="))
                .map(|_| &w[5..])
            else {
                continue;
            };
            if value.iter().all(u8::is_ascii_digit) && number(value).is_none() {
                return Err(replies::SYNTAX.with_detail("SIZE out of range").into());
            }
        }
    }
    Ok(Precheck::Parse)
}

/// `BDAT chunk-size [LAST]` (RFC 3030). Any error closes the session: the client sends the
/// chunk whatever we answer, and a chunk of unknown size cannot be skipped — read as
/// commands, its bytes could be anything.
fn bdat<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> Result<(usize, bool), SmtpError> {
    let syntax = || SmtpError::closing(replies::SYNTAX.with_detail("BDAT chunk-size [LAST]"));
    let size = args.next().ok_or_else(syntax)?;
    if size.is_empty() || !size.iter().all(u8::is_ascii_digit) {
        return Err(syntax());
    }
    let size = number(size).ok_or_else(|| {
        SmtpError::closing(replies::SYNTAX.with_detail("BDAT chunk size out of range"))
    })?;
    let last = match args.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Err(syntax()),
    };
    if args.next().is_some() {
        return Err(syntax());
    }
    Ok((size, last))
}

/// Decimal digits as a number, `None` when it does not fit.
fn number(digits: &[u8]) -> Option<usize> {
    digits.iter().try_fold(0usize, |n, d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = |size, last| -> Result<Precheck, &str> { Ok(Precheck::Bdat { size, last }) };
        let cases: Vec<(&[u8], Result<Precheck, &str>)> = vec![
            (b"BDAT 5 LAST\r\n", ok(5, true)),
            (b"bdat 0\r\n", ok(0, false)),
            (b"BDAT 007 last\n", ok(7, true)),
            (b"BDAT 18446744073709551615\r\n", ok(usize::MAX, false)),
            (b"BDAT 18446744073709551616\r\n", Err("501 5.5.4")),
            (b"BDAT 184467440737095516150005 LAST\r\n", Err("501 5.5.4")),
            (b"BDAT\r\n", Err("501 5.5.4")),
            (b"BDAT LAST\r\n", Err("501 5.5.4")),
            (b"BDAT 5x LAST\r\n", Err("501 5.5.4")),
            (b"BDAT 5 LAST x\r\n", Err("501 5.5.4")),
            (b"BDAT -5\r\n", Err("501 5.5.4")),
            (b"MAIL FROM:<a@b.example> SIZE=100\r\n", Ok(Precheck::Parse)),
            (
                b"MAIL FROM:<a@b.example> SIZE=184467440737095516150005\r\n",
                Err("501 5.5.4"),
            ),
            (b"MAIL FROM:<j\xf6rg@b.example>\r\n", Err("501 5.1.7")),
            (b"RCPT TO:<j\xf6rg@b.example>\r\n", Err("501 5.1.3")),
            (b"MAIL FROM:<a@b.example> ENVID=\xff\r\n", Err("501 5.5.4")),
            (
                b"MAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8\r\n",
                Ok(Precheck::Parse),
            ),
            (b"NOOP \xff\r\n", Ok(Precheck::Parse)),
        ];
        for (line, want) in cases {
            let got = precheck(line);
            let name = String::from_utf8_lossy(line);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{name}"),
                (Err(e), Err(prefix)) => {
                    let text = format!("{}", e.reply);
                    assert!(text.starts_with(prefix), "{name}: {text}");
                    // BDAT errors close the session: the chunk cannot be skipped.
                    assert_eq!(e.close, name.starts_with("BDAT"), "{name}");
                }
                (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
            }
        }
    }
}
