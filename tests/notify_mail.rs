//! Admin notifications end to end: a `Notifier` on an injected clock, delivering through a
//! real SMTP sink on loopback.

mod admin_support;

use admin_support::{app, eventually, set_token};
use sigstamp::app::App;
use sigstamp::notify::{Clock, ManualClock, Notifier};
use sigstamp::pipeline::{Envelope, Verdict};
use sigstamp::status::TokenState;
use sigstamp_testkit::{free_addr, Received, RecordingSink};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use time::macros::datetime;
use time::OffsetDateTime;

const T0: OffsetDateTime = datetime!(2026-11-26 09:00:00 UTC);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn notify_config(hop: SocketAddr, extra: &str) -> String {
    format!(
        "[notify]\nadmin = \"it@example.com\"\nfrom = \"sigstamp@example.com\"\n\
         notify_interval = \"1h\"\nsmtp = \"{hop}\"\n{extra}"
    )
}

fn notifier(app: &Arc<App>, clock: &Arc<ManualClock>) -> Notifier {
    let setup = app.notify_setup().expect("[notify] is configured");
    Notifier::new(setup, app.notify_handles(), clock.clone()).expect("notifier builds")
}

/// Move the clock forward to `t`.
fn set(clock: &ManualClock, t: OffsetDateTime) {
    let d = t - clock.now();
    clock.advance(d.try_into().expect("tests only move time forward"));
}

fn metric(app: &App, line_start: &str) -> String {
    let text = app.metrics.encode();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(|l| l[line_start.len()..].trim().to_string())
        .unwrap_or_default()
}

fn subject(m: &Received) -> String {
    m.header("Subject").unwrap_or_default()
}

#[tokio::test]
async fn expired_once_then_reminder_after_interval_then_recovery() {
    let sink = RecordingSink::start().await;
    let app = app(&notify_config(sink.addr, ""));
    let clock = Arc::new(ManualClock::new(T0));
    let mut n = notifier(&app, &clock);

    set_token(&app, TokenState::Valid, None, T0);
    assert!(n.tick().await.sent.is_empty());

    set_token(&app, TokenState::Expired, Some("AADSTS7000222"), T0);
    assert_eq!(n.tick().await.sent, ["token_expired"]);
    for _ in 0..5 {
        clock.advance(10 * MIN - Duration::from_secs(1));
        assert!(
            n.tick().await.sent.is_empty(),
            "no repeat inside the interval"
        );
    }
    assert_eq!(
        sink.count(),
        1,
        "exactly one mail when the state turns expired"
    );

    let m = &sink.all()[0];
    assert_eq!(m.header("X-Sigstamp").as_deref(), Some("notification"));
    assert_eq!(
        m.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert_eq!(m.mail_from, "sigstamp@example.com");
    assert_eq!(m.rcpt_to, ["it@example.com"]);
    let s = subject(m);
    assert!(s.contains("AADSTS7000222"), "{s}");
    assert!(s.contains("client secret has expired"), "{s}");
    let body = m.body();
    assert!(body.contains("What to do"), "{body}");
    assert!(body.contains("new client secret"), "{body}");
    assert!(body.contains("2026-11-26T09:00:00Z"), "{body}");
    assert!(body.contains("2 users from file"), "{body}");

    set(&clock, T0 + HOUR);
    assert_eq!(n.tick().await.sent, ["token_expired"]);
    assert_eq!(sink.count(), 2);
    assert!(subject(&sink.all()[1]).contains("still expired"));
    assert!(n.tick().await.sent.is_empty());

    set_token(&app, TokenState::Valid, None, T0 + HOUR);
    assert_eq!(n.tick().await.sent, ["token_recovered"]);
    clock.advance(DAY);
    assert!(n.tick().await.sent.is_empty(), "one recovery mail only");
    assert_eq!(sink.count(), 3);
    let r = &sink.all()[2];
    assert!(subject(r).contains("valid again"), "{}", subject(r));
    assert!(r.body().contains("AADSTS7000222"));
    assert_eq!(r.header("X-Sigstamp").as_deref(), Some("notification"));

    assert_eq!(
        metric(
            &app,
            "sigstamp_notifications_total{kind=\"token_expired\",result=\"sent\"}"
        ),
        "2"
    );
}

#[tokio::test]
async fn nothing_while_valid_or_failing() {
    let sink = RecordingSink::start().await;
    let app = app(&notify_config(sink.addr, ""));
    let clock = Arc::new(ManualClock::new(T0));
    let mut n = notifier(&app, &clock);
    for state in [
        TokenState::Valid,
        TokenState::Failing,
        TokenState::Unconfigured,
    ] {
        set_token(&app, state, None, T0);
        for _ in 0..4 {
            clock.advance(6 * HOUR);
            let t = n.tick().await;
            assert!(t.sent.is_empty() && t.failed.is_empty(), "{state:?}: {t:?}");
        }
    }
    assert_eq!(sink.count(), 0);
}

/// A client certificate (and key) generated now, valid until `not_after`.
fn write_cert(dir: &std::path::Path, not_after: OffsetDateTime) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["sigstamp-test".into()]).unwrap();
    params.not_before = not_after - 365 * DAY;
    params.not_after = not_after;
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join("client.pem");
    let key_path = dir.join("client.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

fn graph_section(cert: &str, key: &str) -> String {
    format!(
        "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"app\"\n\
         client_certificate = \"{cert}\"\nclient_key = \"{key}\"\n"
    )
}

#[tokio::test]
async fn certificate_warnings_at_14_7_and_1_days_once_each() {
    let tmp = tempfile::tempdir().unwrap();
    let not_after = T0 + 30 * DAY;
    let (cert, key) = write_cert(tmp.path(), not_after);
    let sink = RecordingSink::start().await;
    let app = app(&notify_config(sink.addr, &graph_section(&cert, &key)));
    let clock = Arc::new(ManualClock::new(T0));
    let mut n = notifier(&app, &clock);

    let expect = [
        (not_after - 15 * DAY, None),
        (not_after - 14 * DAY, Some("within 14 days")),
        (not_after - 14 * DAY + HOUR, None),
        (not_after - 8 * DAY, None),
        (not_after - 7 * DAY, Some("within 7 days")),
        (not_after - 2 * DAY, None),
        (not_after - DAY, Some("within 1 day")),
        (not_after - HOUR, None),
    ];
    let mut sent = 0;
    for (now, want) in expect {
        set(&clock, now);
        let t = n.tick().await;
        match want {
            Some(w) => {
                assert_eq!(t.sent, ["certificate_expiry"], "at {now}");
                sent += 1;
                let m = &sink.all()[sent - 1];
                assert!(subject(m).contains(w), "{}", subject(m));
                let body = m.body();
                assert!(body.contains(&cert), "{body}");
                assert!(body.contains("2026-12-26T09:00:00Z"), "{body}");
                assert!(body.contains("client_certificate"), "{body}");
                assert_eq!(m.header("X-Sigstamp").as_deref(), Some("notification"));
            }
            None => assert!(t.sent.is_empty(), "at {now}: {t:?}"),
        }
        assert_eq!(sink.count(), sent);
    }
}

#[tokio::test]
async fn renewed_certificate_is_picked_up_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(tmp.path(), T0 + 3 * DAY);
    let sink = RecordingSink::start().await;
    let app = app(&notify_config(sink.addr, &graph_section(&cert, &key)));
    let clock = Arc::new(ManualClock::new(T0));
    let mut n = notifier(&app, &clock);
    // Started 3 days before: only the most urgent warning reached (7 days) is sent.
    assert_eq!(n.tick().await.sent, ["certificate_expiry"]);
    assert!(subject(&sink.all()[0]).contains("within 7 days"));

    // Renewed in place (longer file contents differ in length/mtime): no more warnings.
    std::thread::sleep(Duration::from_millis(20));
    write_cert(tmp.path(), T0 + 400 * DAY);
    clock.advance(2 * DAY + 12 * HOUR);
    assert!(n.tick().await.sent.is_empty());
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn delivery_failures_are_retried_later_without_panic() {
    let addr = free_addr();
    let app = app(&notify_config(addr, ""));
    let clock = Arc::new(ManualClock::new(T0));
    let mut n = notifier(&app, &clock);

    // Next hop down: connection refused.
    set_token(&app, TokenState::Expired, Some("AADSTS7000222"), T0);
    let t = n.tick().await;
    assert_eq!(t.failed, ["token_expired"]);
    assert!(t.sent.is_empty());
    assert!(
        n.tick().await.backing_off,
        "no hammering right after a failure"
    );

    let sink = RecordingSink::start_on(addr).await;
    clock.advance(Duration::from_secs(29));
    assert!(n.tick().await.backing_off);
    clock.advance(Duration::from_secs(1));
    assert_eq!(n.tick().await.sent, ["token_expired"]);
    assert_eq!(sink.count(), 1);
    assert!(subject(&sink.all()[0]).contains("AADSTS7000222"));

    // Next hop answers 451: a different cause is news, and it is retried too.
    sink.fail.store(true, Ordering::SeqCst);
    set_token(&app, TokenState::Expired, Some("AADSTS7000215"), T0);
    assert_eq!(n.tick().await.failed, ["token_expired"]);
    sink.fail.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(30));
    assert_eq!(n.tick().await.sent, ["token_expired"]);
    assert_eq!(sink.count(), 2);
    assert!(subject(&sink.all()[1]).contains("AADSTS7000215"));
    assert!(n.tick().await.sent.is_empty());

    assert_eq!(
        metric(
            &app,
            "sigstamp_notifications_total{kind=\"token_expired\",result=\"failed\"}"
        ),
        "2"
    );
}

/// The background task: polls the status, sends once, stops on shutdown. Alerts go through
/// `[smtp] next_hop` when `[notify] smtp` is absent, and are never stamped by the pipeline.
#[tokio::test]
async fn run_loop_uses_the_next_hop_and_stops_on_shutdown() {
    let sink = RecordingSink::start().await;
    let config = format!(
        "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"{}\"\n\
         [notify]\nadmin = \"it@example.com\"\nfrom = \"ada@example.com\"\n",
        sink.addr
    );
    let app = app(&config);
    let clock = Arc::new(ManualClock::new(T0));
    let task = tokio::spawn(sigstamp::notify::run(
        app.notify_setup(),
        app.notify_handles(),
        clock.clone(),
        Duration::from_millis(10),
        app.shutdown.clone(),
    ));

    set_token(&app, TokenState::Expired, Some("AADSTS50173"), T0);
    assert!(eventually(Duration::from_secs(5), || sink.count() == 1).await);
    let m = sink.all().remove(0);
    assert!(subject(&m).contains("AADSTS50173"), "{}", subject(&m));
    assert!(m.body().contains("sigstamp login"), "{}", m.body());

    let rcpt = m.rcpt_to.clone();
    let env = Envelope {
        mail_from: Some(&m.mail_from),
        rcpt_to: &rcpt,
    };
    let verdict = app.stamper.process(&m.data, &env);
    // The sender is in the directory, yet the trace header keeps the relay's hands off.
    assert!(
        !matches!(verdict, Verdict::Stamped { .. }),
        "the relay must not stamp its own notification"
    );
    assert_eq!(verdict.label(), "already_stamped");

    app.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn without_notify_section_the_task_idles_until_shutdown() {
    let app = app("");
    let task = tokio::spawn(sigstamp::notify::run(
        app.notify_setup(),
        app.notify_handles(),
        Arc::new(sigstamp::notify::SystemClock),
        Duration::from_secs(1),
        app.shutdown.clone(),
    ));
    set_token(&app, TokenState::Expired, Some("AADSTS7000222"), T0);
    tokio::task::yield_now().await;
    assert!(!task.is_finished());
    app.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// What was sent is remembered in `state_file`: a restart while the token is still dead does
/// not alert again (a crash loop must not flood the admin), but the reminder still comes.
#[tokio::test]
async fn a_restart_does_not_repeat_what_was_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state").join("notify.json");
    let sink = RecordingSink::start().await;
    let config = notify_config(
        sink.addr,
        &format!("state_file = \"{}\"\n", state.display()),
    );
    let clock = Arc::new(ManualClock::new(T0));

    let first = app(&config);
    let mut n = notifier(&first, &clock);
    set_token(&first, TokenState::Expired, Some("AADSTS7000222"), T0);
    assert_eq!(n.tick().await.sent, ["token_expired"]);
    assert!(state.exists(), "state saved after a send");
    drop(n);

    // Restart: the token starts `starting`, then fails again with a new `since`.
    let second = app(&config);
    let mut n = notifier(&second, &clock);
    clock.advance(10 * MIN);
    assert!(n.tick().await.sent.is_empty());
    set_token(
        &second,
        TokenState::Expired,
        Some("AADSTS7000222"),
        T0 + 10 * MIN,
    );
    assert!(
        n.tick().await.sent.is_empty(),
        "no second alert after a restart"
    );
    assert_eq!(sink.count(), 1);
    set(&clock, T0 + HOUR);
    assert_eq!(
        n.tick().await.sent,
        ["token_expired"],
        "the reminder still comes"
    );
    set_token(&second, TokenState::Valid, None, T0 + HOUR);
    assert_eq!(n.tick().await.sent, ["token_recovered"]);
    drop(n);

    // After the recovery a new failure is news again, even across a restart.
    let third = app(&config);
    let mut n = notifier(&third, &clock);
    set_token(&third, TokenState::Expired, Some("AADSTS50173"), T0 + HOUR);
    assert_eq!(n.tick().await.sent, ["token_expired"]);
    assert_eq!(sink.count(), 4);
    drop(n);

    // A corrupt state file is ignored: the alert goes out rather than being lost.
    std::fs::write(&state, "{ not json").unwrap();
    let fourth = app(&config);
    let mut n = notifier(&fourth, &clock);
    set_token(&fourth, TokenState::Expired, Some("AADSTS50173"), T0 + HOUR);
    assert_eq!(n.tick().await.sent, ["token_expired"]);
    assert_eq!(sink.count(), 5);
}

/// A snapshot that cannot be written is announced like an expired token: at once, again after
/// the interval, and once more when a write succeeds; across a restart it is not repeated.
#[tokio::test]
async fn unwritable_snapshot_is_announced_then_reminded_then_recovered() {
    let sink = RecordingSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("notify-state.json");
    let app = app(&notify_config(
        sink.addr,
        &format!("state_file = {:?}\n", state.to_str().unwrap()),
    ));
    let clock = Arc::new(ManualClock::new(T0));
    let mut n = notifier(&app, &clock);
    set_token(&app, TokenState::Valid, None, T0);
    let path = std::path::Path::new("state/directory.json");
    app.status.update_snapshot(path, |s| {
        s.failed(
            "cannot create the folder of state/directory.json: Not a directory".into(),
            T0,
        )
    });
    assert_eq!(n.tick().await.sent, ["snapshot_failing"]);
    clock.advance(30 * MIN);
    assert!(
        n.tick().await.sent.is_empty(),
        "no repeat inside the interval"
    );
    let m = &sink.all()[0];
    let s = subject(m);
    assert!(s.contains("snapshot cannot be written"), "{s}");
    // Wrapped at 72 columns: compare the words.
    let body = m.body().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(body.contains("state/directory.json"), "{body}");
    assert!(body.contains("Not a directory"), "{body}");
    assert!(
        body.contains("a restart now would start with no directory"),
        "{body}"
    );

    // A restart inside the interval does not say it again.
    let mut again = notifier(&app, &clock);
    assert!(
        again.tick().await.sent.is_empty(),
        "remembered across a restart"
    );
    set(&clock, T0 + HOUR);
    assert_eq!(again.tick().await.sent, ["snapshot_failing"]);
    assert!(subject(&sink.all()[1]).contains("still cannot be written"));

    app.status.update_snapshot(path, |s| s.ok(Some(T0 + HOUR)));
    assert_eq!(again.tick().await.sent, ["snapshot_recovered"]);
    assert!(again.tick().await.sent.is_empty());
    assert_eq!(sink.count(), 3);
    assert!(subject(&sink.all()[2]).contains("written again"));
}
