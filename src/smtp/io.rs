//! A stream that starts in plain text and may be upgraded in place by STARTTLS, and the
//! rate deadline that bounds slow senders (the relay's DATA/BDAT and the milter's content).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

pub enum MaybeTls<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// Only during the handshake, or after a failed one.
    Gone,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MaybeTls<S> {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Run the server handshake on the plain stream.
    pub async fn upgrade(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        let MaybeTls::Plain(s) = std::mem::replace(self, MaybeTls::Gone) else {
            return Err(io::Error::other("stream is not plain text"));
        };
        let tls = tokio_rustls::TlsAcceptor::from(config).accept(s).await?;
        *self = MaybeTls::Tls(Box::new(tls));
        Ok(())
    }

    /// The client's end-entity certificate (verified by the configured verifier), if any.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            MaybeTls::Tls(t) => t
                .get_ref()
                .1
                .peer_certificates()?
                .first()
                .map(|c| c.as_ref()),
            _ => None,
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTls::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// A deadline that a transfer extends by keeping a minimum rate, as Postfix does with
/// `smtpd_min_data_rate`: it starts at `cap`; each read spends the time it took and earns
/// `bytes / min_rate` seconds, never beyond `cap`. A sender trickling bytes runs out of time
/// however short each pause is. `min_rate` 0 turns the rate off (only the idle bound stays).
#[derive(Debug, Clone)]
pub struct RateDeadline {
    left: Duration,
    cap: Duration,
    min_rate: u64,
}

impl RateDeadline {
    pub fn new(cap: Duration, min_rate: u64) -> Self {
        RateDeadline {
            left: cap,
            cap,
            min_rate,
        }
    }

    /// Time left; zero when the sender has fallen below the rate.
    pub fn left(&self) -> Duration {
        self.left
    }

    /// Account for one read that took `elapsed` and brought `bytes`.
    pub fn spend(&mut self, elapsed: Duration, bytes: usize) {
        if self.min_rate == 0 {
            self.left = self.cap;
            return;
        }
        let earned = Duration::from_secs_f64(bytes as f64 / self.min_rate as f64);
        self.left = (self.left.saturating_sub(elapsed) + earned).min(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::RateDeadline;
    use std::time::Duration;

    #[test]
    fn rate_deadline_runs_out_below_the_rate_and_is_capped_above_it() {
        let s = Duration::from_secs;
        let mut d = RateDeadline::new(s(10), 1024);
        // One byte a second: each second costs a second and earns 1/1024 s.
        for _ in 0..9 {
            d.spend(s(1), 1);
        }
        assert!(d.left() < s(2) && d.left() > s(1), "{:?}", d.left());
        d.spend(s(1), 1);
        d.spend(s(1), 1);
        assert!(d.left() < Duration::from_millis(10), "{:?}", d.left());
        // Fast: never more than the cap.
        let mut d = RateDeadline::new(s(10), 1024);
        d.spend(Duration::ZERO, 1 << 30);
        assert_eq!(d.left(), s(10));
        // 2 KiB/s keeps it full.
        d.spend(s(1), 2048);
        assert_eq!(d.left(), s(10));
        let mut off = RateDeadline::new(s(10), 0);
        off.spend(s(9), 0);
        assert_eq!(off.left(), s(10));
    }
}
