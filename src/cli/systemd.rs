//! systemd's readiness protocol for the unit's `Type=notify` (sd_notify(3)): `READY=1` once
//! the listeners accept, `STOPPING=1` when draining starts. `systemctl start` then returns
//! only when sigstamp listens, and a `systemctl reload` (SIGHUP) waits until then. Without
//! `$NOTIFY_SOCKET` (not under systemd) nothing is sent.

use crate::status::Status;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Send `state` to `$NOTIFY_SOCKET`, if set; a failure is logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(error = %e, socket = ?path, state, "cannot notify systemd");
    }
}

#[cfg(target_os = "linux")]
fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    // `@name` is a socket in the abstract namespace, anything else a path.
    let addr = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn send(_: &std::ffi::OsStr, _: &str) -> std::io::Result<()> {
    Ok(())
}

/// `READY=1` once every configured listener accepts (`smtp`, `milter`), then `STOPPING=1`
/// at shutdown. Readiness does not wait for the directory: with Graph down and no snapshot
/// the relay still runs (and passes mail on unchanged), so systemd must not time it out.
pub async fn ready_then_stopping(
    status: Arc<Status>,
    smtp: bool,
    milter: bool,
    shutdown: CancellationToken,
) {
    loop {
        let up = (!smtp || status.smtp_listening.load(Ordering::Relaxed))
            && (!milter || status.milter_listening.load(Ordering::Relaxed));
        if up {
            notify("READY=1");
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    shutdown.cancelled().await;
    notify("STOPPING=1");
}
