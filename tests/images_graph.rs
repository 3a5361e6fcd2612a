//! Photos from the (fake) Graph end up in stamped messages: the photo store feeds
//! `{{photo}}`, the stamped HTML references it by `cid:` and the message carries its bytes;
//! a changed photo shows in the next message.

mod fake_graph;
mod support;

use fake_graph::*;
use serde_json::json;
use sigstamp::directory::graph::client::RetryPolicy;
use sigstamp::directory::graph::photos::PhotoStore;
use sigstamp::directory::User;
use sigstamp::metrics::Metrics;
use sigstamp::render::Templates;
use sigstamp::stamp::{self, Options};
use std::sync::Arc;
use std::time::Duration;
use support::images::check_images;

const DAY: Duration = Duration::from_secs(24 * 3600);
const PNG_V1: &[u8] = b"\x89PNG\r\n\x1a\n-adele-v1";
const PNG_V2: &[u8] = b"\x89PNG\r\n\x1a\n-adele-v2";

#[tokio::test]
async fn graph_photos_are_stamped_inline() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    fake.set_photo("id-a", "image/png", PNG_V1.to_vec());
    let client = fake
        .config()
        .client(fake.clock.clone(), RetryPolicy::background())
        .unwrap();
    let store = Arc::new(PhotoStore::in_memory());
    let ids = ["id-a".to_string(), "id-c".to_string()];
    let metrics = Metrics::new();
    store
        .refresh(&client, &ids, DAY, &*fake.clock, &metrics)
        .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.html.hbs"),
        "<p>{{displayName}}</p>{{#if photo}}<img src=\"{{photo}}\" alt=\"\">{{/if}}",
    )
    .unwrap();
    std::fs::write(dir.path().join("default.txt.hbs"), "-- \n{{displayName}}").unwrap();
    let templates = Templates::load(dir.path())
        .unwrap()
        .with_photos(store.clone());
    let user = |id: &str, name: &str| {
        User::new(
            json!({"id": id, "mail": format!("{id}@x.example"), "displayName": name})
                .as_object()
                .unwrap()
                .clone(),
        )
    };
    let raw = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reply-gmail.eml"),
    )
    .unwrap();

    let adele = user("id-a", "Adele Vance");
    let sig = templates.render("default", &adele).unwrap();
    assert_eq!(sig.images.len(), 1, "{}", sig.html);
    assert_eq!(&*sig.images[0].bytes, PNG_V1);
    assert_eq!(sig.images[0].content_type, "image/png");
    let s = stamp::stamp(&raw, &sig, &Options::default()).unwrap();
    assert_eq!(s.images, 1);
    check_images(&raw, &s.message, &sig, "Adele Vance").unwrap();

    // No photo in Graph: no image, no part.
    let carol = templates.render("default", &user("id-c", "Carol")).unwrap();
    assert!(
        carol.images.is_empty() && !carol.html.contains("<img"),
        "{}",
        carol.html
    );

    // A new photo (new ETag) is fetched on the next round and used at once.
    fake.set_photo("id-a", "image/png", PNG_V2.to_vec());
    fake.clock.advance(DAY);
    store
        .refresh(&client, &ids, DAY, &*fake.clock, &metrics)
        .await;
    let again = templates.render("default", &adele).unwrap();
    assert_eq!(&*again.images[0].bytes, PNG_V2);
    assert_ne!(again.images[0].cid, sig.images[0].cid);
}
