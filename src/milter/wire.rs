//! Milter packets on the wire: a 4-byte big-endian length, a command byte, the payload.
//!
//! Structured commands (option negotiation, macros, MAIL, RCPT) are decoded with
//! miltr-common; headers are split here so their bytes stay exact (miltr-common only
//! exposes them through a lossy UTF-8 conversion). Replies are encoded with miltr-common.

use super::message::Header;
use crate::smtp::io::RateDeadline;
use bytes::BytesMut;
use miltr_common::decoding::ClientCommand;
use miltr_common::encoding::{ServerMessage, Writable};
use miltr_common::optneg::OptNeg;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest packet we accept. Postfix sends body chunks of at most 65535 bytes, but a
/// single header may be up to `header_size_limit` (100 KiB by default).
pub const MAX_PACKET: usize = 1 << 20;

/// Body replacement chunks, like libmilter's MILTER_CHUNK_SIZE.
pub const BODY_CHUNK: usize = 65535;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed in the middle of a packet")]
    Truncated,
    #[error("timed out after {0:?} waiting for the MTA")]
    Timeout(Duration),
    #[error("MTA too slow: {0}")]
    TooSlow(&'static str),
    #[error("empty packet (length 0)")]
    Empty,
    #[error("packet of {0} bytes exceeds the limit of {MAX_PACKET}")]
    TooLarge(usize),
    #[error("unknown command {0:?}")]
    UnknownCommand(char),
    #[error("malformed {command} packet: {detail}")]
    Malformed {
        command: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A command from the MTA.
#[derive(Debug)]
pub enum Command {
    OptNeg(OptNeg),
    /// Macros for the command with this code.
    Macro {
        stage: u8,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Connect,
    Helo,
    /// MAIL FROM: the address as sent (with angle brackets).
    Mail(String),
    Rcpt(String),
    Data,
    Header(Header),
    EndOfHeaders,
    Body(Vec<u8>),
    /// End of message; the protocol allows a last body chunk to ride along.
    EndOfBody(Vec<u8>),
    Unknown,
    Abort,
    Quit,
    QuitNc,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::OptNeg(_) => "OPTNEG",
            Command::Macro { .. } => "MACRO",
            Command::Connect => "CONNECT",
            Command::Helo => "HELO",
            Command::Mail(_) => "MAIL",
            Command::Rcpt(_) => "RCPT",
            Command::Data => "DATA",
            Command::Header(_) => "HEADER",
            Command::EndOfHeaders => "EOH",
            Command::Body(_) => "BODY",
            Command::EndOfBody(_) => "BODYEOB",
            Command::Unknown => "UNKNOWN",
            Command::Abort => "ABORT",
            Command::Quit => "QUIT",
            Command::QuitNc => "QUIT_NC",
        }
    }
}

/// Bounds on reading one packet.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// The wait for the packet to start.
    pub wait: Duration,
    /// Every read after that.
    pub timeout: Duration,
    /// The whole packet, from its first byte (`command_deadline`).
    pub deadline: Duration,
}

/// Payload bytes read (and allocated) at a time: memory follows the bytes that arrived,
/// not the length an MTA announced.
const READ_CHUNK: usize = 64 * 1024;

/// Read one packet. `Ok(None)` is a clean end of stream between packets. `rate`, inside a
/// message, is the rate deadline every read spends from and earns into.
pub async fn read_command<R: AsyncRead + Unpin>(
    r: &mut R,
    limits: ReadLimits,
    mut rate: Option<&mut RateDeadline>,
) -> Result<Option<Command>, WireError> {
    let mut len = [0u8; 4];
    let first = read_once(r, &mut len, limits.wait, None, rate.as_deref_mut()).await?;
    if first == 0 {
        return Ok(None);
    }
    let until = Instant::now() + limits.deadline;
    let mut got = first;
    while got < 4 {
        got += read_more(
            r,
            &mut len[got..],
            limits.timeout,
            until,
            rate.as_deref_mut(),
        )
        .await?;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Err(WireError::Empty);
    }
    if len > MAX_PACKET {
        return Err(WireError::TooLarge(len));
    }
    let mut chunk = vec![0u8; len.min(READ_CHUNK)];
    let mut buf = Vec::new();
    while buf.len() < len {
        let want = (len - buf.len()).min(chunk.len());
        let n = read_more(
            r,
            &mut chunk[..want],
            limits.timeout,
            until,
            rate.as_deref_mut(),
        )
        .await?;
        if n == len {
            // The whole packet in one read (the usual case): no copy.
            chunk.truncate(n);
            buf = chunk;
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    decode(buf).map(Some)
}

/// One read inside a packet: end of stream is truncation.
async fn read_more<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    timeout: Duration,
    until: Instant,
    rate: Option<&mut RateDeadline>,
) -> Result<usize, WireError> {
    match read_once(r, buf, timeout, Some(until), rate).await? {
        0 => Err(WireError::Truncated),
        n => Ok(n),
    }
}

/// One read, bounded by `timeout`, the packet's deadline and the rate deadline.
async fn read_once<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    timeout: Duration,
    until: Option<Instant>,
    rate: Option<&mut RateDeadline>,
) -> Result<usize, WireError> {
    let mut wait = timeout;
    let mut slow = None;
    if let Some(left) = until.map(|u| u.saturating_duration_since(Instant::now())) {
        if left < wait {
            (wait, slow) = (left, Some("packet not complete within command_deadline"));
        }
    }
    if let Some(left) = rate.as_ref().map(|d| d.left()) {
        if left < wait {
            (wait, slow) = (left, Some("message content below min_data_rate"));
        }
    }
    let late = || match slow {
        Some(why) => WireError::TooSlow(why),
        None => WireError::Timeout(wait),
    };
    if wait.is_zero() {
        return Err(late());
    }
    let started = Instant::now();
    let n = tokio::time::timeout(wait, r.read(buf))
        .await
        .map_err(|_| late())??;
    if let Some(d) = rate {
        d.spend(started.elapsed(), n);
    }
    Ok(n)
}

/// Decode one packet (command byte + payload).
pub fn decode(mut packet: Vec<u8>) -> Result<Command, WireError> {
    let Some(&code) = packet.first() else {
        return Err(WireError::Empty);
    };
    let payload = &packet[1..];
    let empty = |cmd: Command| -> Result<Command, WireError> {
        // Commands without arguments must come without; anything else is a framing error.
        if payload.is_empty() || matches!(cmd, Command::Connect | Command::Helo | Command::Data) {
            Ok(cmd)
        } else {
            Err(WireError::Malformed {
                command: cmd.name(),
                detail: format!("{} unexpected bytes", payload.len()),
            })
        }
    };
    match code {
        b'L' => split_header(payload).map(Command::Header),
        b'B' => {
            packet.remove(0);
            Ok(Command::Body(packet))
        }
        b'O' | b'D' | b'M' | b'R' => decode_structured(BytesMut::from(&packet[..])),
        // We ask for no CONNECT, HELO, DATA or UNKNOWN events; if an MTA sends them anyway
        // their content is not needed.
        b'C' => empty(Command::Connect),
        b'H' => empty(Command::Helo),
        b'T' => empty(Command::Data),
        b'U' => Ok(Command::Unknown),
        b'N' => empty(Command::EndOfHeaders),
        b'E' => {
            packet.remove(0);
            Ok(Command::EndOfBody(packet))
        }
        b'A' => empty(Command::Abort),
        b'Q' => empty(Command::Quit),
        b'K' => empty(Command::QuitNc),
        other => Err(WireError::UnknownCommand(other as char)),
    }
}

fn decode_structured(packet: BytesMut) -> Result<Command, WireError> {
    let name = match packet[0] {
        b'O' => "OPTNEG",
        b'D' => "MACRO",
        b'M' => "MAIL",
        _ => "RCPT",
    };
    let parsed = ClientCommand::parse(packet).map_err(|e| WireError::Malformed {
        command: name,
        detail: e.to_string(),
    })?;
    Ok(match parsed {
        ClientCommand::OptNeg(o) => Command::OptNeg(o),
        ClientCommand::Macro(m) => Command::Macro {
            stage: m.code,
            pairs: m.macros().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
        },
        ClientCommand::Mail(m) => Command::Mail(m.sender().into_owned()),
        ClientCommand::Recipient(r) => Command::Rcpt(r.recipient().into_owned()),
        other => unreachable!("decode_structured called for {other:?}"),
    })
}

/// `name\0value\0`, kept byte for byte.
fn split_header(payload: &[u8]) -> Result<Header, WireError> {
    let bad = |detail: &str| WireError::Malformed {
        command: "HEADER",
        detail: detail.into(),
    };
    let n = memchr::memchr(0, payload).ok_or_else(|| bad("name not NUL-terminated"))?;
    let rest = &payload[n + 1..];
    let v = memchr::memchr(0, rest).ok_or_else(|| bad("value not NUL-terminated"))?;
    if v + 1 != rest.len() {
        return Err(bad("bytes after the value"));
    }
    if n == 0 {
        return Err(bad("empty header name"));
    }
    Ok(Header {
        name: payload[..n].to_vec(),
        value: rest[..v].to_vec(),
    })
}

/// Encode replies into one buffer (one write, one flush).
pub fn encode(messages: &[ServerMessage]) -> BytesMut {
    let mut buf = BytesMut::new();
    for m in messages {
        let len = 1 + m.len();
        buf.extend_from_slice(&(len as u32).to_be_bytes());
        buf.extend_from_slice(&[m.code()]);
        m.write(&mut buf);
    }
    buf
}

/// Append SMFIR_REPLBODY packets carrying `body`, in chunks of [`BODY_CHUNK`], to `buf`.
/// Written here rather than through miltr-common's `ReplaceBody`, which copies the body
/// into its buffer one byte at a time.
pub fn encode_body(body: &[u8], buf: &mut BytesMut) {
    buf.reserve(body.len() + 5 * body.len().div_ceil(BODY_CHUNK));
    for chunk in body.chunks(BODY_CHUNK) {
        buf.extend_from_slice(&(1 + chunk.len() as u32).to_be_bytes());
        buf.extend_from_slice(b"b");
        buf.extend_from_slice(chunk);
    }
}

/// Write replies (buffered), bounded by `timeout`.
pub async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    messages: &[ServerMessage],
    timeout: Duration,
) -> Result<(), WireError> {
    write_bytes(w, &encode(messages), timeout).await
}

/// Write encoded packets (buffered), bounded by `timeout`.
pub async fn write_bytes<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), WireError> {
    tokio::time::timeout(timeout, w.write_all(bytes))
        .await
        .map_err(|_| WireError::Timeout(timeout))??;
    Ok(())
}

/// Write replies and flush them to the MTA.
pub async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    messages: &[ServerMessage],
    timeout: Duration,
) -> Result<(), WireError> {
    write(w, messages, timeout).await?;
    flush(w, timeout).await
}

/// Flush what was written to the MTA, bounded by `timeout`.
pub async fn flush<W: AsyncWrite + Unpin>(w: &mut W, timeout: Duration) -> Result<(), WireError> {
    tokio::time::timeout(timeout, w.flush())
        .await
        .map_err(|_| WireError::Timeout(timeout))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ReadLimits = ReadLimits {
        wait: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        deadline: Duration::from_secs(1),
    };

    /// Body replacement packets: the same bytes as miltr-common's, chunked at BODY_CHUNK.
    #[test]
    fn body_packets_match_miltr_common() {
        use miltr_common::modifications::body::ReplaceBody;
        for len in [
            0,
            1,
            BODY_CHUNK - 1,
            BODY_CHUNK,
            BODY_CHUNK + 1,
            3 * BODY_CHUNK + 7,
        ] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut ours = BytesMut::new();
            encode_body(&body, &mut ours);
            let theirs: Vec<ServerMessage> = body
                .chunks(BODY_CHUNK)
                .map(|c| ServerMessage::ModificationAction(ReplaceBody::new(c).into()))
                .collect();
            assert_eq!(ours, encode(&theirs), "body of {len} bytes");
        }
    }

    #[test]
    fn header_bytes_stay_exact() {
        let mut p = b"L".to_vec();
        p.extend_from_slice(b"Subject\0 caf\xe9\n\tnext\0");
        match decode(p).unwrap() {
            Command::Header(h) => {
                assert_eq!(h.name, b"Subject");
                assert_eq!(h.value, b" caf\xe9\n\tnext");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(matches!(
            decode(b"Lname-only".to_vec()),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            decode(b"Z".to_vec()),
            Err(WireError::UnknownCommand('Z'))
        ));
        assert!(matches!(
            decode(b"O\0\0".to_vec()),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            decode(b"Mno-nul".to_vec()),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            decode(b"Njunk".to_vec()),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            decode(b"Elast chunk".to_vec()),
            Ok(Command::EndOfBody(c)) if c == b"last chunk"
        ));
    }

    #[tokio::test]
    async fn reads_frames_and_detects_truncation() {
        let mut data: &[u8] = b"\0\0\0\x01E\0\0\0\x05B";
        assert!(matches!(
            read_command(&mut data, LIMITS, None).await,
            Ok(Some(Command::EndOfBody(c))) if c.is_empty()
        ));
        assert!(matches!(
            read_command(&mut data, LIMITS, None).await,
            Err(WireError::Truncated)
        ));
        let mut empty: &[u8] = b"";
        assert!(matches!(
            read_command(&mut empty, LIMITS, None).await,
            Ok(None)
        ));
        let mut huge: &[u8] = b"\xff\xff\xff\xff";
        assert!(matches!(
            read_command(&mut huge, LIMITS, None).await,
            Err(WireError::TooLarge(_))
        ));
    }

    /// A packet trickled a byte at a time is cut off by `command_deadline`; small packets
    /// trickled inside a message by `min_data_rate`; neither by the idle timeout alone.
    #[tokio::test]
    async fn slow_mtas_are_cut_off() {
        let (mut mta, mut us) = tokio::io::duplex(1024);
        let trickle = tokio::spawn(async move {
            let mut packet = 10u32.to_be_bytes().to_vec();
            packet.extend_from_slice(b"B012345678");
            for b in packet.iter().cycle() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if mta.write_all(&[*b]).await.is_err() {
                    break;
                }
            }
        });
        let limits = ReadLimits {
            wait: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            deadline: Duration::from_millis(500),
        };
        let started = std::time::Instant::now();
        let got = read_command(&mut us, limits, None).await;
        assert!(matches!(got, Err(WireError::TooSlow(_))), "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
        trickle.abort();

        let (mut mta, mut us) = tokio::io::duplex(1024);
        let trickle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if mta.write_all(b"\0\0\0\x02Bx").await.is_err() {
                    break;
                }
            }
        });
        let limits = ReadLimits {
            deadline: Duration::from_secs(5),
            ..limits
        };
        let mut rate = RateDeadline::new(Duration::from_millis(500), 1024);
        let started = std::time::Instant::now();
        let err = loop {
            match read_command(&mut us, limits, Some(&mut rate)).await {
                Ok(Some(Command::Body(_))) => assert!(started.elapsed() < Duration::from_secs(4)),
                other => break other,
            }
        };
        assert!(matches!(err, Err(WireError::TooSlow(_))), "{err:?}");
        trickle.abort();
    }
}
