//! The status page end to end in a real browser: the real `sigstamp serve` syncs from the
//! fake Entra ID + Graph on loopback, and headless Chromium (Debian's `chromium`) loads the
//! page. It shows the users, turns into the red banner with the AADSTS code once the fake's
//! secret expires and the refresher notices, and previews a user's rendered signature.
//!
//! Chromium may reach loopback only: its resolver maps every name to nothing, everything
//! that is not loopback goes to a closed proxy port, and the page loads nothing external.

mod cdp_support;
mod fake_graph;
mod serve_support;

use cdp_support::{assert_loopback_only, chromium, isolated_args, NET_LOG};
use fake_graph::{seed_abc, FakeGraph, CLIENT_ID, SECRET, TENANT};
use serde_json::Value;
use serve_support::Guard;
use sigstamp::directory::graph::clock::Clock;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A bound on each Chromium run; a normal `--dump-dom` takes about a second.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(30);

/// The DOM of `url` after load, as headless Chromium serialises it.
async fn dump_dom(chromium: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(chromium)
        .args(isolated_args(profile.path()))
        .arg("--dump-dom")
        .arg(url)
        .env("HOME", profile.path())
        .env("XDG_CONFIG_HOME", profile.path())
        .env("XDG_CACHE_HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    // On timeout the child is dropped, which kills it.
    let out = tokio::time::timeout(CHROMIUM_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not finish within {CHROMIUM_LIMIT:?}: {url}"))
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    // Without a D-Bus (containers, CI) Chromium logs a screenful about it: noise.
    let stderr: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap_or("")
        .lines()
        .filter(|l| !l.contains("dbus"))
        .collect();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed on {url} ({}): stdout {dom}\nstderr {}",
        out.status,
        stderr.join("\n")
    );
    assert_loopback_only(&profile.path().join(NET_LOG));
    dom
}

/// Start `sigstamp serve` with `config`; returns the admin base URL from its log.
fn serve(config: &str, dir: &Path) -> (Guard, String) {
    let (guard, addr, _log) =
        serve_support::serve(config, dir.to_path_buf(), "admin HTTP listening", "addr");
    (guard, format!("http://{addr}"))
}

/// Poll `/status` until `f` accepts it, for at most `limit`.
async fn status_until(base: &str, limit: Duration, what: &str, f: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + limit;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{base}/status")).await {
            if let Ok(v) = r.json::<Value>().await {
                if f(&v) {
                    return;
                }
                last = v;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}; last /status: {last}");
}

/// The value of attribute `name` on the element with `id`, as Chromium serialised it.
fn attr<'a>(dom: &'a str, id: &str, name: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in {dom}"));
    let tag_start = dom[..at].rfind('<').unwrap();
    let tag = &dom[tag_start..];
    let tag = &tag[..tag.find('>').unwrap()];
    let key = format!(" {name}=\"");
    let v = &tag[tag
        .find(&key)
        .unwrap_or_else(|| panic!("{name} on #{id}: {tag}"))
        + key.len()..];
    &v[..v.find('"').unwrap()]
}

/// The element with `id`, from its id attribute up to `end`.
fn element<'a>(dom: &'a str, id: &str, end: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in {dom}"));
    let rest = &dom[at..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The text inside the element with `id` (up to its first child's end tag is enough here).
fn inner<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in {dom}"));
    let rest = &dom[at..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    &rest[..rest.find("</").unwrap()]
}

/// A real 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// The shipped default template, the example ones (`short`, `sales`), and `branded`: the
/// default with an inline logo (`images/logo.png`).
fn templates(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("templates");
    std::fs::create_dir_all(out.join("images")).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for src in [root.join("templates"), root.join("examples/templates")] {
        for entry in std::fs::read_dir(src).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, out.join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    let html = std::fs::read_to_string(out.join("default.html.hbs")).unwrap();
    let logo = "<img src=\"{{image \"logo.png\"}}\" width=\"1\" height=\"1\" alt=\"Contoso\">\n";
    std::fs::write(out.join("branded.html.hbs"), html + logo).unwrap();
    std::fs::copy(out.join("default.txt.hbs"), out.join("branded.txt.hbs")).unwrap();
    std::fs::write(out.join("images/logo.png"), PNG).unwrap();
    out
}

/// Colleagues get the short signature; engineers writing outside get the branded one.
const RULES: &str = r#"
[recipients]
internal_domains = ["contoso.test"]

[[rules]]
name = "Colleagues"
recipients = "internal"
template = "short"

[[rules]]
name = "Engineers"
attribute = { jobTitle = "Engineer" }
template = "branded"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        return;
    };
    let fake = FakeGraph::start().await;
    // The fake's clock only moves when told (tokens die when it jumps).
    fake.clock.set_auto_advance(false);
    seed_abc(&fake);
    fake.update_user("id-a", serde_json::json!({"mobilePhone": "+1 555 0199"}));

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"127.0.0.1:9\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [templates]\ndir = {templates:?}\n\n\
         [graph]\ntenant_id = {TENANT:?}\nclient_id = {CLIENT_ID:?}\nclient_secret = {SECRET:?}\n\
         authority = {base:?}\nendpoint = {base:?}\nsync_interval = \"1s\"\nrequest_timeout = \"5s\"\n\
         {RULES}",
        base = fake.base,
        templates = templates(dir.path()),
    );
    let (_serve, base) = serve(&config, dir.path());
    status_until(&base, Duration::from_secs(15), "the first sync", |s| {
        s["token"]["state"] == "valid" && s["directory"]["users"] == 3
    })
    .await;

    // Two Chromium runs in all keep the test short; each page carries the banner, the
    // directory, the rules and a preview.
    //
    // 1. Green: the users, the rules, and the signature Adele's colleagues get, rendered from
    // the directory in the sandboxed frame (Chromium serialises the frame's document as its
    // srcdoc attribute) and as text, with the rule that chose it.
    let dom = dump_dom(
        &chromium,
        &format!("{base}/?q=ADELE%40contoso.test&audience=internal"),
    )
    .await;
    assert!(dom.contains("<title>sigstamp status</title>"), "{dom}");
    assert_eq!(inner(&dom, "users"), "3", "{dom}");
    assert_eq!(inner(&dom, "source"), "graph", "{dom}");
    assert_eq!(attr(&dom, "token", "data-state"), "valid", "{dom}");
    assert!(!dom.contains("AADSTS"), "{dom}");
    let rules = element(&dom, "rules-table", "</table>");
    for want in [
        "Colleagues</th><td>every sender · internal recipients → template short</td>",
        "Engineers</th><td>jobTitle = Engineer → template branded</td>",
    ] {
        assert!(rules.contains(want), "{want} in {rules}");
    }
    assert!(
        inner(&dom, "preview-user").starts_with("Adele Vance &lt;adele@contoso.test&gt;"),
        "{dom}"
    );
    assert_eq!(inner(&dom, "preview-audience"), "internal", "{dom}");
    assert!(
        inner(&dom, "preview-rule").starts_with("Colleagues "),
        "{dom}"
    );
    assert!(
        element(&dom, "preview-template", "</dd>").contains("<code>short</code>"),
        "{dom}"
    );
    let frame = attr(&dom, "preview-html", "srcdoc");
    assert!(
        frame.contains("Adele Vance &amp;middot; +1 555 0101"),
        "the short HTML signature: {frame}"
    );
    assert_eq!(attr(&dom, "preview-html", "sandbox"), "", "{dom}");
    assert_eq!(
        inner(&dom, "preview-text"),
        "-- \nAdele Vance | +1 555 0101\n",
        "{dom}"
    );

    // The secret expires; once the cached access token dies too, the refresher asks for a
    // new one and hears AADSTS7000222.
    fake.expire_secret_at(fake.clock.now());
    fake.clock.advance(Duration::from_secs(2 * 3600));
    status_until(&base, Duration::from_secs(15), "the expired state", |s| {
        s["token"]["state"] == "expired"
    })
    .await;
    // 2. Red: the banner with the code, since when and what to do, and the signature that
    // goes outside meanwhile (the directory's last-known values).
    let dom = dump_dom(&chromium, &format!("{base}/?q=adele%40contoso.test")).await;
    assert!(dom.contains("<title>sigstamp status</title>"), "{dom}");
    assert_eq!(attr(&dom, "token", "data-state"), "expired", "{dom}");
    assert_eq!(attr(&dom, "token", "class"), "banner expired", "{dom}");
    assert_eq!(attr(&dom, "token", "role"), "alert", "{dom}");
    assert!(
        inner(&dom, "token-title").contains("Microsoft Graph token expired: AADSTS7000222"),
        "{dom}"
    );
    let since = element(&dom, "token-since", "</dd>");
    assert!(
        since.contains("<time datetime=\""),
        "since when, absolute: {since}"
    );
    assert!(
        since.contains("(just now)") || since.contains(" min ago)"),
        "since when, relative: {since}"
    );
    let action = element(&dom, "token-action", "</dd>");
    assert!(action.contains("new client secret"), "{action}");
    assert!(
        action.contains("<code>graph.client_secret</code>"),
        "{action}"
    );
    // Mail keeps flowing with the last-known directory: the count is unchanged.
    assert_eq!(inner(&dom, "users"), "3", "{dom}");
    assert_eq!(inner(&dom, "preview-audience"), "external", "{dom}");
    assert!(
        inner(&dom, "preview-rule").starts_with("Engineers "),
        "{dom}"
    );
    let frame = attr(&dom, "preview-html", "srcdoc");
    for want in [
        "Adele Vance",
        "+1 555 0101",
        "+1 555 0199",
        "mailto:adele@contoso.test",
        "&lt;table",
        // The inline logo, as the data: URI the frame can show without a request.
        "src=&quot;data:image/png;base64,iVBORw0KGgo",
    ] {
        assert!(frame.contains(want), "{want} in the HTML preview: {frame}");
    }
    assert!(!frame.contains("cid:"), "{frame}");
    assert!(
        element(&dom, "preview-images", "</p>")
            .contains("<code>logo.png</code> (image/png, 70 bytes)"),
        "{dom}"
    );
    let text = inner(&dom, "preview-text");
    assert!(
        text.starts_with("-- \nAdele Vance\nEngineer\nT +1 555 0101\nM +1 555 0199\n"),
        "text preview: {text:?}"
    );
}
