//! `sigstamp serve` under systemd: SIGHUP (`systemctl reload`, the unit's ExecReload) never ends it,
//! and it tells systemd when it is ready (`Type=notify`) and when it stops.

mod serve_support;
mod smtp_support;

use serve_support::serve;
use sigstamp::smtp::sink::{Sink, SinkOptions};
use smtp_support::RawClient;
use std::net::SocketAddr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_relay_running() {
    let (sink, _delivered) = Sink::start("127.0.0.1:0", SinkOptions::default())
        .await
        .unwrap();
    let config = format!(
        "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        sink.addr()
    );
    let dir = tempfile::tempdir().unwrap();
    let (mut guard, addr, log) =
        tokio::task::spawn_blocking(move || serve(&config, dir, "SMTP relay listening", "listen"))
            .await
            .unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let pid = guard.0.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let line = tokio::task::spawn_blocking(move || log.iter().find(|l| l.contains("SIGHUP")))
        .await
        .unwrap();
    assert!(line.is_some(), "no SIGHUP log line");
    assert!(
        guard.0.try_wait().unwrap().is_none(),
        "SIGHUP killed sigstamp serve"
    );
    let mut client = RawClient::connect(addr).await.unwrap();
    assert!(client.reply().await.starts_with("220 "));
}

/// SIGHUPs from sigstamp's first sign of life (its first log line) until it listens: none
/// may end it, so the handler must be in place before anything is logged. (Under systemd
/// the unit is `Type=notify`: `systemctl reload` waits for READY=1, sent once listening.)
#[test]
fn sighup_during_start_up_is_not_fatal() {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let mut guard = spawn_serve(dir.path(), "127.0.0.1:0", None);
    let pid = guard.0.id().to_string();
    let stderr = guard.0.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok);
    let first = lines.next().expect("sigstamp serve logs something");
    let listening = Arc::new(AtomicBool::new(first.contains("SMTP relay listening")));
    let storm = {
        let (pid, listening) = (pid.clone(), listening.clone());
        std::thread::spawn(move || {
            let mut sent = 0;
            while !listening.load(Ordering::SeqCst) && sent < 2000 {
                let _ = std::process::Command::new("kill")
                    .args(["-HUP", &pid])
                    .status();
                sent += 1;
            }
            sent
        })
    };
    let up = listening.load(Ordering::SeqCst) || lines.any(|l| l.contains("SMTP relay listening"));
    listening.store(true, Ordering::SeqCst);
    let sent = storm.join().unwrap();
    assert!(
        up,
        "sigstamp serve ended before listening ({sent} SIGHUPs sent after {first:?})"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        guard.0.try_wait().unwrap().is_none(),
        "SIGHUP during start-up ended sigstamp serve ({sent} SIGHUPs sent)"
    );
}

/// Under systemd (`Type=notify`): READY=1 on `$NOTIFY_SOCKET` once the relay listens,
/// STOPPING=1 when SIGTERM starts the drain.
#[test]
fn notifies_systemd_ready_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let port = sigstamp_testkit::free_port();
    let mut guard = spawn_serve(dir.path(), &format!("127.0.0.1:{port}"), Some(&socket_path));
    let mut stderr = guard.0.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    assert_eq!(notification(&socket, "READY=1 within 20 s"), "READY=1");
    // Ready means listening: the relay greets at once.
    let mut greeting = String::new();
    use std::io::BufRead;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port))
        .expect("READY=1 came before the relay listened");
    std::io::BufReader::new(tcp)
        .read_line(&mut greeting)
        .unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    let pid = guard.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(
        notification(&socket, "STOPPING=1 after SIGTERM"),
        "STOPPING=1"
    );
}

/// `sigstamp serve` on a relay at `listen` (next hop: nothing listens) in `dir`, its log
/// (debug) on a pipe, `$NOTIFY_SOCKET` set to `notify` if given.
fn spawn_serve(
    dir: &std::path::Path,
    listen: &str,
    notify: Option<&std::path::Path>,
) -> serve_support::Guard {
    let config = dir.join("sigstamp.toml");
    std::fs::write(
        &config,
        format!("[smtp]\nlisten = \"{listen}\"\nnext_hop = \"127.0.0.1:9\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sigstamp"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(socket) = notify {
        cmd.env("NOTIFY_SOCKET", socket);
    }
    serve_support::Guard(cmd.spawn().unwrap())
}

/// The next datagram on `socket`. A signal for another test's child (SIGCHLD) interrupts a
/// receive with a timeout even under SA_RESTART: retried.
fn notification(socket: &std::os::unix::net::UnixDatagram, what: &str) -> String {
    let mut buf = [0u8; 256];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("{what}: {e}"),
        }
    }
}
