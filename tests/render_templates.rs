//! Templates: escaping, missing attributes, arrays, load errors with file:line, and the
//! shipped default rendering every example user.

use serde_json::{json, Value};
use sigstamp::directory::{file, User};
use sigstamp::render::{RenderError, Templates};
use std::path::Path;

fn user(v: Value) -> User {
    User::new(v.as_object().expect("an object").clone())
}

/// A template folder holding `default` with the given halves.
fn dir_with(html: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.html.hbs"), html).unwrap();
    std::fs::write(dir.path().join("default.txt.hbs"), text).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match Templates::load(dir) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn html_is_escaped_and_text_is_not() {
    let dir = dir_with("<b>{{displayName}}</b>", "{{displayName}}");
    let t = Templates::load(dir.path()).unwrap();
    let sig = t
        .render(
            "default",
            &user(json!({"displayName": r#"<i>"A&B" O'Neil</i>"#})),
        )
        .unwrap();
    assert_eq!(
        sig.html,
        "<b>&lt;i&gt;&quot;A&amp;B&quot; O&#x27;Neil&lt;/i&gt;</b>"
    );
    assert_eq!(sig.text, "<i>\"A&B\" O'Neil</i>\n");
}

#[test]
fn missing_attributes_are_easy_to_leave_out() {
    let html =
        "<p>{{displayName}}</p>{{#if mobilePhone}}<p>M {{mobilePhone}}</p>{{/if}}[{{faxNumber}}]";
    let text =
        "{{displayName}}\n{{#if mobilePhone}}\nM {{mobilePhone}}\n{{/if}}\n[{{faxNumber}}]\n";
    let dir = dir_with(html, text);
    let t = Templates::load(dir.path()).unwrap();

    let without = t
        .render(
            "default",
            &user(json!({"displayName": "Ann", "mobilePhone": null})),
        )
        .unwrap();
    assert_eq!(without.html, "<p>Ann</p>[]");
    assert_eq!(without.text, "Ann\n[]\n");

    let with = t
        .render(
            "default",
            &user(json!({"displayName": "Ann", "mobilePhone": "+1 555"})),
        )
        .unwrap();
    assert_eq!(with.html, "<p>Ann</p><p>M +1 555</p>[]");
    assert_eq!(with.text, "Ann\nM +1 555\n[]\n");
}

#[test]
fn arrays_and_helpers() {
    let tpl = "{{#each businessPhones}}<{{this}}>{{/each}}|{{first businessPhones}}|\
               {{join businessPhones mobilePhone sep=\"; \"}}|{{tel mobilePhone}}|\
               {{join postalCode city sep=\" \"}}|{{first mail}}";
    let dir = dir_with(tpl, tpl);
    let t = Templates::load(dir.path()).unwrap();
    let u = user(json!({
        "businessPhones": ["+49 30 1234-0", "+49 30 1234-9"],
        "mobilePhone": "+49 (151) 234 567",
        "city": "Berlin",
        "mail": "a@b.example",
    }));
    let sig = t.render("default", &u).unwrap();
    assert_eq!(
        sig.text,
        "<+49 30 1234-0><+49 30 1234-9>|+49 30 1234-0|+49 30 1234-0; +49 30 1234-9; \
         +49 (151) 234 567|+49151234567|Berlin|a@b.example\n"
    );
    // Empty and absent arrays render nothing and are falsy.
    let t2 = Templates::load(
        dir_with(
            "{{#if (first businessPhones)}}T{{/if}}{{#each businessPhones}}x{{/each}}[{{first businessPhones}}]",
            "-",
        )
        .path(),
    )
    .unwrap();
    for u in [json!({"businessPhones": []}), json!({})] {
        assert_eq!(t2.render("default", &user(u)).unwrap().html, "[]");
    }
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = dir_with(
        "<table>\n<tr>\n<td>{{displayName}}</td>\n{{#if mail}}\n{{mail}}\n{{/each}}\n</tr>\n",
        "{{displayName}}\n",
    );
    let err = load_err(dir.path());
    let file = dir.path().join("default.html.hbs").display().to_string();
    assert!(err.starts_with(&format!("{file}:6: ")), "{err}");

    let dir = dir_with("{{displayName}}", "-- \n{{displayName}}\n{{mail}\n");
    let err = load_err(dir.path());
    let file = dir.path().join("default.txt.hbs").display().to_string();
    assert!(err.starts_with(&format!("{file}:3: ")), "{err}");
}

#[test]
fn unknown_helper_is_reported_at_load_with_file_and_line() {
    let dir = dir_with("<p>\n{{#if jobTitle}}{{shout jobTitle}}{{/if}}</p>", "x");
    let err = load_err(dir.path());
    let file = dir.path().join("default.html.hbs").display().to_string();
    assert!(err.starts_with(&format!("{file}:2: ")), "{err}");
    assert!(err.contains("shout"), "{err}");
}

#[test]
fn pairs_are_required() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sales.html.hbs"), "x").unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("sales.txt.hbs"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("README.md"), "not a template").unwrap();
    assert!(matches!(
        Templates::load(empty.path()),
        Err(RenderError::Empty(_))
    ));

    let missing = load_err(&empty.path().join("nope"));
    assert!(missing.contains("nope"), "{missing}");
}

#[test]
fn several_templates_and_names() {
    let dir = dir_with("D {{displayName}}", "d");
    std::fs::write(dir.path().join("sales.html.hbs"), "S {{displayName}}").unwrap();
    std::fs::write(dir.path().join("sales.txt.hbs"), "s\r\nline\r\n").unwrap();
    let t = Templates::load(dir.path()).unwrap();
    assert!(t.has("default") && t.has("sales") && !t.has("other"));
    assert_eq!(t.names().collect::<Vec<_>>(), ["default", "sales"]);
    let u = user(json!({"displayName": "Ann"}));
    let sig = t.render("sales", &u).unwrap();
    assert_eq!(sig.html, "S Ann");
    // CRLF in a template file comes out as LF: the core picks the message's line ending.
    assert_eq!(sig.text, "s\nline\n");
    assert!(matches!(
        t.render("other", &u),
        Err(RenderError::Missing(n)) if n == "other"
    ));
}

#[test]
fn embedded_default_renders_every_example_user() {
    let users = file::load(Path::new("examples/directory.json")).unwrap();
    assert!(users.len() >= 3);
    let t = Templates::embedded();
    assert!(t.has("default"));
    for u in &users {
        let name = u.str("displayName").unwrap();
        let sig = t.render("default", u).unwrap();
        assert!(sig.text.starts_with("-- \n"), "{name}: {:?}", sig.text);
        assert!(sig.text.contains(name), "{name}");
        assert!(sig.text.contains(u.str("mail").unwrap()), "{name}");
        assert!(sig.text.contains(u.str("jobTitle").unwrap()), "{name}");
        assert!(sig.html.starts_with("<table"), "{name}");
        assert!(sig.html.ends_with("</table>"), "{name}");
        assert!(sig.html.contains(&html_escape(name)), "{name}");
        assert!(sig
            .html
            .contains(&format!("mailto:{}", u.str("mail").unwrap())));
        // No external resources and no leftover template syntax.
        for bad in ["<img", "src=", "<link", "<style", "{{", "}}"] {
            assert!(!sig.html.contains(bad), "{name}: {bad}");
            assert!(!sig.text.contains(bad), "{name}: {bad}");
        }
        // No blank lines left behind by missing attributes.
        assert!(!sig.text.contains("\n\n"), "{name}: {:?}", sig.text);
        match u.str("mobilePhone") {
            Some(m) => assert!(sig.text.contains(&format!("M {m}\n")), "{name}"),
            None => assert!(!sig.text.contains("\nM "), "{name}"),
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}
