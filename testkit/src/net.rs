//! Loopback ports.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago (for configurations that need a number up
/// front, such as Postfix's master.cf, and for "nothing listens here").
pub fn free_port() -> u16 {
    free_addr().port()
}

/// 127.0.0.1 and a [`free_port`].
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// Poll until `addr` accepts a connection, at most `within`.
pub async fn wait_listening(addr: SocketAddr, within: Duration) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// [`wait_listening`] for code outside a runtime.
pub fn wait_listening_blocking(addr: SocketAddr, within: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect(addr) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
