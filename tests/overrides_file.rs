//! Attribute overrides: layering over the source, surviving a source refresh, the file
//! (atomic save, load), CSV import edge cases, and the live watcher.

use serde_json::{json, Value};
use sigstamp::directory::overrides::{self, CsvRow, Overrides, OverridesError};
use sigstamp::directory::{Directory, Source, User};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn user(v: Value) -> User {
    User::new(v.as_object().unwrap().clone())
}

fn jose(job: &str) -> User {
    user(json!({
        "displayName": "José Müller",
        "jobTitle": job,
        "mobilePhone": "+49 151 1",
        "mail": "jose.mueller@contoso.example",
        "userPrincipalName": "jmueller@contoso.example",
        "proxyAddresses": ["SMTP:jose.mueller@contoso.example", "smtp:j.m@contoso.example"],
    }))
}

fn directory() -> Directory {
    let d = Directory::new();
    d.replace_users(vec![jose("Head of Sales")], Source::Graph);
    d
}

fn attr(d: &Directory, addr: &str, key: &str) -> Option<Value> {
    d.lookup(addr).unwrap().get(key).map(|v| v.to_json())
}

#[test]
fn overrides_layer_over_the_source_and_survive_a_refresh() {
    let d = directory();
    let mut ov = Overrides::default();
    // Set under an alias, in another case: applies to the user whatever address finds it.
    ov.set("J.M@Contoso.example", "mobilePhone", "+49 151 999")
        .unwrap();
    ov.set("jose.mueller@contoso.example", "pronouns", "he/him")
        .unwrap();
    ov.set("jose.mueller@contoso.example", "businessPhones", "+49 30 1")
        .unwrap();
    d.set_overrides(ov.clone());
    for a in ["jose.mueller@contoso.example", "JMUELLER@contoso.example"] {
        assert_eq!(attr(&d, a, "mobilePhone"), Some(json!("+49 151 999")));
        assert_eq!(attr(&d, a, "pronouns"), Some(json!("he/him")));
        assert_eq!(attr(&d, a, "businessPhones"), Some(json!(["+49 30 1"])));
    }
    // The source's own values are untouched.
    assert_eq!(
        d.base_users()[0].str("mobilePhone"),
        Some("+49 151 1"),
        "base users keep the source's values"
    );

    // A sync replaces the base users: overrides stay, new source values show through.
    d.replace_users(vec![jose("Sales Director")], Source::Graph);
    assert_eq!(
        attr(&d, "j.m@contoso.example", "jobTitle"),
        Some(json!("Sales Director"))
    );
    assert_eq!(
        attr(&d, "j.m@contoso.example", "mobilePhone"),
        Some(json!("+49 151 999"))
    );

    // Unset: the source's value applies again.
    assert!(ov.unset("j.m@contoso.example", "mobilePhone").unwrap());
    assert!(!ov.unset("j.m@contoso.example", "mobilePhone").unwrap());
    d.set_overrides(ov);
    assert_eq!(
        attr(&d, "j.m@contoso.example", "mobilePhone"),
        Some(json!("+49 151 1"))
    );
    assert_eq!(
        attr(&d, "j.m@contoso.example", "pronouns"),
        Some(json!("he/him"))
    );
}

#[test]
fn null_hides_and_identity_cannot_be_overridden() {
    let d = directory();
    let mut ov = Overrides::default();
    ov.by_address.insert(
        "jose.mueller@contoso.example".into(),
        [
            ("mobilePhone".to_string(), Value::Null),
            ("mail".to_string(), json!("evil@elsewhere.example")),
        ]
        .into_iter()
        .collect(),
    );
    d.set_overrides(ov);
    assert_eq!(
        attr(&d, "jose.mueller@contoso.example", "mobilePhone"),
        None
    );
    assert!(d.lookup("evil@elsewhere.example").is_none());
    assert_eq!(
        attr(&d, "jose.mueller@contoso.example", "mail"),
        Some(json!("jose.mueller@contoso.example"))
    );

    let mut ov = Overrides::default();
    for bad in [
        "mail",
        "userPrincipalName",
        "proxyAddresses",
        "id",
        "",
        "1x",
        "a b",
        "a.b",
    ] {
        assert!(ov.set("a@b.example", bad, "x").is_err(), "{bad:?} accepted");
    }
    assert!(ov.set("not-an-address", "jobTitle", "x").is_err());
    assert!(ov.is_empty());
}

#[test]
fn the_mail_address_wins_over_aliases() {
    let d = directory();
    let mut ov = Overrides::default();
    ov.set("j.m@contoso.example", "jobTitle", "from alias")
        .unwrap();
    ov.set("jose.mueller@contoso.example", "jobTitle", "from mail")
        .unwrap();
    d.set_overrides(ov);
    assert_eq!(
        attr(&d, "j.m@contoso.example", "jobTitle"),
        Some(json!("from mail"))
    );
}

#[test]
fn save_and_load_round_trip_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/overrides.json");
    assert_eq!(overrides::load(&path).unwrap(), Overrides::default());

    let mut ov = Overrides::default();
    ov.set("Jose.Mueller@contoso.example", "pronouns", "he/him")
        .unwrap();
    ov.set("zoe@contoso.example", "jobTitle", "Zoë \"Z\" O'Brien, CSM")
        .unwrap();
    overrides::save(&path, &ov).unwrap();
    assert_eq!(overrides::load(&path).unwrap(), ov);
    // Only the file itself is left behind: the temp file was renamed into place.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["overrides.json"]);

    // Hand-written files: keys in any case, null values.
    std::fs::write(
        &path,
        r#"{"users": {"ZOE@Contoso.example": {"mobilePhone": null, "team": "Blue"}}}"#,
    )
    .unwrap();
    let ov = overrides::load(&path).unwrap();
    assert_eq!(
        ov.by_address["zoe@contoso.example"]["mobilePhone"],
        Value::Null
    );

    std::fs::write(&path, r#"{"users": {"#).unwrap();
    assert!(matches!(
        overrides::load(&path),
        Err(OverridesError::Json { .. })
    ));
    std::fs::write(&path, r#"{"user": {}}"#).unwrap();
    assert!(
        overrides::load(&path).is_err(),
        "a misspelt key is an error"
    );
}

/// (line, address, attribute, value)
type Row = (usize, String, String, Option<String>);

fn csv(text: &str) -> Result<Vec<Row>, String> {
    overrides::parse_csv(text)
        .map(|rows| {
            rows.into_iter()
                .map(
                    |CsvRow {
                         line,
                         address,
                         attribute,
                         value,
                     }| (line, address, attribute, value),
                )
                .collect()
        })
        .map_err(|e| e.to_string())
}

fn row(line: usize, a: &str, k: &str, v: Option<&str>) -> Row {
    (line, a.into(), k.into(), v.map(Into::into))
}

#[test]
fn csv_quoting_header_bom_and_blank_values() {
    let text = "\u{feff}Address,Attribute,Value\r\n\
                a@x.example,jobTitle,Head of Sales\r\n\
                \r\n\
                b@x.example , department ,  \"Sales, EMEA\"  \r\n\
                b@x.example,motto,\"say \"\"hi\"\"\"\r\n\
                c@x.example,streetAddress,\"Line 1\r\nLine 2\"\r\n\
                c@x.example,mobilePhone,\r\n\
                c@x.example,faxNumber,\"\"\n\
                d@x.example,note,\"\"\"quoted\"\", plain\"";
    assert_eq!(
        csv(text).unwrap(),
        [
            row(2, "a@x.example", "jobTitle", Some("Head of Sales")),
            row(4, "b@x.example", "department", Some("Sales, EMEA")),
            row(5, "b@x.example", "motto", Some("say \"hi\"")),
            row(6, "c@x.example", "streetAddress", Some("Line 1\nLine 2")),
            row(8, "c@x.example", "mobilePhone", None),
            row(9, "c@x.example", "faxNumber", None),
            row(10, "d@x.example", "note", Some("\"quoted\", plain")),
        ]
    );
    // Blank lines (LF and CRLF) keep the line numbers right.
    assert_eq!(
        csv("\n\na@x.example,jobTitle,x\n\n\r\nb@x.example,team,\n").unwrap(),
        [
            row(3, "a@x.example", "jobTitle", Some("x")),
            row(6, "b@x.example", "team", None),
        ]
    );
    // No header is fine too, and so is an empty file.
    assert_eq!(csv("a@x.example,jobTitle,CEO\n").unwrap().len(), 1);
    assert!(csv("").unwrap().is_empty());
}

#[test]
fn csv_errors_name_the_line() {
    for (text, line, what) in [
        ("a@x.example,jobTitle\n", 1, "3 fields"),
        (
            "address,attribute,value\na@x.example,jobTitle,CEO,extra\n",
            2,
            "3 fields",
        ),
        (
            "a@x.example,jobTitle,ok\nb@x.example,note,\"open\nstill open\n",
            2,
            "unterminated",
        ),
        ("a@x.example,note,\"x\"y\n", 1, "closing quote"),
        (
            "a@x.example,jobTitle,x\nnobody,jobTitle,x\n",
            2,
            "not an email address",
        ),
        ("a@x.example,mail,x@y.example\n", 1, "cannot be overridden"),
        ("email,attr,val\n", 1, "not an email address"),
    ] {
        let err = csv(text).expect_err(text);
        assert!(
            err.starts_with(&format!("line {line}: ")),
            "{text:?}: {err}"
        );
        assert!(err.contains(what), "{text:?}: {err}");
    }
}

#[test]
fn import_applies_rows_in_order_and_blank_unsets() {
    let mut ov = Overrides::default();
    ov.set("a@x.example", "mobilePhone", "1").unwrap();
    let rows = overrides::parse_csv(
        "a@x.example,jobTitle,First\na@x.example,jobTitle,Second\na@x.example,mobilePhone,\n",
    )
    .unwrap();
    let summary = ov.import(&rows).unwrap();
    assert_eq!((summary.set, summary.unset), (2, 1));
    assert_eq!(
        ov.entries(),
        [("a@x.example", "jobTitle", &json!("Second"))]
    );
}

/// Poll until `cond` holds, for at most 10 s (the watcher polls every 500 ms).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn watcher_applies_changes_live_and_keeps_the_last_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overrides.json");
    let mut ov = Overrides::default();
    ov.set("jose.mueller@contoso.example", "pronouns", "he/him")
        .unwrap();
    overrides::save(&path, &ov).unwrap();

    let d = Arc::new(directory());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(overrides::watch(path.clone(), d.clone(), cancel.clone()));
    let pronouns = |d: &Directory| attr(d, "j.m@contoso.example", "pronouns");

    eventually("initial load", || pronouns(&d) == Some(json!("he/him"))).await;

    ov.set("jose.mueller@contoso.example", "pronouns", "they/them")
        .unwrap();
    overrides::save(&path, &ov).unwrap();
    eventually("change applied", || {
        pronouns(&d) == Some(json!("they/them"))
    })
    .await;

    // A sync in between keeps the overrides.
    d.replace_users(vec![jose("Sales Director")], Source::Graph);
    assert_eq!(pronouns(&d), Some(json!("they/them")));

    // A broken hand edit is ignored; the next good version applies.
    std::fs::write(&path, "{ not json").unwrap();
    ov.set("jose.mueller@contoso.example", "pronouns", "she/her")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        pronouns(&d),
        Some(json!("they/them")),
        "broken file kept the last good"
    );
    overrides::save(&path, &ov).unwrap();
    eventually("good file after a broken one", || {
        pronouns(&d) == Some(json!("she/her"))
    })
    .await;

    // Deleting the file removes the overrides.
    std::fs::remove_file(&path).unwrap();
    eventually("file removed", || pronouns(&d).is_none()).await;

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("watcher stops when cancelled")
        .unwrap();
}

#[test]
fn custom_attributes_reach_the_templates() {
    let d = directory();
    let mut ov = Overrides::default();
    ov.set("j.m@contoso.example", "pronouns", "he/him").unwrap();
    ov.set("j.m@contoso.example", "jobTitle", "Sales & Marketing")
        .unwrap();
    d.set_overrides(ov);
    let tpl = tempfile::tempdir().unwrap();
    let body = "{{displayName}}{{#if pronouns}} ({{pronouns}}){{/if}}, {{jobTitle}}";
    std::fs::write(tpl.path().join("default.html.hbs"), body).unwrap();
    std::fs::write(tpl.path().join("default.txt.hbs"), body).unwrap();
    let t = sigstamp::render::Templates::load(tpl.path()).unwrap();
    let sig = t
        .render(
            "default",
            &d.lookup("jose.mueller@contoso.example").unwrap(),
        )
        .unwrap();
    assert_eq!(sig.html, "José Müller (he/him), Sales &amp; Marketing");
    assert_eq!(sig.text, "José Müller (he/him), Sales & Marketing\n");
}
