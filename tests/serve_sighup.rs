//! SIGHUP (`systemctl reload`, the unit's ExecReload) must not kill `sigstamp serve`.

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
