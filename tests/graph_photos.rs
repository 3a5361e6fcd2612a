//! User photos against the fake Graph, through the production client: fetched and served by
//! the store, ETag-aware, 404 = none, disk cache across restarts, removed users, size limit,
//! missing permission and throttling.

mod fake_graph;

use fake_graph::*;
use sigstamp::directory::graph::client::{GraphClient, RetryPolicy};
use sigstamp::directory::graph::photos::{PhotoStore, RoundReport, MAX_PHOTO_BYTES};
use sigstamp::directory::graph::GraphConfig;
use sigstamp::directory::photo::{Photo, PhotoSource};
use sigstamp::metrics::Metrics;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 3600);
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n-adele";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0-bob";

fn client(cfg: &GraphConfig, fake: &FakeGraph) -> GraphClient {
    cfg.client(fake.clock.clone(), RetryPolicy::background())
        .unwrap()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Users a (PNG), b (JPEG), c (none).
async fn fake_with_photos() -> FakeGraph {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    fake.set_photo("id-a", "image/png", PNG.to_vec());
    fake.set_photo("id-b", "image/jpeg", JPEG.to_vec());
    fake
}

async fn round(
    store: &PhotoStore,
    client: &GraphClient,
    fake: &FakeGraph,
    users: &[&str],
    metrics: &Metrics,
) -> RoundReport {
    store
        .refresh(client, &ids(users), DAY, &*fake.clock, metrics)
        .await
}

fn photo(ct: &str, bytes: &[u8]) -> Photo {
    Photo {
        content_type: ct.into(),
        bytes: bytes.to_vec(),
    }
}

#[tokio::test]
async fn photos_are_fetched_served_and_the_etag_saves_downloads() {
    let fake = fake_with_photos().await;
    let tmp = tempfile::tempdir().unwrap();
    let store = PhotoStore::open(tmp.path().join("photos")).unwrap();
    let (client, metrics) = (client(&fake.config(), &fake), Metrics::new());
    let abc = ["id-a", "id-b", "id-c"];

    let r = round(&store, &client, &fake, &abc, &metrics).await;
    assert_eq!((r.checked, r.downloaded, r.without), (3, 2, 1), "{r:?}");
    assert_eq!(r.aborted, None);
    assert_eq!(*store.photo("id-a").unwrap(), photo("image/png", PNG));
    assert_eq!(*store.photo("id-b").unwrap(), photo("image/jpeg", JPEG));
    assert!(store.photo("id-c").is_none(), "404: no photo");
    assert_eq!(fake.photo_downloads("id-c"), 0, "no $value after a 404");
    assert!(metrics.encode().contains("sigstamp_directory_photos 2"));
    let graph = fake.requests_of(Kind::Graph);
    assert!(graph
        .iter()
        .any(|r| r.path_and_query == "/v1.0/users/id-a/photo"));
    assert!(graph
        .iter()
        .any(|r| r.path_and_query == "/v1.0/users/id-a/photo/$value"));

    // Within photo_refresh nothing is due: no request at all.
    fake.clear_requests();
    let r = round(&store, &client, &fake, &abc, &metrics).await;
    assert_eq!(r.checked, 0, "{r:?}");
    assert!(fake.requests_of(Kind::Graph).is_empty());

    // A day later every user is checked again; unchanged ETags download nothing.
    fake.clock.advance(DAY);
    let r = round(&store, &client, &fake, &abc, &metrics).await;
    assert_eq!((r.checked, r.downloaded), (3, 0), "{r:?}");
    assert_eq!(fake.photo_downloads("id-a"), 1);
    assert_eq!(fake.photo_downloads("id-b"), 1);

    // Bob's photo changes (a new ETag): only his is downloaded again.
    fake.set_photo("id-b", "image/png", b"new-bob".to_vec());
    fake.clock.advance(DAY);
    let r = round(&store, &client, &fake, &abc, &metrics).await;
    assert_eq!((r.checked, r.downloaded), (3, 1), "{r:?}");
    assert_eq!(fake.photo_downloads("id-a"), 1);
    assert_eq!(fake.photo_downloads("id-b"), 2);
    assert_eq!(
        *store.photo("id-b").unwrap(),
        photo("image/png", b"new-bob")
    );

    // Adele removes her photo: she has none from then on.
    fake.remove_photo("id-a");
    fake.clock.advance(DAY);
    round(&store, &client, &fake, &abc, &metrics).await;
    assert!(store.photo("id-a").is_none());
    assert!(!tmp.path().join("photos/id-a.bin").exists());
}

#[tokio::test]
async fn the_disk_cache_survives_a_restart_with_graph_unreachable() {
    let fake = fake_with_photos().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    let metrics = Metrics::new();
    {
        let store = PhotoStore::open(dir.clone()).unwrap();
        let client = client(&fake.config(), &fake);
        round(&store, &client, &fake, &["id-a", "id-b", "id-c"], &metrics).await;
        assert_eq!(store.len(), 2);
    }
    #[cfg(unix)]
    for f in ["id-a.bin", "id-a.json", "id-b.bin"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }

    // Restart: Graph (and the token endpoint) unreachable.
    let dead = dead_endpoint().await;
    let mut cfg = fake.config();
    cfg.authority = dead.clone();
    cfg.endpoint = dead;
    let store = PhotoStore::open(dir.clone()).unwrap();
    assert_eq!(*store.photo("id-a").unwrap(), photo("image/png", PNG));
    assert_eq!(*store.photo("id-b").unwrap(), photo("image/jpeg", JPEG));
    let r = round(
        &store,
        &client(&cfg, &fake),
        &fake,
        &["id-a", "id-b", "id-c"],
        &metrics,
    )
    .await;
    assert!(r.aborted.is_some(), "{r:?}");
    assert_eq!(r.checked, 1, "one failure stops the round: {r:?}");
    assert_eq!(store.len(), 2, "photos kept while Graph is down");
    assert!(metrics
        .encode()
        .contains("sigstamp_photo_failures_total{kind=\"network\"} 1"));

    // Graph back: the ETags kept on disk save the downloads.
    let r = round(
        &store,
        &client(&fake.config(), &fake),
        &fake,
        &["id-a", "id-b", "id-c"],
        &metrics,
    )
    .await;
    assert_eq!((r.checked, r.downloaded), (3, 0), "{r:?}");
    assert_eq!(fake.photo_downloads("id-a"), 1);
}

/// A loopback URL nobody listens on.
async fn dead_endpoint() -> String {
    format!("http://{}", sigstamp_testkit::free_addr())
}

#[tokio::test]
async fn users_leaving_the_directory_lose_their_cached_photo() {
    let fake = fake_with_photos().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    let store = PhotoStore::open(dir.clone()).unwrap();
    let (client, metrics) = (client(&fake.config(), &fake), Metrics::new());
    round(&store, &client, &fake, &["id-a", "id-b"], &metrics).await;
    assert!(dir.join("id-b.bin").exists());
    let r = round(&store, &client, &fake, &["id-a"], &metrics).await;
    assert_eq!((r.removed, r.checked), (1, 0), "{r:?}");
    assert!(store.photo("id-b").is_none());
    assert!(store.photo("id-a").is_some());
    assert!(!dir.join("id-b.bin").exists() && !dir.join("id-b.json").exists());
    assert!(!has_entry(&PhotoStore::open(dir).unwrap(), "id-b"));
}

fn has_entry(store: &PhotoStore, id: &str) -> bool {
    store.photo(id).is_some()
}

#[tokio::test]
async fn oversized_and_non_image_photos_are_skipped() {
    let fake = fake_with_photos().await;
    fake.set_photo("id-a", "image/jpeg", vec![0u8; MAX_PHOTO_BYTES + 1]);
    fake.set_photo("id-b", "text/html", b"<html>".to_vec());
    let store = PhotoStore::in_memory();
    let (client, metrics) = (client(&fake.config(), &fake), Metrics::new());
    let r = round(&store, &client, &fake, &["id-a", "id-b"], &metrics).await;
    assert_eq!((r.checked, r.downloaded, r.without), (2, 0, 2), "{r:?}");
    assert!(store.is_empty());
    let m = metrics.encode();
    assert!(
        m.contains("sigstamp_photo_failures_total{kind=\"too_large\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("sigstamp_photo_failures_total{kind=\"not_image\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn missing_permission_stops_the_round_and_is_counted() {
    let fake = FakeGraph::start().await;
    fake.add_generated_users(20);
    fake.with(|s| s.permission_granted = false);
    let users: Vec<String> = (0..20usize)
        .map(|i| format!("{:08x}-0000-4000-8000-{:012x}", i, i))
        .collect();
    let store = PhotoStore::in_memory();
    let (client, metrics) = (client(&fake.config(), &fake), Metrics::new());
    let r = store
        .refresh(&client, &users, DAY, &*fake.clock, &metrics)
        .await;
    assert!(
        r.aborted.as_deref().unwrap().contains("permission"),
        "{r:?}"
    );
    let sent = fake.requests_of(Kind::Graph).len();
    assert!(sent < 20, "stopped instead of asking for all 20: {sent}");
    assert!(metrics
        .encode()
        .contains("sigstamp_photo_failures_total{kind=\"forbidden\"}"));

    // Permission granted: the next round checks everyone.
    fake.with(|s| s.permission_granted = true);
    let r = store
        .refresh(&client, &users, DAY, &*fake.clock, &metrics)
        .await;
    assert_eq!((r.checked, r.aborted.clone()), (20, None), "{r:?}");
}

#[tokio::test]
async fn throttled_photo_requests_honour_retry_after() {
    let fake = fake_with_photos().await;
    fake.with(|s| s.graph_faults.push_back(Fault::new(429, Some("7"))));
    let store = PhotoStore::in_memory();
    let (client, metrics) = (client(&fake.config(), &fake), Metrics::new());
    let r = round(&store, &client, &fake, &["id-a"], &metrics).await;
    assert_eq!((r.downloaded, r.aborted.clone()), (1, None), "{r:?}");
    let g = fake.requests_of(Kind::Graph);
    assert_eq!(g[0].status, 429);
    let gap = Duration::try_from(g[1].at - g[0].at).unwrap();
    assert!(gap >= Duration::from_secs(7), "{gap:?}");
    assert_eq!(g[1].path_and_query, "/v1.0/users/id-a/photo");
}

#[tokio::test]
async fn a_photo_dir_that_is_a_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    assert!(PhotoStore::open(file.clone()).is_err());
    assert!(PhotoStore::open(file.join("sub")).is_err());
}

/// One 429 pauses every request of the round, not only the one that got it (§4.2: requests
/// sent while throttled still count against the limits).
#[tokio::test]
async fn a_throttled_answer_pauses_the_other_requests_too() {
    use sigstamp::directory::graph::clock::ManualClock;
    use sigstamp::directory::graph::photos::CONCURRENCY;
    use std::sync::Arc;
    // A clock that moves only when told: the pause lasts until the test advances it.
    let clock = Arc::new(ManualClock::starting_now());
    let fake = FakeGraph::start_with_clock(clock.clone()).await;
    fake.add_generated_users(12);
    let users: Vec<String> = (0..12usize)
        .map(|i| format!("{:08x}-0000-4000-8000-{:012x}", i, i))
        .collect();
    for (i, id) in users.iter().enumerate() {
        fake.set_photo(id, "image/png", vec![i as u8; 8]);
    }
    fake.with(|s| s.graph_faults.push_back(Fault::new(429, Some("30"))));
    let store = Arc::new(PhotoStore::in_memory());
    let client = client(&fake.config(), &fake);
    let task = {
        let (store, clock) = (store.clone(), clock.clone());
        tokio::spawn(async move {
            store
                .refresh(&client, &users, DAY, &*clock, &Metrics::new())
                .await
        })
    };
    eventually("the 429", || {
        fake.requests_of(Kind::Graph)
            .iter()
            .any(|r| r.status == 429)
    })
    .await;
    // Requests already under way may finish their step; nothing new may start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused = fake.requests_of(Kind::Graph).len();
    assert!(
        paused <= 1 + 2 * (CONCURRENCY - 1),
        "{paused} requests while throttled"
    );
    assert!(!task.is_finished());

    let t429 = fake.requests_of(Kind::Graph)[0].at;
    clock.advance(Duration::from_secs(30));
    let r = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.downloaded, r.aborted.clone()), (12, None), "{r:?}");
    let g = fake.requests_of(Kind::Graph);
    let early = g
        .iter()
        .filter(|x| x.at < t429 + Duration::from_secs(30))
        .count();
    assert_eq!(early, paused, "no request before Retry-After ran out");
    assert_eq!(g.len(), 1 + 24);
}
