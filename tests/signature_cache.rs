//! The rendered-signature cache (src/render/cache.rs) never serves a stale signature: after a
//! message has been stamped (the user's signature cached), a directory change, an override
//! and a template change each show in the very next message.

use serde_json::json;
use sigstamp::directory::overrides::Overrides;
use sigstamp::directory::{Directory, Source, User};
use sigstamp::pipeline::{Envelope, Stamper, Verdict};
use sigstamp::render::Templates;
use std::sync::Arc;

const MESSAGE: &[u8] = b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n";

fn alice(title: &str) -> User {
    let v = json!({
        "id": "1",
        "displayName": "Alice Example",
        "jobTitle": title,
        "mail": "alice@example.com",
        "userPrincipalName": "alice@example.com",
    });
    User::new(v.as_object().unwrap().clone())
}

/// The stamped message, as text.
fn stamped(stamper: &Stamper) -> String {
    let rcpts = ["bob@example.org".to_string()];
    let env = Envelope {
        mail_from: Some("alice@example.com"),
        rcpt_to: &rcpts,
    };
    match stamper.process(MESSAGE, &env) {
        Verdict::Stamped { message, .. } => String::from_utf8(message).unwrap(),
        Verdict::Unchanged(why) => panic!("not stamped: {why}"),
    }
}

fn stamper() -> (Arc<Directory>, Stamper) {
    let directory = Arc::new(Directory::new());
    directory.replace_users(vec![alice("Engineer")], Source::File);
    let stamper = Stamper::new(directory.clone(), Templates::embedded());
    // Twice: the second is served from the cache.
    assert!(stamped(&stamper).contains("Engineer"));
    assert!(stamped(&stamper).contains("Engineer"));
    (directory, stamper)
}

#[test]
fn a_directory_change_shows_in_the_next_message() {
    let (directory, stamper) = stamper();
    directory.replace_users(vec![alice("Director")], Source::Graph);
    let text = stamped(&stamper);
    assert!(
        text.contains("Director") && !text.contains("Engineer"),
        "{text}"
    );
}

#[test]
fn an_override_shows_in_the_next_message_and_its_removal_too() {
    let (directory, stamper) = stamper();
    let mut ov = Overrides::default();
    ov.set("alice@example.com", "jobTitle", "Head of Optics")
        .unwrap();
    directory.set_overrides(ov.clone());
    let text = stamped(&stamper);
    assert!(
        text.contains("Head of Optics") && !text.contains("Engineer"),
        "{text}"
    );
    ov.unset("alice@example.com", "jobTitle").unwrap();
    directory.set_overrides(ov);
    let text = stamped(&stamper);
    assert!(
        text.contains("Engineer") && !text.contains("Head of Optics"),
        "{text}"
    );
}

#[test]
fn a_template_change_shows_in_the_next_message() {
    let (_directory, stamper) = stamper();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.html.hbs"),
        "<p>{{displayName}} | new template</p>",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("default.txt.hbs"),
        "{{displayName}} | new template",
    )
    .unwrap();
    stamper
        .templates
        .store(Arc::new(Templates::load(dir.path()).unwrap()));
    let text = stamped(&stamper);
    assert!(text.contains("Alice Example | new template"), "{text}");
    assert!(!text.contains("Engineer"), "{text}");
}
