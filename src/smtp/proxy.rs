//! PROXY protocol v1 and v2 (HAProxy's, parsed by the `ppp` crate) on the SMTP listener: a
//! load balancer in front of sigstamp tells us who the client really is.
//!
//! The header is read before the greeting, byte-exact (nothing after it is consumed), within
//! [`HEADER_TIMEOUT`], and only from `proxy_trusted` peers: a header from anyone else would let
//! them choose the address `allowed_clients` checks.

use ppp::v2::{Addresses as V2Addresses, Command};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Postfix's `smtpd_upstream_proxy_timeout` default.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The v2 signature (12 bytes); the 13th byte is version and command, then family, length.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before the PROXY header ended")]
    Closed,
    #[error("not a PROXY header")]
    NotProxy,
    #[error("bad PROXY header: {0}")]
    Bad(String),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Read one PROXY header (v1 or v2) and return the client's address: the source address it
/// carries, or `peer` itself for v2 `LOCAL` (the balancer's own health checks) and v1
/// `UNKNOWN`. Only the header's bytes are read.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, ProxyError> {
    match tokio::time::timeout(timeout, read(stream, peer)).await {
        Err(_) => Err(ProxyError::Timeout(timeout)),
        Ok(r) => r,
    }
}

async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyError> {
    let mut head = [0u8; 16];
    read_exact(stream, &mut head[..5]).await?;
    if &head[..5] == b"PROXY" {
        return read_v1(stream, peer, &head[..5]).await;
    }
    if head[..5] != V2_SIGNATURE[..5] {
        return Err(ProxyError::NotProxy);
    }
    read_exact(stream, &mut head[5..]).await?;
    if head[..12] != V2_SIGNATURE[..] {
        return Err(ProxyError::NotProxy);
    }
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut header = Vec::with_capacity(16 + len);
    header.extend_from_slice(&head);
    header.resize(16 + len, 0);
    read_exact(stream, &mut header[16..]).await?;
    let parsed =
        ppp::v2::Header::try_from(header.as_slice()).map_err(|e| ProxyError::Bad(e.to_string()))?;
    Ok(match (parsed.command, parsed.addresses) {
        (Command::Local, _) => peer,
        (Command::Proxy, V2Addresses::IPv4(a)) => {
            SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)
        }
        (Command::Proxy, V2Addresses::IPv6(a)) => {
            SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)
        }
        (Command::Proxy, other) => {
            return Err(ProxyError::Bad(format!(
                "address family {:?} is not TCP",
                other.address_family()
            )))
        }
    })
}

async fn read_v1<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    start: &[u8],
) -> Result<SocketAddr, ProxyError> {
    // Byte by byte up to LF: what follows the header belongs to the SMTP session.
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyError::Bad("v1 header longer than 107 bytes".into()));
        }
        let mut b = [0u8; 1];
        read_exact(stream, &mut b).await?;
        line.push(b[0]);
    }
    let parsed =
        ppp::v1::Header::try_from(line.as_slice()).map_err(|e| ProxyError::Bad(e.to_string()))?;
    Ok(match parsed.addresses {
        ppp::v1::Addresses::Unknown => peer,
        ppp::v1::Addresses::Tcp4(a) => SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
        ppp::v1::Addresses::Tcp6(a) => SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
    })
}

async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<(), ProxyError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProxyError::Closed),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const PEER: &str = "10.0.0.9:40000";

    async fn parse(input: &[u8]) -> (Result<SocketAddr, ProxyError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(input).await.unwrap();
        drop(client);
        let r = read_header(&mut server, PEER.parse().unwrap(), Duration::from_secs(1)).await;
        let mut rest = Vec::new();
        let _ = server.read_to_end(&mut rest).await;
        (r, rest)
    }

    fn v2(src: &str, dst: &str, command: u8) -> Vec<u8> {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        ppp::v2::Builder::with_addresses(0x20 | command, ppp::v2::Protocol::Stream, (src, dst))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn headers_give_the_client_and_leave_the_session_bytes() {
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (
                b"PROXY TCP4 127.0.0.2 127.0.0.1 51000 25\r\nEHLO x\r\n".to_vec(),
                Some("127.0.0.2:51000"),
            ),
            (
                b"PROXY TCP6 2001:db8::7 ::1 51000 25\r\nEHLO x\r\n".to_vec(),
                Some("[2001:db8::7]:51000"),
            ),
            (b"PROXY UNKNOWN\r\nEHLO x\r\n".to_vec(), Some(PEER)),
            (
                [
                    v2("192.0.2.5:4444", "10.0.0.1:25", 1),
                    b"EHLO x\r\n".to_vec(),
                ]
                .concat(),
                Some("192.0.2.5:4444"),
            ),
            (
                [v2("[2001:db8::1]:5", "[::1]:25", 1), b"EHLO x\r\n".to_vec()].concat(),
                Some("[2001:db8::1]:5"),
            ),
            // LOCAL: the balancer's own health check speaks for itself.
            (
                [
                    v2("192.0.2.5:4444", "10.0.0.1:25", 0),
                    b"EHLO x\r\n".to_vec(),
                ]
                .concat(),
                Some(PEER),
            ),
            (b"EHLO x\r\n".to_vec(), None),
            (
                b"PROXY TCP4 999.0.0.1 127.0.0.1 1 25\r\nEHLO x\r\n".to_vec(),
                None,
            ),
            (b"PROXY TCP4 127.0.0.2 127.0.0.1 1 25".to_vec(), None),
            ([b"PROXY ".to_vec(), vec![b'1'; 200]].concat(), None),
            (V2_SIGNATURE[..8].to_vec(), None),
        ];
        for (input, expected) in cases {
            let (result, rest) = parse(&input).await;
            match expected {
                Some(addr) => {
                    assert_eq!(result.unwrap(), addr.parse().unwrap(), "{input:?}");
                    assert_eq!(rest, b"EHLO x\r\n", "{input:?}");
                }
                None => assert!(result.is_err(), "{input:?}: {result:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (_client, mut server) = tokio::io::duplex(64);
        let r = read_header(
            &mut server,
            PEER.parse().unwrap(),
            Duration::from_millis(50),
        )
        .await;
        assert!(matches!(r, Err(ProxyError::Timeout(_))), "{r:?}");
    }
}
