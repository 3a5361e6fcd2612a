//! Delta sync against the fake Graph: paging, merge, @removed, resync, throttling, 401 retry,
//! snapshot.

mod fake_graph;

use fake_graph::*;
use serde_json::json;
use sigstamp::directory::graph::sync::Progress;
use sigstamp::directory::snapshot;
use sigstamp::directory::{Directory, Source};
use std::time::Duration;

fn no_progress() -> impl FnMut(Progress) {
    |_| {}
}

#[tokio::test]
async fn full_sync_follows_next_links_to_the_delta_link() {
    let fake = FakeGraph::start().await;
    fake.add_generated_users(450);
    fake.with(|s| s.delta_page_size = 200);
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    let mut seen = Vec::new();
    let report = sy
        .sync(&mut |p: Progress| seen.push(p.pages))
        .await
        .unwrap();
    assert!(report.full);
    assert_eq!((report.pages, report.users), (3, 450));
    assert_eq!(seen, vec![1, 2, 3]);
    assert!(sy.delta_link().unwrap().contains("$deltatoken="));

    let graph = fake.requests_of(Kind::Graph);
    assert_eq!(graph.len(), 3);
    let first = &graph[0].path_and_query;
    assert!(first.starts_with("/v1.0/users/delta?$select="), "{first}");
    for prop in [
        "proxyAddresses",
        "onPremisesExtensionAttributes",
        "department",
        "employeeId",
        "accountEnabled",
    ] {
        assert!(first.contains(prop), "{prop} not selected: {first}");
    }
    assert!(graph[1].path_and_query.contains("$skiptoken="));
    assert!(graph.iter().all(|r| r
        .headers
        .get("prefer")
        .is_some_and(|v| v == "return=minimal")));
    assert!(graph
        .iter()
        .all(|r| r.headers.get("client-request-id").is_some()));

    // The secret went in the form body, URL-encoded, with the .default scope.
    let tok = fake.requests_of(Kind::Token);
    assert_eq!(tok.len(), 1, "one token for the whole round");
    assert_eq!(tok[0].field("client_secret"), Some(SECRET));
    assert_eq!(
        tok[0].field("scope"),
        Some("https://graph.microsoft.com/.default")
    );
    assert_eq!(tok[0].field("grant_type"), Some("client_credentials"));

    let sink = sink(fake.clock.clone(), None);
    sink.publish(&sy, &report).await.unwrap();
    let u = sink
        .directory
        .lookup("U0000042@Contoso.test")
        .expect("found by mail");
    assert_eq!(u.str("displayName"), Some("User 42"));
    assert!(
        sink.directory
            .lookup("u42@contoso.onmicrosoft.com")
            .is_some(),
        "found by alias"
    );
    assert_eq!(sink.directory.source(), Source::Graph);
    assert!(sink
        .status
        .directory_loaded
        .load(std::sync::atomic::Ordering::Relaxed));
    assert!(sink
        .metrics
        .encode()
        .contains("sigstamp_directory_users 450"));
}

#[tokio::test]
async fn delta_merges_changes_and_drops_removed_users() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    fake.put_user(json!({"id": "id-d", "displayName": "Dan", "mail": "dan@contoso.test"}));
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    sy.sync(&mut no_progress()).await.unwrap();
    assert_eq!(sy.len(), 4);

    fake.update_user(
        "id-a",
        json!({"jobTitle": "Director", "businessPhones": ["+1 555 0199"]}),
    );
    fake.update_user("id-b", json!({"jobTitle": null}));
    fake.remove_user("id-c", "changed");
    fake.remove_user("id-d", "deleted");
    fake.put_user(json!({"id": "id-e", "displayName": "Eve", "mail": "eve@contoso.test"}));
    fake.with(|s| s.duplicate_entries = true);
    fake.clear_requests();

    let report = sy.sync(&mut no_progress()).await.unwrap();
    assert!(!report.full, "an incremental round from the deltaLink");
    let reqs = fake.requests_of(Kind::Graph);
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].path_and_query.contains("$deltatoken="));

    let users = sy.users();
    let by_id = |id: &str| users.iter().find(|u| u.id() == Some(id)).cloned();
    assert_eq!(users.len(), 3, "{users:?}");
    let a = by_id("id-a").unwrap();
    assert_eq!(a.str("jobTitle"), Some("Director"));
    assert_eq!(a.get("businessPhones").unwrap(), json!(["+1 555 0199"]));
    assert_eq!(
        a.str("displayName"),
        Some("Adele Vance"),
        "unchanged keys kept"
    );
    let b = by_id("id-b").unwrap();
    assert!(b.get("jobTitle").is_none(), "cleared to null");
    assert_eq!(b.str("mail"), Some("bob@contoso.test"));
    assert!(by_id("id-c").is_none() && by_id("id-d").is_none());
    assert_eq!(by_id("id-e").unwrap().str("displayName"), Some("Eve"));

    // A restored user comes back in the next round.
    fake.put_user(json!({"id": "id-c", "displayName": "Cara Diaz"}));
    sy.sync(&mut no_progress()).await.unwrap();
    assert!(sy.users().iter().any(|u| u.id() == Some("id-c")));
}

/// Publishing an incremental round keeps the directory's unchanged users (the same
/// allocation), so a sync adds to memory only what it changed.
#[tokio::test]
async fn publish_shares_unchanged_users_with_the_directory() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    let sink = sink(fake.clock.clone(), None);
    let report = sy.sync(&mut no_progress()).await.unwrap();
    sink.publish(&sy, &report).await.unwrap();
    let before = sink.directory.base_users();

    fake.update_user("id-a", json!({"jobTitle": "Director"}));
    let report = sy.sync(&mut no_progress()).await.unwrap();
    assert!(!report.full);
    sink.publish(&sy, &report).await.unwrap();
    let after = sink.directory.base_users();
    let find = |users: &[std::sync::Arc<sigstamp::directory::User>], id: &str| {
        users.iter().find(|u| u.id() == Some(id)).cloned().unwrap()
    };
    assert_eq!(after.len(), 3);
    assert!(std::sync::Arc::ptr_eq(
        &find(&before, "id-b"),
        &find(&after, "id-b")
    ));
    assert!(std::sync::Arc::ptr_eq(
        &find(&before, "id-c"),
        &find(&after, "id-c")
    ));
    assert_eq!(find(&after, "id-a").str("jobTitle"), Some("Director"));
    assert_eq!(
        sink.directory
            .lookup("adele@contoso.test")
            .unwrap()
            .str("jobTitle"),
        Some("Director")
    );
}

#[tokio::test]
async fn delta_state_gone_means_full_resync_for_every_shape() {
    for shape in [
        ResyncShape::Gone410,
        ResyncShape::SyncStateNotFound,
        ResyncShape::ResyncRequired,
    ] {
        let fake = FakeGraph::start().await;
        seed_abc(&fake);
        let mut sy = syncer(&fake.config(), fake.clock.clone());
        sy.sync(&mut no_progress()).await.unwrap();
        fake.update_user("id-a", json!({"jobTitle": "CEO"}));
        fake.with(|s| {
            s.resync_shape = shape;
            s.force_resync = true;
        });
        fake.clear_requests();
        let report = sy.sync(&mut no_progress()).await.unwrap();
        assert!(report.full, "{shape:?}");
        let statuses: Vec<u16> = fake
            .requests_of(Kind::Graph)
            .iter()
            .map(|r| r.status)
            .collect();
        let want_first = if shape == ResyncShape::Gone410 {
            410
        } else {
            400
        };
        assert_eq!(statuses, vec![want_first, 200], "{shape:?}");
        assert_eq!(report.users, 3);
        let a = sy
            .users()
            .into_iter()
            .find(|u| u.id() == Some("id-a"))
            .unwrap();
        assert_eq!(a.str("jobTitle"), Some("CEO"));
    }
}

#[tokio::test]
async fn old_delta_links_are_not_used() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    sy.sync(&mut no_progress()).await.unwrap();

    // The server expires delta tokens after an hour: the client's request gets 4xx, then it
    // runs a full round.
    fake.with(|s| {
        s.delta_max_age = Duration::from_secs(3600);
        s.resync_shape = ResyncShape::SyncStateNotFound;
    });
    fake.clock.advance(Duration::from_secs(7200));
    fake.clear_requests();
    assert!(sy.sync(&mut no_progress()).await.unwrap().full);
    assert_eq!(fake.requests_of(Kind::Graph)[0].status, 400);

    // Past 6 days the client does not even try its deltaLink.
    fake.with(|s| s.delta_max_age = Duration::from_secs(30 * 24 * 3600));
    fake.clock.advance(Duration::from_secs(6 * 24 * 3600 + 60));
    fake.clear_requests();
    assert!(sy.sync(&mut no_progress()).await.unwrap().full);
    let g = fake.requests_of(Kind::Graph);
    assert!(g[0].path_and_query.contains("$select=") && g[0].status == 200);
}

/// The delays between a throttled answer and the next Graph request, on the fake's clock.
fn gaps_after_throttle(fake: &FakeGraph) -> Vec<Duration> {
    let g = fake.requests_of(Kind::Graph);
    g.windows(2)
        .filter(|w| matches!(w[0].status, 429 | 503 | 504))
        .map(|w| Duration::try_from(w[1].at - w[0].at).unwrap())
        .collect()
}

#[tokio::test]
async fn throttling_honours_retry_after_else_backs_off() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    fake.with(|s| {
        s.graph_faults.push_back(Fault::new(429, Some("10")));
        s.graph_faults.push_back(Fault::new(429, Some("2.5")));
        s.graph_faults.push_back(Fault::new(503, None));
        s.graph_faults.push_back(Fault::new(504, None));
    });
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    let report = sy.sync(&mut no_progress()).await.unwrap();
    assert_eq!(report.users, 3);
    let gaps = gaps_after_throttle(&fake);
    assert_eq!(gaps.len(), 4, "{gaps:?}");
    assert!(gaps[0] >= Duration::from_secs(10), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(2500), "{gaps:?}");
    // No Retry-After: exponential backoff from 3 s with ±20 % jitter (3 s, then 6 s).
    assert!(gaps[2] >= Duration::from_millis(2400), "{gaps:?}");
    assert!(gaps[3] >= Duration::from_millis(4800), "{gaps:?}");
    let g = fake.requests_of(Kind::Graph);
    assert_eq!(g.len(), 5, "no request sent while throttled");
    assert_eq!(g[1].headers.get("retry-attempt").unwrap(), "1");
}

#[tokio::test]
async fn throttling_gives_up_after_the_attempt_cap() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    fake.with(|s| (0..20).for_each(|_| s.graph_faults.push_back(Fault::new(429, Some("1")))));
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    let err = sy.sync(&mut no_progress()).await.unwrap_err();
    assert_eq!(err.kind(), "throttled", "{err}");
    assert_eq!(fake.requests_of(Kind::Graph).len(), 10);
}

#[tokio::test]
async fn graph_401_refreshes_the_token_once_and_retries() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    // Tokens say 3599 s but Graph rejects them after 2 s.
    fake.with(|s| s.graph_token_ttl = Some(Duration::from_secs(2)));
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    sy.sync(&mut no_progress()).await.unwrap();
    fake.clock.advance(Duration::from_secs(10));
    fake.clear_requests();
    fake.update_user("id-b", json!({"jobTitle": "CFO"}));
    sy.sync(&mut no_progress()).await.unwrap();
    let kinds: Vec<(Kind, u16)> = fake.requests().iter().map(|r| (r.kind, r.status)).collect();
    assert_eq!(
        kinds,
        vec![(Kind::Graph, 401), (Kind::Token, 200), (Kind::Graph, 200)]
    );
    assert_eq!(fake.requests()[0].status, 401);

    // A token that is rejected at once, every time: one retry only, then a hard error.
    fake.with(|s| s.graph_token_ttl = Some(Duration::ZERO));
    fake.clock.advance(Duration::from_secs(10));
    fake.clear_requests();
    let err = sy.sync(&mut no_progress()).await.unwrap_err();
    assert!(
        err.to_string().contains("InvalidAuthenticationToken"),
        "{err}"
    );
    assert_eq!(fake.requests_of(Kind::Graph).len(), 2);
}

#[tokio::test]
async fn access_token_is_cached_and_refreshed_ahead_of_expiry() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    sy.sync(&mut no_progress()).await.unwrap();
    fake.clock.advance(Duration::from_secs(3000));
    sy.sync(&mut no_progress()).await.unwrap();
    assert_eq!(
        fake.requests_of(Kind::Token).len(),
        1,
        "still fresh at 3000 s"
    );
    // 3599 - 300: stale, so a new token before Graph would reject the old one.
    fake.clock.advance(Duration::from_secs(350));
    sy.sync(&mut no_progress()).await.unwrap();
    assert_eq!(fake.requests_of(Kind::Token).len(), 2);
    assert!(fake
        .requests_of(Kind::Graph)
        .iter()
        .all(|r| r.status == 200));
}

#[tokio::test]
async fn single_flight_token_refresh() {
    let fake = FakeGraph::start().await;
    let cfg = fake.config();
    let client = cfg
        .client(
            fake.clock.clone(),
            sigstamp::directory::graph::client::RetryPolicy::background(),
        )
        .unwrap();
    let client = std::sync::Arc::new(client);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.tokens().access_token().await.unwrap()
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        fake.requests_of(Kind::Token).len(),
        1,
        "eight callers, one token request"
    );
}

#[tokio::test]
async fn snapshot_is_written_after_sync_and_loaded_at_start() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("directory.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let sink = sink(fake.clock.clone(), Some(path.clone()));
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    let report = sy.sync(&mut no_progress()).await.unwrap();
    sink.publish(&sy, &report).await.unwrap();

    let fresh = Directory::new();
    let loaded = snapshot::load(&path, &fresh).unwrap().unwrap();
    assert_eq!(loaded.users, 3);
    assert_eq!(loaded.delta_link.as_deref(), sy.delta_link());
    assert_eq!(fresh.source(), Source::Snapshot);
    assert_eq!(
        fresh
            .lookup("bob.alias@contoso.test")
            .unwrap()
            .str("displayName"),
        Some("Bob Kelly")
    );
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp files left: {names:?}");

    // A restarted syncer seeded from the snapshot continues incrementally.
    let sink2 = sink_for_restart(&fake, &path);
    let mut sy2 = syncer(&fake.config(), fake.clock.clone());
    sink2.seed(&mut sy2);
    assert_eq!(sink2.directory.source(), Source::Snapshot);
    fake.update_user("id-c", json!({"jobTitle": "CTO"}));
    let r2 = sy2.sync(&mut no_progress()).await.unwrap();
    assert!(!r2.full);
    assert_eq!(r2.users, 3);
}

/// `sigstamp serve` loads the snapshot before the refresher starts: the refresher then does
/// not read it again, and its syncer shares the directory's users (one copy of the
/// tenant), continuing incrementally from the snapshot's deltaLink.
#[tokio::test]
async fn serve_restart_shares_the_loaded_snapshot() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.json");
    let first = sink(fake.clock.clone(), Some(path.clone()));
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    let report = sy.sync(&mut no_progress()).await.unwrap();
    first.publish(&sy, &report).await.unwrap();

    let restarted = sink_for_restart(&fake, &path);
    snapshot::load(&path, &restarted.directory)
        .unwrap()
        .unwrap();
    let loaded = restarted.directory.base_users();
    // Read once: the refresher takes the deltaLink from what start-up loaded, not the file.
    let kept = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut sy2 = syncer(&fake.config(), fake.clock.clone());
    restarted.seed(&mut sy2);
    std::fs::write(&path, kept).unwrap();
    assert_eq!(sy2.delta_link(), sy.delta_link());
    let seeded = sy2.users();
    assert_eq!(seeded.len(), 3);
    for u in &seeded {
        assert!(
            loaded.iter().any(|l| std::sync::Arc::ptr_eq(l, u)),
            "{:?} was copied",
            u.id()
        );
    }
    fake.update_user("id-b", json!({"jobTitle": "CFO"}));
    let r = sy2.sync(&mut no_progress()).await.unwrap();
    assert!(!r.full, "incremental from the snapshot's deltaLink");
    restarted.publish(&sy2, &r).await.unwrap();
    assert_eq!(restarted.directory.source(), Source::Graph);
    let after = restarted.directory.base_users();
    let by_id = |users: &[std::sync::Arc<sigstamp::directory::User>], id: &str| {
        users.iter().find(|u| u.id() == Some(id)).cloned().unwrap()
    };
    assert!(std::sync::Arc::ptr_eq(
        &by_id(&loaded, "id-a"),
        &by_id(&after, "id-a")
    ));
    assert_eq!(by_id(&after, "id-b").str("jobTitle"), Some("CFO"));
}

fn sink_for_restart(
    fake: &FakeGraph,
    path: &std::path::Path,
) -> sigstamp::directory::graph::SyncTarget {
    sink(fake.clock.clone(), Some(path.to_path_buf()))
}

#[tokio::test]
async fn corrupt_snapshot_is_reported_and_ignored() {
    let fake = FakeGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.json");
    std::fs::write(&path, b"{\"version\": 1, \"users\": [{\"id\": ").unwrap();
    let d = Directory::new();
    let err = snapshot::load(&path, &d).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(d.source(), Source::Empty);

    // The refresher's seed ignores it and a full sync follows.
    seed_abc(&fake);
    let s = sink(fake.clock.clone(), Some(path.clone()));
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    s.seed(&mut sy);
    assert_eq!(s.directory.source(), Source::Empty);
    assert!(sy.delta_link().is_none());
    let r = sy.sync(&mut no_progress()).await.unwrap();
    assert!(r.full);
    // And the next publish replaces the corrupt file with a good one.
    s.publish(&sy, &r).await.unwrap();
    assert_eq!(
        snapshot::load(&path, &Directory::new())
            .unwrap()
            .unwrap()
            .users,
        3
    );
}

#[tokio::test]
async fn unwritable_snapshot_is_reported_and_mail_data_still_flows() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let s = sink(fake.clock.clone(), Some(blocker.join("directory.json")));
    let mut sy = syncer(&fake.config(), fake.clock.clone());
    let r = sy.sync(&mut no_progress()).await.unwrap();
    let err = s.publish(&sy, &r).await.unwrap_err();
    assert!(err.to_string().contains("cannot write snapshot"), "{err}");
    assert!(
        s.directory.lookup("adele@contoso.test").is_some(),
        "the cache was still updated"
    );
}

#[tokio::test]
async fn fake_users_endpoint_pages_and_rejects_forged_skiptokens() {
    // The fake's /users behaviour (§6.7), driven with reqwest directly.
    let fake = FakeGraph::start().await;
    fake.add_generated_users(5);
    let cfg = fake.config();
    let client = cfg
        .client(
            fake.clock.clone(),
            sigstamp::directory::graph::client::RetryPolicy::interactive(),
        )
        .unwrap();
    let page = client
        .get_json(
            &client.url("/users?$top=2&$select=id,mail,faxNumber"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(page["value"].as_array().unwrap().len(), 2);
    assert!(page["value"][0]["faxNumber"].is_null());
    let next = page["@odata.nextLink"].as_str().unwrap().to_string();
    assert!(next.starts_with(&fake.base));
    let forged = format!("{}x", next);
    let err = client.get_json(&forged, false).await.unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    let err = client
        .get_json(&client.url("/users?$select=id,skills"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("501"), "{err}");
    let err = client
        .get_json(&client.url("/users?$count=true"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    let no_sel = client.get_json(&client.url("/users"), false).await.unwrap();
    assert!(
        no_sel["value"][0].get("city").is_none(),
        "not a default property"
    );
    let (u0, u1) = (
        "00000000-0000-4000-8000-000000000000",
        "00000001-0000-4000-8000-000000000001",
    );
    let err = client
        .get_json(&client.url(&format!("/users/{u0}/manager")), false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Request_ResourceNotFound"),
        "{err}"
    );
    fake.set_manager(u0, Some(u1));
    let m = client
        .get_json(&client.url(&format!("/users/{u0}/manager")), false)
        .await
        .unwrap();
    assert_eq!(m["id"], u1);
    let e = client
        .get_json(&client.url(&format!("/users/{u0}?$expand=manager")), false)
        .await
        .unwrap();
    assert_eq!(e["manager"]["mail"], "u0000001@contoso.test");
    let err = client
        .get_json(&client.url(&format!("/users/{u0}/photo")), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    fake.set_photo(u0, "image/jpeg", vec![0xff, 0xd8, 0xff]);
    let meta = client
        .get_json(&client.url(&format!("/users/{u0}/photo")), false)
        .await
        .unwrap();
    assert_eq!(meta["@odata.mediaContentType"], "image/jpeg");

    // manager@delta when manager is selected; $deltatoken=latest gives no data.
    let d = client
        .get_json(
            &client.url("/users/delta?$select=displayName,manager"),
            true,
        )
        .await
        .unwrap();
    let with_mgr = d["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == u0)
        .unwrap();
    assert_eq!(with_mgr["manager@delta"][0]["id"], u1);
    let latest = client
        .get_json(&client.url("/users/delta?$deltatoken=latest"), true)
        .await
        .unwrap();
    assert!(
        latest["value"].as_array().unwrap().is_empty() && latest["@odata.deltaLink"].is_string()
    );
}
