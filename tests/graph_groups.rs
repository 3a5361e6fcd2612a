//! Group membership (`memberOf`) against the fake Graph, through the production client:
//! groups resolved by display name and by id, transitive members paged, the layer on the right
//! users after a sync, kept across override edits and restarts; photos from the refresher.

mod fake_graph;

use fake_graph::*;
use serde_json::json;
use sigstamp::app::App;
use sigstamp::config::{Config, DirectoryConfig};
use sigstamp::directory::graph::client::RetryPolicy;
use sigstamp::directory::graph::clock::ManualClock;
use sigstamp::directory::graph::extras::Extras;
use sigstamp::directory::graph::groups::{self, GroupSync};
use sigstamp::directory::graph::photos::PhotoStore;
use sigstamp::directory::memberships::MEMBER_OF;
use sigstamp::directory::overrides::Overrides;
use sigstamp::directory::photo::PhotoSource;
use sigstamp::directory::{snapshot, Directory};
use sigstamp::metrics::Metrics;
use sigstamp::pipeline::Stamper;
use sigstamp::render::Templates;
use sigstamp::rules::{Audience, RuleConfig, RuleSet};
use sigstamp::status::Status;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SALES: &str = "5a1e5000-0000-4000-8000-000000000001";
const ENG: &str = "e0000000-0000-4000-8000-000000000002";
const MKT: &str = "3a4b0000-0000-4000-8000-000000000003";
const QUOTED: &str = "9c000000-0000-4000-8000-000000000004";

/// Sales = {a, Eng = {b}}, Marketing = {c}, "O'Neil Team" = {a}.
fn seed_groups(fake: &FakeGraph) {
    fake.put_group(ENG, "Engineering", &["id-b"]);
    fake.put_group(SALES, "Sales", &["id-a", ENG]);
    fake.put_group(MKT, "Marketing", &["id-c"]);
    fake.put_group(QUOTED, "O'Neil Team", &["id-a"]);
}

#[tokio::test]
async fn groups_resolve_by_name_and_id_and_members_are_paged() {
    let fake = FakeGraph::start().await;
    fake.add_generated_users(7);
    let users: Vec<String> = (0..7usize)
        .map(|i| format!("{:08x}-0000-4000-8000-{:012x}", i, i))
        .collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    fake.put_group(SALES, "Sales", &refs[..5]);
    fake.put_group(MKT, "Marketing", &refs[5..]);
    fake.put_group(QUOTED, "O'Neil Team", &refs[..1]);
    fake.with(|s| s.members_page_cap = 2);
    let client = fake
        .config()
        .client(fake.clock.clone(), RetryPolicy::background())
        .unwrap();
    let metrics = Metrics::new();
    let mut g = GroupSync::new(vec![
        "sales".into(), // display names compare case-insensitively in Entra ID
        MKT.into(),
        "O'Neil Team".into(),
        "Nope".into(),
        "00000000-0000-4000-8000-0000000000ff".into(),
    ]);
    let (m, report) = g.refresh(&client, &metrics).await;
    let m = m.unwrap();
    assert_eq!(report.resolved, 3, "{report:?}");
    assert_eq!(
        report.unresolved,
        ["Nope", "00000000-0000-4000-8000-0000000000ff"]
    );
    assert_eq!(report.users, 7);
    assert_eq!(
        m.get(&users[0]),
        Some(&json!(["Sales", SALES, "O'Neil Team", QUOTED]))
    );
    assert_eq!(m.get(&users[4]), Some(&json!(["Sales", SALES])));
    assert_eq!(m.get(&users[6]), Some(&json!(["Marketing", MKT])));

    let paths: Vec<String> = fake
        .requests_of(Kind::Graph)
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert!(paths.contains(
        &"/v1.0/groups?$filter=displayName%20eq%20%27sales%27&$select=id,displayName".to_string()
    ));
    assert!(paths.contains(
        &"/v1.0/groups?$filter=displayName%20eq%20%27O%27%27Neil%20Team%27&$select=id,displayName"
            .to_string()
    ));
    assert!(paths.contains(&format!("/v1.0/groups/{MKT}?$select=id,displayName")));
    let sales_pages = paths
        .iter()
        .filter(|p| {
            p.starts_with(&format!(
                "/v1.0/groups/{SALES}/transitiveMembers/microsoft.graph.user"
            ))
        })
        .count();
    assert_eq!(sales_pages, 3, "5 members in pages of 2: {paths:?}");
    assert!(paths.contains(&format!(
        "/v1.0/groups/{SALES}/transitiveMembers/microsoft.graph.user?$select=id&$top=999"
    )));
    let text = metrics.encode();
    assert!(
        text.contains("sigstamp_group_failures_total{kind=\"unresolved\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn unreadable_groups_keep_their_last_known_members() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    seed_groups(&fake);
    let client = fake
        .config()
        .client(fake.clock.clone(), RetryPolicy::background())
        .unwrap();
    let metrics = Metrics::new();
    let mut g = GroupSync::new(vec!["Sales".into()]);
    let before = g.refresh(&client, &metrics).await.0.unwrap();
    assert_eq!(before.len(), 2, "a and b (through Engineering)");

    // GroupMember.Read.All revoked: the last-known members stay, and it is counted.
    fake.with(|s| s.group_permission_granted = false);
    let (m, report) = g.refresh(&client, &metrics).await;
    assert_eq!(report.failed, 1);
    assert_eq!(m, Some(before));
    assert!(metrics
        .encode()
        .contains("sigstamp_group_failures_total{kind=\"forbidden\"} 1"));
    // Just after a start nothing is known yet: no layer, so the cached one stays in place.
    let (m, _) = GroupSync::new(vec!["Sales".into()])
        .refresh(&client, &metrics)
        .await;
    assert_eq!(m, None);

    // Back, and Bob left Engineering: he loses memberOf. A deleted group matches no one.
    fake.with(|s| s.group_permission_granted = true);
    fake.put_group(ENG, "Engineering", &[]);
    let m = g.refresh(&client, &metrics).await.0.unwrap();
    assert_eq!(m.get("id-a"), Some(&json!(["Sales", SALES])));
    assert_eq!(m.get("id-b"), None);
    fake.remove_group(SALES);
    let (m, report) = g.refresh(&client, &metrics).await;
    assert!(m.unwrap().is_empty());
    assert_eq!(report.unresolved, ["Sales"]);
}

// ---- through the refresher --------------------------------------------------------------

struct Serving {
    app: Arc<App>,
    photos: Arc<PhotoStore>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A refresher as `sigstamp serve` runs it, with one rule: members of Sales get no signature.
fn serve(fake: &FakeGraph, dir: &std::path::Path, groups: Vec<String>) -> Serving {
    let mut cfg = fake.config();
    cfg.photos = true;
    let snapshot = dir.join("directory.json");
    let config = Config {
        graph: Some(cfg),
        directory: DirectoryConfig {
            snapshot: Some(snapshot.clone()),
            ..Default::default()
        },
        rules: vec![RuleConfig {
            name: Some("sales-group".into()),
            group: vec!["sales".into()],
            template: Some("none".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let rules = RuleSet::compile(&config.rules, &config.recipients).unwrap();
    // As `sigstamp serve` does: snapshot, group cache and photos loaded before any Graph call.
    let directory = Arc::new(Directory::new());
    let _ = snapshot::load(&snapshot, &directory);
    groups::seed(
        config.graph.as_ref(),
        config.directory.snapshot.as_deref(),
        &directory,
    );
    let photos = sigstamp::directory::graph::photos::open(
        config.graph.as_ref(),
        config.directory.snapshot.as_deref(),
    )
    .unwrap()
    .unwrap();
    let app = Arc::new(App {
        config,
        directory: directory.clone(),
        stamper: Arc::new(Stamper::new(directory, Templates::embedded()).with_rules(rules)),
        metrics: Arc::new(Metrics::new()),
        status: Arc::new(Status::default()),
        photos: photos.clone(),
        shutdown: CancellationToken::new(),
    });
    let extras = Extras {
        photos: Some(photos.clone()),
        groups,
    };
    let task = tokio::spawn(sigstamp::directory::graph::run(
        app.config.graph.clone(),
        app.sync_target(fake.clock.clone()),
        extras,
        app.shutdown.clone(),
    ));
    Serving { app, photos, task }
}

impl Serving {
    fn member_of(&self, addr: &str) -> Option<serde_json::Value> {
        self.app
            .directory
            .lookup(addr)
            .and_then(|u| u.get(MEMBER_OF).map(|v| v.to_json()))
    }

    /// The rule that chooses `addr`'s signature.
    fn rule_of(&self, addr: &str) -> Option<String> {
        self.app
            .stamper
            .preview(addr, Audience::External)
            .and_then(|p| p.rule)
    }

    async fn stop(self) {
        self.app.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("refresher stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn member_of_after_a_sync_survives_override_edits_and_restarts() {
    // A clock that moves only when told: one sync, then the refresher waits.
    let fake = FakeGraph::start_with_clock(Arc::new(ManualClock::starting_now())).await;
    seed_abc(&fake);
    seed_groups(&fake);
    fake.set_photo("id-a", "image/png", b"adele-png".to_vec());
    let tmp = tempfile::tempdir().unwrap();
    let wanted = vec!["Sales".to_string(), MKT.to_string(), "Nope".to_string()];
    let s = serve(&fake, tmp.path(), wanted.clone());

    eventually("memberOf after the first sync", || {
        s.member_of("adele@contoso.test").is_some()
    })
    .await;
    assert_eq!(
        s.member_of("adele@contoso.test"),
        Some(json!(["Sales", SALES]))
    );
    assert_eq!(
        s.member_of("bob.alias@contoso.test"),
        Some(json!(["Sales", SALES])),
        "transitive, through Engineering"
    );
    assert_eq!(
        s.member_of("cara@contoso.test"),
        Some(json!(["Marketing", MKT]))
    );
    // The rules see it: `group = "sales"` matches Adele and Bob, not Cara.
    assert_eq!(
        s.rule_of("adele@contoso.test").as_deref(),
        Some("sales-group")
    );
    assert_eq!(
        s.rule_of("bob@contoso.test").as_deref(),
        Some("sales-group")
    );
    assert_eq!(s.rule_of("cara@contoso.test"), None);
    assert!(tmp.path().join("directory.groups.json").exists());
    eventually("Adele's photo", || s.app.photos.photo("id-a").is_some()).await;
    assert_eq!(s.app.photos.photo("id-a").unwrap().bytes, b"adele-png");
    assert!(s.app.photos.photo("id-b").is_none());
    assert!(tmp.path().join("photos/id-a.bin").exists());

    // An override edit rebuilds the directory: memberOf stays.
    let mut ov = Overrides::default();
    ov.set("adele@contoso.test", "jobTitle", "Head of Sales")
        .unwrap();
    s.app.directory.set_overrides(ov);
    let adele = s.app.directory.lookup("adele@contoso.test").unwrap();
    assert_eq!(adele.str("jobTitle"), Some("Head of Sales"));
    assert_eq!(adele.get(MEMBER_OF).unwrap(), json!(["Sales", SALES]));

    // Membership changes show after the next sync (delta does not carry them).
    fake.put_group(MKT, "Marketing", &["id-c", "id-b"]);
    fake.clock.advance(Duration::from_secs(300));
    eventually("Bob in Marketing", || {
        s.member_of("bob@contoso.test") == Some(json!(["Sales", SALES, "Marketing", MKT]))
    })
    .await;
    s.stop().await;

    // Restart while group members cannot be read (GroupMember.Read.All revoked): the sync
    // works, and the cached memberOf stays instead of vanishing.
    fake.with(|s| s.group_permission_granted = false);
    fake.clear_requests();
    let s = serve(&fake, tmp.path(), wanted.clone());
    let syncs = || {
        fake.requests_of(Kind::Graph)
            .iter()
            .filter(|r| r.path_and_query.starts_with("/v1.0/users/delta"))
            .count()
    };
    eventually("the first sync", || syncs() > 0).await;
    // A second sync starts only once the first one's group refresh is over.
    eventually("a second sync", || {
        fake.clock.advance(Duration::from_secs(300));
        syncs() > 1
    })
    .await;
    assert!(s
        .app
        .metrics
        .encode()
        .contains("sigstamp_group_failures_total{kind=\"forbidden\"}"));
    assert_eq!(
        s.member_of("bob@contoso.test"),
        Some(json!(["Sales", SALES, "Marketing", MKT]))
    );
    s.stop().await;

    // Restart with Graph unreachable: memberOf and photos come from the disk.
    drop(fake);
    let fake = FakeGraph::start_with_clock(Arc::new(ManualClock::starting_now())).await;
    fake.set_secret("another-secret"); // every token request now fails (AADSTS7000215)
    let s = serve(&fake, tmp.path(), wanted);
    assert_eq!(
        s.member_of("adele@contoso.test"),
        Some(json!(["Sales", SALES]))
    );
    assert_eq!(
        s.rule_of("adele@contoso.test").as_deref(),
        Some("sales-group")
    );
    assert_eq!(s.photos.photo("id-a").unwrap().bytes, b"adele-png");
    s.stop().await;
}
