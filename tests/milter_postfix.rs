//! A real Postfix (own config directory, loopback) with `smtpd_milters` pointing at the
//! milter, receiving mail from swaks and relaying it to a sink.

mod milter_support;

use milter_support::{
    assert_pipeline_stamps, config, postfix_to_sink, reference, start, strip_received, swaks,
    text_message,
};
use sigstamp::pipeline::Verdict;
use sigstamp::stamp::TRACE_HEADER;
use sigstamp_testkit::{free_addr, require_tool, Postfix};
use std::time::Duration;

const DELIVERY: Duration = Duration::from_secs(20);

fn position_of(hay: &[u8], needle: &str) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap()
}

fn count(hay: &[u8], needle: &str) -> usize {
    hay.windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_with_the_milter() {
    if !require_tool("postfix") || !require_tool("swaks") {
        return;
    }
    let milter = start(config()).await;
    let (pf, sink) = postfix_to_sink(&milter).await;
    assert_pipeline_stamps(&milter.app);

    // Stamped exactly once, and exactly what the relay would have produced: the plain case,
    // and one where the core also changes the message's Content-Type (charset) and
    // transfer encoding, with a folded Subject that must keep its folding.
    let plain = text_message("ann@example.com", "pf-stamped", "Hello,\r\nregards\r\n");
    let mut folded = text_message("zoe@example.com", "pf-charset", "Bonjour,\r\n");
    let at = position_of(&folded, "Subject:");
    folded.splice(
        at..at,
        b"X-Long: one\r\n\ttwo\r\n  three\r\n".iter().copied(),
    );
    for (from, name, raw) in [
        ("ann@example.com", "Ann Example", plain),
        ("zoe@example.com", "Zo", folded),
    ] {
        swaks(&pf, from, &raw).await;
        let got = sink.wait_for(1, DELIVERY).await.remove(0);
        let header = format!("{TRACE_HEADER}:");
        assert_eq!(count(&got.data, &header), 1, "trace header exactly once");
        assert_eq!(count(&got.data, name), 1, "signature exactly once");
        let Verdict::Stamped { message, .. } = reference(&milter.app, &raw, from) else {
            panic!("reference not stamped")
        };
        assert_eq!(
            String::from_utf8_lossy(&strip_received(&got.data)),
            String::from_utf8_lossy(&message),
            "delivered = relay's stamped message + Postfix's Received header\n{}",
            pf.log()
        );
    }

    // Local submission (sendmail → pickup → cleanup) goes through non_smtpd_milters.
    let raw = text_message("ann@example.com", "pf-local", "Local hello\r\n");
    let (p, r) = (pf.clone(), raw.clone());
    tokio::task::spawn_blocking(move || p.sendmail("ann@example.com", "rcpt@example.net", &r))
        .await
        .unwrap();
    let got = sink.wait_for(1, DELIVERY).await.remove(0);
    let Verdict::Stamped { message, .. } = reference(&milter.app, &raw, "ann@example.com") else {
        panic!("reference not stamped")
    };
    assert_eq!(
        String::from_utf8_lossy(&strip_received(&got.data)),
        String::from_utf8_lossy(&message),
        "locally submitted mail is stamped too"
    );

    // Unchanged cases arrive byte-identical to what was submitted (plus Received).
    let signed = b"From: Ann <ann@example.com>\r\nTo: rcpt@example.net\r\nSubject: pf-signed\r\n\
        Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <pf-signed@example.com>\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n\
        \tmicalg=sha-256; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nHi\r\n\
        --b1\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--b1--\r\n"
        .to_vec();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "unknown sender",
            "stranger@elsewhere.test",
            text_message("stranger@elsewhere.test", "pf-unknown", "Hi\r\n"),
        ),
        ("signed", "ann@example.com", signed),
        (
            "null sender",
            "",
            text_message("ann@example.com", "pf-bounce", "Hi\r\n"),
        ),
    ];
    for (what, from, raw) in cases {
        swaks(&pf, from, &raw).await;
        let got = sink.wait_for(1, DELIVERY).await.remove(0);
        assert_eq!(got.mail_from, from, "{what}: envelope sender");
        assert_eq!(
            String::from_utf8_lossy(&strip_received(&got.data)),
            String::from_utf8_lossy(&raw),
            "{what}: delivered byte-identical"
        );
    }
    assert!(
        !pf.log().contains("milter inet:"),
        "no milter warnings while it is up:\n{}",
        pf.log()
    );

    // Milter down: milter_default_action = accept lets mail through unstamped.
    milter.stop().await;
    let raw = text_message("ann@example.com", "pf-down", "Hi\r\n");
    swaks(&pf, "ann@example.com", &raw).await;
    let got = sink.wait_for(1, DELIVERY).await.remove(0);
    assert_eq!(count(&got.data, TRACE_HEADER), 0);
    assert_eq!(strip_received(&got.data), raw);
    assert!(
        pf.log().contains("connect to Milter service"),
        "Postfix noticed the milter was down:\n{}",
        pf.log()
    );
}

/// Issue 5's measurement: Postfix's throughput with and without the milter, the same load
/// (smtp-source, ~40 KB multipart/alternative messages, 32 sessions) in the same run,
/// alternating, relaying to Postfix's smtp-sink. Prints the figures; asserts nothing about
/// speed. Run with:
/// `SIGSTAMP_MILTER_BENCH=1 cargo test --test milter_postfix -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_postfix_with_and_without_the_milter() {
    if std::env::var_os("SIGSTAMP_MILTER_BENCH").is_none()
        || !require_tool("postfix")
        || !require_tool("smtp-source")
        || !require_tool("smtp-sink")
    {
        eprintln!("SKIP: set SIGSTAMP_MILTER_BENCH=1 (needs postfix, smtp-source, smtp-sink)");
        return;
    }
    let messages: usize = std::env::var("SIGSTAMP_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rounds: usize = std::env::var("SIGSTAMP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let relay = free_addr();
    let mut sink = std::process::Command::new("smtp-sink")
        .args(["-u", "postfix", &relay.to_string(), "256"])
        .spawn()
        .expect("smtp-sink");
    let milter = start(config()).await;
    assert_pipeline_stamps(&milter.app);
    let milter_addr = format!("inet:{}", milter.addr);
    let (plain, with) = tokio::task::spawn_blocking(move || {
        (
            Postfix::relaying_to(relay).start().unwrap(),
            Postfix::relaying_to(relay)
                .milter(&milter_addr)
                .start()
                .unwrap(),
        )
    })
    .await
    .unwrap();
    let file = plain.dir().join("load.eml");
    let load = load_message(40 * 1024);
    std::fs::write(&file, &load).unwrap();
    // The pipeline alone on this message, for comparison with the CPU per message below.
    let started = std::time::Instant::now();
    for _ in 0..500 {
        assert!(matches!(
            reference(&milter.app, &load, "ann@example.com"),
            Verdict::Stamped { .. }
        ));
    }
    let cpu_us = started.elapsed().as_secs_f64() / 500.0 * 1e6;
    eprintln!(
        "pipeline alone: {cpu_us:.0} us per {} byte message",
        load.len()
    );
    let sig = sigstamp::stamp::Signature {
        html: "<p>Ann Example<br>Engineer</p>".into(),
        text: "-- \nAnn Example\nEngineer\n".into(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    for _ in 0..500 {
        sigstamp::stamp::stamp(&load, &sig, &Default::default()).unwrap();
    }
    let core_us = started.elapsed().as_secs_f64() / 500.0 * 1e6;
    eprintln!("stamp core alone: {core_us:.0} us");

    let mut results: Vec<(&str, f64)> = Vec::new();
    for round in 0..rounds {
        let order: [(&str, &Postfix); 2] = if round % 2 == 0 {
            [("plain", &plain), ("milter", &with)]
        } else {
            [("milter", &with), ("plain", &plain)]
        };
        for (name, pf) in order {
            let cpu_before = process_cpu_seconds();
            let started = std::time::Instant::now();
            let out = std::process::Command::new("smtp-source")
                .args(["-s", &sessions(), "-m", &messages.to_string()])
                .arg("-F")
                .arg(&file)
                .args(["-f", "ann@example.com", "-t", "rcpt@example.net"])
                .arg(pf.smtpd.to_string())
                .output()
                .expect("smtp-source");
            let secs = started.elapsed().as_secs_f64();
            assert!(
                out.status.success(),
                "smtp-source: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let rate = messages as f64 / secs;
            // CPU of this process (the milter, plus this test's idle tasks) per message.
            let cpu_us = (process_cpu_seconds() - cpu_before) / messages as f64 * 1e6;
            eprintln!(
                "round {round} {name:>6}: {messages} msgs in {secs:.2}s = {rate:.0} msgs/s, \
                 sigstamp CPU {cpu_us:.0} us/msg"
            );
            results.push((name, rate));
            // Let the queue drain so the next run starts from the same state.
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while pf.queue_len() > 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let mean = |n: &str| {
        let v: Vec<f64> = results.iter().filter(|r| r.0 == n).map(|r| r.1).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (p, m) = (mean("plain"), mean("milter"));
    eprintln!(
        "mean: plain {p:.0} msgs/s, with milter {m:.0} msgs/s, cost {:.1}%",
        (1.0 - m / p) * 100.0
    );
    let metrics = milter.app.metrics.encode();
    for line in metrics.lines().filter(|l| {
        l.starts_with("sigstamp_messages_total")
            || l.contains("stamp_seconds_sum")
            || l.contains("stamp_seconds_count")
    }) {
        eprintln!("{line}");
    }
    let _ = sink.kill();
    let _ = sink.wait();
}

/// User + system CPU time of this process, from /proc (clock ticks of 1/100 s).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn sessions() -> String {
    std::env::var("SIGSTAMP_BENCH_SESSIONS").unwrap_or_else(|_| "32".into())
}

/// A multipart/alternative message of about `size` bytes from ann@example.com.
fn load_message(size: usize) -> Vec<u8> {
    let line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let n = size / 2 / line.len();
    let text = line.repeat(n);
    let html = format!(
        "<html><body>\r\n{}</body></html>\r\n",
        line.repeat(n).replace("\r\n", "<br>\r\n")
    );
    format!(
        "From: Ann Example <ann@example.com>\r\nTo: rcpt@example.net\r\nSubject: load\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <load@example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}--alt--\r\n"
    )
    .into_bytes()
}
