//! Self-service and editors' overrides over real HTTPS, signed in through the fake Entra ID:
//! a plain user changes only the attributes `[admin.self_service]` allows, only their own,
//! with validation; the next message through the relay carries the value; editors set,
//! remove, export and import overrides (the CSV of `sigstamp attributes`); every change is
//! in the audit log.

mod admin_site;
mod admin_support;
mod fake_graph;
mod smtp_support;
mod templates_support;

use admin_site::{signed_in, site, EDITORS_GROUP, SENDER};
use serde_json::json;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_user_edits_only_their_allowed_attributes() {
    let mut s = site().await;
    let (ada, csrf) = signed_in(&s, SENDER, "", "").await;

    // Their signature as stamped, and the form of the allowed attributes only.
    let (code, page) = s.get(&ada, "/self-service").await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("id=\"preview-html\""), "{page}");
    assert!(page.contains("Ada Lovelace"), "{page}");
    for want in ["name=\"mobilePhone\"", "name=\"pronouns\"", "Mobile phone"] {
        assert!(page.contains(want), "{want} in {page}");
    }
    assert!(!page.contains("name=\"jobTitle\""), "{page}");
    assert!(page.contains(&format!("name=\"csrf\" value=\"{csrf}\"")));

    // Saved: the page, the directory in force and the overrides file have it.
    let (code, to) = s
        .post(
            &ada,
            "/self-service",
            &[
                ("csrf", &csrf),
                ("mobilePhone", "+49 151 2345678"),
                ("pronouns", "she/her"),
            ],
        )
        .await;
    assert_eq!((code, to.as_str()), (303, "/self-service?saved=1"));
    let (_, page) = s.get(&ada, "/self-service?saved=1").await;
    assert!(page.contains("id=\"saved\""), "{page}");
    assert!(page.contains("value=\"+49 151 2345678\""), "{page}");
    assert!(page.contains("id=\"reset-mobilePhone\""), "{page}");
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&s.overrides).unwrap()).unwrap();
    assert_eq!(
        file["users"]["ada@example.com"],
        json!({"mobilePhone": "+49 151 2345678", "pronouns": "she/her"})
    );
    // The next message through the relay carries it, without waiting for a file watcher.
    let mail = s.send_message("hi").await;
    assert!(mail.contains(">+49 151 2345678</a>"), "{mail}");

    // Refused as a whole: an attribute not in the list, another user's address in any
    // form, a protected attribute, a missing CSRF token.
    let before = std::fs::read(&s.overrides).unwrap();
    for form in [
        vec![("csrf", csrf.as_str()), ("jobTitle", "CEO")],
        vec![
            ("csrf", &csrf),
            ("upn", "alan@example.com"),
            ("mobilePhone", "+1 555 0000"),
        ],
        vec![
            ("csrf", &csrf),
            ("address", "alan@example.com"),
            ("mobilePhone", "+1 555 0000"),
        ],
        vec![("csrf", &csrf), ("userPrincipalName", "alan@example.com")],
    ] {
        let (code, body) = s.post(&ada, "/self-service", &form).await;
        assert_eq!(code, 403, "{form:?}: {body}");
        assert!(body.contains("nothing was saved"), "{body}");
    }
    let (code, _) = s
        .post(
            &ada,
            "/self-service/reset",
            &[("csrf", &csrf), ("reset", "jobTitle")],
        )
        .await;
    assert_eq!(code, 403);
    let (code, _) = s
        .post(&ada, "/self-service", &[("mobilePhone", "+1 555 0000")])
        .await;
    assert_eq!(code, 403, "no CSRF token");
    assert_eq!(std::fs::read(&s.overrides).unwrap(), before);
    let alan = s.app.directory.lookup("alan@example.com").unwrap();
    assert_eq!(alan.str("mobilePhone"), None);

    // Validation: shown on the page, hostile values escaped, nothing saved.
    for (field, value, why) in [
        ("mobilePhone", "<script>alert(1)</script>", "expected form"),
        (
            "mobilePhone",
            "+49 151 2345678\r\nBcc: x@evil.test",
            "control character",
        ),
        ("pronouns", "x".repeat(21).leak() as &str, "at most 20"),
    ] {
        let (code, page) = s
            .post(&ada, "/self-service", &[("csrf", &csrf), (field, value)])
            .await;
        assert_eq!(code, 422, "{field}={value:?}: {page}");
        assert!(page.contains("id=\"invalid\""), "{page}");
        assert!(page.contains(&format!("id=\"error-{field}\"")), "{page}");
        assert!(page.contains(why), "{why} in {page}");
        assert!(!page.contains("<script>alert"), "escaped: {page}");
    }
    let (_, page) = s
        .post(
            &ada,
            "/self-service",
            &[
                ("csrf", &csrf),
                ("mobilePhone", "<script>alert(1)</script>"),
            ],
        )
        .await;
    assert!(page.contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
    assert!(page.contains("International format"), "the hint: {page}");
    assert_eq!(std::fs::read(&s.overrides).unwrap(), before);

    // Reset to the directory's value (it has none): the next message has no mobile line.
    let (code, to) = s
        .post(
            &ada,
            "/self-service/reset",
            &[("csrf", &csrf), ("reset", "mobilePhone")],
        )
        .await;
    assert_eq!(
        (code, to.as_str()),
        (303, "/self-service?reset=mobilePhone")
    );
    let mail = s.send_message("hi").await;
    assert!(!mail.contains("+49 151 2345678"), "{mail}");
    assert_eq!(
        s.app
            .directory
            .lookup("ada@example.com")
            .unwrap()
            .str("pronouns"),
        Some("she/her")
    );

    // The editors' and admins' pages are not theirs.
    for path in [
        "/overrides",
        "/overrides/user?address=alan@example.com",
        "/overrides/export.csv",
        "/audit",
        "/",
    ] {
        assert_eq!(s.get(&ada, path).await.0, 403, "{path}");
    }
    let (code, _) = s
        .post(
            &ada,
            "/overrides/set",
            &[
                ("csrf", &csrf),
                ("address", "alan@example.com"),
                ("attribute", "mobilePhone"),
                ("value", "1"),
            ],
        )
        .await;
    assert_eq!(code, 403);
    let (code, _) = s
        .post(
            &ada,
            "/overrides/import",
            &[("csrf", &csrf), ("csv", "alan@example.com,x,1")],
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        s.app
            .directory
            .lookup("alan@example.com")
            .unwrap()
            .str("mobilePhone"),
        None
    );

    // Audited: who, what, before and after.
    let edits: Vec<_> = s
        .audit_entries()
        .into_iter()
        .filter(|e| e.action.starts_with("self_service"))
        .collect();
    assert_eq!(edits.len(), 2, "{edits:?}");
    assert_eq!(edits[0].who, "ada@example.com");
    assert_eq!(edits[0].action, "self_service_set");
    assert_eq!(edits[0].target, "ada@example.com");
    assert_eq!(
        edits[0].before,
        json!({"mobilePhone": null, "pronouns": null})
    );
    assert_eq!(
        edits[0].after,
        json!({"mobilePhone": "+49 151 2345678", "pronouns": "she/her"})
    );
    assert_eq!(edits[1].action, "self_service_reset");
    assert_eq!(edits[1].before, json!({"mobilePhone": "+49 151 2345678"}));
    assert_eq!(edits[1].after, json!({"mobilePhone": null}));

    // No change goes unaudited: when the audit log cannot be written, the edit is undone.
    let file = std::fs::read(&s.overrides).unwrap();
    let audit = s.audit.clone();
    std::fs::rename(&audit, audit.with_extension("old")).unwrap();
    std::fs::create_dir(&audit).unwrap();
    let (code, page) = s
        .post(
            &ada,
            "/self-service",
            &[("csrf", &csrf), ("pronouns", "they/them")],
        )
        .await;
    assert_eq!(code, 500, "{page}");
    assert!(page.contains("the change was undone"), "{page}");
    assert_eq!(std::fs::read(&s.overrides).unwrap(), file);
    assert_eq!(
        s.app.directory.lookup(SENDER).unwrap().str("pronouns"),
        Some("she/her")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_sets_overrides_and_csv_round_trips() {
    let mut s = site().await;
    let (alan, csrf) = signed_in(&s, "alan@example.com", EDITORS_GROUP, "").await;

    let (code, page) = s.get(&alan, "/overrides?q=lovelace").await;
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("href=\"/overrides/user?address=ada@example.com\""),
        "{page}"
    );
    let (code, page) = s
        .get(&alan, "/overrides/user?address=ADA@example.com")
        .await;
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("jobTitle") && page.contains("Engineer"),
        "{page}"
    );

    // Any attribute, hostile value shown escaped; the relay stamps it at once.
    let (code, to) = s
        .post(
            &alan,
            "/overrides/set",
            &[
                ("csrf", &csrf),
                ("address", "ada@example.com"),
                ("attribute", "jobTitle"),
                ("value", "Chief <b>Engineer</b>, R&D"),
            ],
        )
        .await;
    assert_eq!(code, 303, "{to}");
    let (_, page) = s.get(&alan, &to).await;
    assert!(
        page.contains("Chief &lt;b&gt;Engineer&lt;/b&gt;, R&amp;D"),
        "{page}"
    );
    let mail = s.send_message("hi").await;
    // Escaped in the stamped HTML, as every directory value is.
    assert!(
        mail.contains("Chief &lt;b&gt;Engineer&lt;/b&gt;, R&amp;D"),
        "{mail}"
    );
    // Refused: a protected attribute, a control character, an over-long value.
    let long = "x".repeat(1025);
    for (attribute, value) in [
        ("mail", "eve@evil.test"),
        ("jobTitle", "a\u{0}b"),
        ("jobTitle", long.as_str()),
    ] {
        let (code, page) = s
            .post(
                &alan,
                "/overrides/set",
                &[
                    ("csrf", &csrf),
                    ("address", "ada@example.com"),
                    ("attribute", attribute),
                    ("value", value),
                ],
            )
            .await;
        assert_eq!(code, 422, "{attribute}: {page}");
        assert!(page.contains("id=\"invalid\""), "{page}");
    }

    // Import: quoting, an alias address, a blank value that removes; all or nothing.
    let csv = "address,attribute,value\r\n\
               ada@example.com,jobTitle,\r\n\
               a.turing@example.com,mobilePhone,\"+44 20, ext. 7\"\r\n\
               alan@example.com,pronouns,\"he/\"\"him\"\"\"\r\n";
    let (code, to) = s
        .post(&alan, "/overrides/import", &[("csrf", &csrf), ("csv", csv)])
        .await;
    assert_eq!(code, 303, "{to}");
    let (_, page) = s.get(&alan, &to).await;
    assert!(page.contains("3 rows, 3 values changed"), "{page}");
    let turing = s.app.directory.lookup("alan@example.com").unwrap();
    assert_eq!(turing.str("mobilePhone"), Some("+44 20, ext. 7"));
    assert_eq!(
        s.app
            .directory
            .lookup("ada@example.com")
            .unwrap()
            .str("jobTitle"),
        Some("Engineer")
    );
    for bad in [
        "ada@example.com,jobTitle,ok\nnot-an-address,jobTitle,x\n",
        "ada@example.com,jobTitle,ok\nada@example.com,pronouns,\"a\nb\"\n",
        "ada@example.com,mail,x@y.z\n",
    ] {
        let (code, page) = s
            .post(&alan, "/overrides/import", &[("csrf", &csrf), ("csv", bad)])
            .await;
        assert_eq!(code, 422, "{bad}: {page}");
        assert!(page.contains("Nothing was imported"), "{page}");
    }
    assert_eq!(
        s.app
            .directory
            .lookup("ada@example.com")
            .unwrap()
            .str("jobTitle"),
        Some("Engineer")
    );

    // Export: what `sigstamp attributes list` prints for the same file, and it imports
    // back to the same overrides (nothing changes, nothing is audited).
    let r = alan
        .get(format!("{}/overrides/export.csv", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let exported = r.text().await.unwrap();
    let cli = Command::new(env!("CARGO_BIN_EXE_sigstamp"))
        .args(["attributes", "--overrides"])
        .arg(&s.overrides)
        .arg("list")
        .output()
        .unwrap();
    assert!(cli.status.success());
    assert_eq!(exported, String::from_utf8(cli.stdout).unwrap());
    assert_eq!(
        exported,
        "address,attribute,value\n\
         a.turing@example.com,mobilePhone,\"+44 20, ext. 7\"\n\
         alan@example.com,pronouns,\"he/\"\"him\"\"\"\n"
    );
    let audited = s.audit_entries().len();
    let file = std::fs::read(&s.overrides).unwrap();
    let (code, _) = s
        .post(
            &alan,
            "/overrides/import",
            &[("csrf", &csrf), ("csv", &exported)],
        )
        .await;
    assert_eq!(code, 303);
    assert_eq!(std::fs::read(&s.overrides).unwrap(), file);
    assert_eq!(s.audit_entries().len(), audited);

    // Remove one override from the user's page.
    let (code, _) = s
        .post(
            &alan,
            "/overrides/unset",
            &[
                ("csrf", &csrf),
                ("address", "alan@example.com"),
                ("attribute", "mobilePhone"),
            ],
        )
        .await;
    assert_eq!(code, 303);
    assert_eq!(
        s.app
            .directory
            .lookup("a.turing@example.com")
            .unwrap()
            .str("mobilePhone"),
        None
    );

    let entries = s.audit_entries();
    let edits: Vec<(&str, &str, &str)> = entries
        .iter()
        .filter(|e| e.who == "alan@example.com" && e.action != "sign_in")
        .map(|e| (e.action.as_str(), e.target.as_str(), e.who.as_str()))
        .collect();
    assert_eq!(
        edits,
        [
            ("override_set", "ada@example.com", "alan@example.com"),
            ("overrides_import", "3 rows", "alan@example.com"),
            ("override_unset", "alan@example.com", "alan@example.com"),
        ]
    );
    let import = entries
        .iter()
        .find(|e| e.action == "overrides_import")
        .unwrap();
    assert_eq!(
        import.before,
        json!({
            "ada@example.com jobTitle": "Chief <b>Engineer</b>, R&D",
            "a.turing@example.com mobilePhone": null,
            "alan@example.com pronouns": null
        })
    );
    assert_eq!(
        import.after,
        json!({
            "ada@example.com jobTitle": null,
            "a.turing@example.com mobilePhone": "+44 20, ext. 7",
            "alan@example.com pronouns": "he/\"him\""
        })
    );
    let unset = entries
        .iter()
        .rfind(|e| e.action == "override_unset")
        .unwrap();
    assert_eq!(unset.before, json!({"mobilePhone": "+44 20, ext. 7"}));
    assert_eq!(unset.after, json!({"mobilePhone": null}));
}

/// A bad `[admin.self_service]` stops `sigstamp serve` naming the key.
#[test]
fn bad_self_service_config_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigstamp.toml");
    let cases = [
        (
            "[directory]\noverrides = \"o.json\"\n[admin.self_service]\nattributes = [\"mobilePhone\"]\n\
             [admin.self_service.field.mobilePhone]\npattern = \"[0-9\"\n",
            "admin.self_service.field.mobilePhone.pattern",
        ),
        (
            "[directory]\noverrides = \"o.json\"\n[admin.self_service]\nattributes = [\"mail\"]\n",
            "admin.self_service.attributes",
        ),
        (
            "[admin.self_service]\nattributes = [\"pronouns\"]\n",
            "admin.self_service",
        ),
    ];
    for (text, key) in cases {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sigstamp"))
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("`{key}`")), "{key} in {err}");
    }
}
