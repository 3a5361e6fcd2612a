//! An SMTP sink: accepts every message and hands it, with its envelope and the exact MAIL and
//! RCPT parameters, to a channel. The next hop of `sigstamp demo`, of the tests and of the
//! bench. An optional policy answers MAIL, RCPT or end-of-data with a chosen reply instead,
//! to play a next hop that refuses.

use super::inbound::DotReader;
use super::io::MaybeTls;
use super::replies::Reply;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// One accepted message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// The reverse-path, without brackets (`""` for `<>`).
    pub mail_from: String,
    /// Everything after `>` on the MAIL line, trimmed (e.g. `SIZE=10 RET=HDRS`).
    pub mail_params: String,
    /// Each accepted recipient and its parameters.
    pub rcpts: Vec<(String, String)>,
    /// The message as received, dot-unstuffed, with its final CRLF.
    pub message: Vec<u8>,
    /// Whether the session was encrypted.
    pub tls: bool,
}

/// Where the policy is asked.
pub enum Stage<'a> {
    Mail(&'a str),
    Rcpt(&'a str),
    Data(&'a Delivered),
}

/// `Some(reply)` overrides the sink's acceptance at that stage.
pub type Policy = Arc<dyn Fn(Stage<'_>) -> Option<Reply> + Send + Sync>;

#[derive(Clone, Default)]
pub struct SinkOptions {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub policy: Option<Policy>,
}

/// A running sink; it stops when dropped.
pub struct Sink {
    addr: SocketAddr,
    _stop: DropGuard,
}

impl Sink {
    /// Listen on `listen` (e.g. `127.0.0.1:0`); messages arrive on the returned channel.
    pub async fn start(
        listen: &str,
        opts: SinkOptions,
    ) -> std::io::Result<(Sink, mpsc::UnboundedReceiver<Delivered>)> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => break,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let (opts, tx, token) = (opts.clone(), tx.clone(), token.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = session(MaybeTls::Plain(stream), opts, tx) => {}
                    }
                });
            }
        });
        Ok((
            Sink {
                addr,
                _stop: stop.drop_guard(),
            },
            rx,
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// `<addr> params` → (addr, params).
pub(crate) fn path_and_params(arg: &str) -> Option<(String, String)> {
    let start = arg.find('<')?;
    let end = start + arg[start..].find('>')?;
    Some((
        arg[start + 1..end].to_string(),
        arg[end + 1..].trim().to_string(),
    ))
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: MaybeTls<S>,
    opts: SinkOptions,
    out: mpsc::UnboundedSender<Delivered>,
) -> std::io::Result<()> {
    let ask = |stage: Stage<'_>| opts.policy.as_ref().and_then(|p| p(stage));
    io.write_all(b"220 sink ESMTP\r\n").await?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut cur = Delivered::default();
    let mut data: Option<DotReader> = None;
    let mut replies: Vec<u8> = Vec::new();
    loop {
        if let Some(rx) = data.as_mut() {
            let mut it = buf.iter();
            let done = rx.ingest(&mut it, Some(&mut cur.message));
            let used = buf.len() - it.as_slice().len();
            buf.drain(..used);
            if done {
                data = None;
                cur.tls = io.is_tls();
                let delivered = std::mem::take(&mut cur);
                match ask(Stage::Data(&delivered)) {
                    Some(r) => r.write_to(&mut replies),
                    None => {
                        replies.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
                        let _ = out.send(delivered);
                    }
                }
            }
        }
        while data.is_none() {
            let Some(p) = memchr::memchr(b'\n', &buf) else {
                break;
            };
            let line = String::from_utf8_lossy(&buf[..p]).trim_end().to_string();
            buf.drain(..=p);
            let verb = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let reply: Reply = match verb.as_str() {
                "EHLO" => {
                    let mut lines = vec![
                        "sink".to_string(),
                        "PIPELINING".into(),
                        "8BITMIME".into(),
                        "SMTPUTF8".into(),
                        "DSN".into(),
                        "ENHANCEDSTATUSCODES".into(),
                        "SIZE 1000000000".into(),
                    ];
                    if opts.tls.is_some() && !io.is_tls() {
                        lines.push("STARTTLS".into());
                    }
                    Reply { code: 250, lines }
                }
                "HELO" => Reply::new(250, "sink"),
                "MAIL" => match path_and_params(&line) {
                    None => Reply::new(501, "5.5.4 Syntax"),
                    Some((from, params)) => ask(Stage::Mail(&line)).unwrap_or_else(|| {
                        cur = Delivered {
                            mail_from: from,
                            mail_params: params,
                            ..Delivered::default()
                        };
                        Reply::new(250, "2.1.0 Ok")
                    }),
                },
                "RCPT" => match path_and_params(&line) {
                    None => Reply::new(501, "5.5.4 Syntax"),
                    Some(rcpt) => ask(Stage::Rcpt(&line)).unwrap_or_else(|| {
                        cur.rcpts.push(rcpt);
                        Reply::new(250, "2.1.5 Ok")
                    }),
                },
                "DATA" if cur.rcpts.is_empty() => Reply::new(554, "5.5.1 No valid recipients"),
                "DATA" => {
                    data = Some(DotReader::default());
                    Reply::new(354, "End data with <CR><LF>.<CR><LF>")
                }
                "RSET" => {
                    cur = Delivered::default();
                    Reply::new(250, "2.0.0 Ok")
                }
                "NOOP" => Reply::new(250, "2.0.0 Ok"),
                "QUIT" => {
                    Reply::new(221, "2.0.0 Bye").write_to(&mut replies);
                    io.write_all(&replies).await?;
                    return io.shutdown().await;
                }
                "STARTTLS" if opts.tls.is_some() && !io.is_tls() => {
                    replies.extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
                    io.write_all(&replies).await?;
                    replies.clear();
                    buf.clear();
                    if let Some(cfg) = opts.tls.clone() {
                        io.upgrade(cfg).await?;
                    }
                    continue;
                }
                _ => Reply::new(502, "5.5.2 Command not recognized"),
            };
            reply.write_to(&mut replies);
        }
        if !replies.is_empty() {
            io.write_all(&replies).await?;
            io.flush().await?;
            replies.clear();
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::path_and_params;

    #[test]
    fn path_and_params_split() {
        assert_eq!(
            path_and_params("MAIL FROM:<a@b> SIZE=5 RET=HDRS"),
            Some(("a@b".into(), "SIZE=5 RET=HDRS".into()))
        );
        assert_eq!(
            path_and_params("MAIL FROM:<>"),
            Some((String::new(), String::new()))
        );
    }
}
