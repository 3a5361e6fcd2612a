//! A session driven by arbitrary client bytes, split at arbitrary points, against the
//! in-memory next hop ([`MemoryHop`], no socket); and the properties every run must keep. Shared by the
//! property test (`tests/prop_smtp_session.rs`) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/smtp_session.rs`).

use super::{Session, Shared};
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::pipeline::Stamper;
use crate::render::Templates;
use crate::smtp::outbound::memory::{MemoryHop, MemoryHopOptions};
use crate::smtp::sink::Delivered;
use crate::smtp::SmtpConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// What the client heard and what the next hop received.
#[derive(Debug, Default)]
pub struct Outcome {
    pub transcript: Vec<u8>,
    pub delivered: Vec<Delivered>,
}

/// Largest message of these runs: small, so the size limits are reached too.
pub const MAX_MESSAGE: usize = 2000;

/// Run one session on a fresh runtime: write `chunks` one by one, then end the input.
pub fn run(chunks: &[Vec<u8>]) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run_async(chunks))
}

async fn run_async(chunks: &[Vec<u8>]) -> Outcome {
    let (next_hop, mut delivered) = MemoryHop::new(MemoryHopOptions::default());
    let mut cfg = SmtpConfig::new("127.0.0.1:0", "next-hop.test:25");
    cfg.max_message_size = MAX_MESSAGE;
    cfg.command_timeout = Duration::from_secs(5);
    cfg.data_timeout = Duration::from_secs(5);
    let shared = Arc::new(Shared {
        next_hop,
        tls: Default::default(),
        cfg,
        stamper: Arc::new(Stamper::new(
            Arc::new(Directory::new()),
            Templates::embedded(),
        )),
        metrics: Arc::new(Metrics::new()),
        shutdown: CancellationToken::new(),
        sent_items: crate::sent_items::SentItems::disabled(),
    });
    let (client, server) = tokio::io::duplex(1024);
    let (mut rd, mut wr) = tokio::io::split(client);
    let session = tokio::spawn(Session::new(server, shared, None).run());
    let chunks = chunks.to_vec();
    let writer = tokio::spawn(async move {
        for c in chunks {
            if wr.write_all(&c).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        let _ = wr.shutdown().await;
    });
    let mut transcript = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut transcript))
        .await
        .expect("the session ends once the input ends")
        .expect("read");
    writer.abort();
    session.await.expect("the session does not panic");
    let mut out = Outcome {
        transcript,
        delivered: Vec::new(),
    };
    while let Ok(d) = delivered.try_recv() {
        out.delivered.push(d);
    }
    out
}

/// `data` as a client sends it in DATA: a dot doubled at each line start (after CRLF).
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    let mut line_start = true;
    for (i, &b) in data.iter().enumerate() {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n' && i > 0 && data[i - 1] == b'\r';
    }
    out
}

/// The properties of one run (panics naming the one broken):
/// - every reply line is `ddd ` or `ddd-` and ends in CRLF;
/// - no message exceeds the size limit;
/// - every message the next hop received has CRLF line endings only;
/// - without BDAT in the input, no more messages reached the next hop than the client ended
///   with CRLF.CRLF, and when the client's bytes were clean CRLF, each is something the
///   client sent: its dot-stuffed form followed by `.` CRLF occurs in the input (the empty
///   message reaches the next hop as one empty line).
pub fn check(input: &[u8], outcome: &Outcome) {
    for line in outcome.transcript.split_inclusive(|b| *b == b'\n') {
        let ok = line.len() >= 6
            && line[..3].iter().all(u8::is_ascii_digit)
            && matches!(line[3], b' ' | b'-')
            && line.ends_with(b"\r\n");
        assert!(
            ok,
            "malformed reply line {:?}",
            String::from_utf8_lossy(line)
        );
    }
    let bdat = input.windows(4).any(|w| w.eq_ignore_ascii_case(b"BDAT"));
    for d in &outcome.delivered {
        assert!(d.message.len() <= MAX_MESSAGE + 2, "over the size limit");
        if bdat {
            continue;
        }
        assert!(
            is_crlf_only(&d.message),
            "bare CR or LF reached the next hop: {:?}",
            String::from_utf8_lossy(&d.message)
        );
        // A bare CR or LF in the client's data leaves as CRLF (outbound/wire.rs), so the bytes
        // can differ from the input; with clean CRLF input they must be found as sent.
        if is_crlf_only(input) {
            assert!(
                sent_as_data(input, &d.message),
                "relayed a message the client did not send and end with CRLF.CRLF: {:?}",
                String::from_utf8_lossy(&d.message)
            );
        }
    }
    let ends = memchr::memmem::find_iter(input, b"\r\n.\r\n").count();
    assert!(
        bdat || outcome.delivered.len() <= ends,
        "relayed {} messages but the client ended only {ends} with CRLF.CRLF",
        outcome.delivered.len()
    );
}

/// `message` occurs in `input` as DATA lines ended by `.` CRLF: each line as sent, or with
/// one leading dot more (mandatory when the line starts with a dot; a client may stuff any
/// line, RFC 5321 §4.5.2 removes the first dot of every line that has one).
fn sent_as_data(input: &[u8], message: &[u8]) -> bool {
    (0..input.len()).any(|mut p| {
        for line in message.split_inclusive(|b| *b == b'\n') {
            if input.get(p) == Some(&b'.') {
                p += 1;
            } else if line.starts_with(b".") {
                return false;
            }
            if !input[p..].starts_with(line) {
                return false;
            }
            p += line.len();
        }
        input[p..].starts_with(b".\r\n")
    })
}

/// Every CR is followed by LF and every LF preceded by CR.
fn is_crlf_only(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        assert_eq!(
            dot_stuff(b".a\r\nb\r\n.\r\nc\n.d"),
            b"..a\r\nb\r\n..\r\nc\n.d"
        );
    }

    #[test]
    fn a_plain_run_delivers_and_passes_the_check() {
        let input = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n..x\r\ny\r\n.\r\nQUIT\r\n";
        let chunks: Vec<Vec<u8>> = input.chunks(7).map(<[u8]>::to_vec).collect();
        let out = run(&chunks);
        assert_eq!(
            out.delivered.len(),
            1,
            "{}",
            String::from_utf8_lossy(&out.transcript)
        );
        assert_eq!(out.delivered[0].message, b".x\r\ny\r\n");
        check(input, &out);
    }

    /// Found by the property test: a lone CR in the data is a line break on the wire.
    #[test]
    fn a_lone_cr_in_data_goes_out_as_a_line_break() {
        let input =
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n\rab\r\n.\r\n";
        let out = run(&[input.to_vec()]);
        assert_eq!(out.delivered.len(), 1);
        assert_eq!(out.delivered[0].message, b"\r\nab\r\n");
        check(input, &out);
    }

    #[test]
    #[should_panic(expected = "did not send")]
    fn the_check_catches_a_message_left_stuffed() {
        let out = Outcome {
            delivered: vec![Delivered {
                message: b"..x\r\n".to_vec(),
                ..Delivered::default()
            }],
            ..Outcome::default()
        };
        check(b"DATA\r\n..x\r\n.\r\n", &out);
    }
}
