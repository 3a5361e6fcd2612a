//! `sigstamp attributes set|unset|list|import`, run as real processes.

use serde_json::json;
use sigstamp::directory::overrides;
use std::path::Path;
use std::process::{Command, Output};

fn sigstamp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sigstamp"))
        .args(args)
        .output()
        .expect("run sigstamp")
}

fn ok(args: &[&str]) -> Output {
    let out = sigstamp(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails(args: &[&str], want: &str) {
    let out = sigstamp(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(want), "{args:?}: {err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn set_list_unset_with_overrides_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state/overrides.json");
    let f = s(&file);
    ok(&[
        "attributes",
        "set",
        "Jose.Mueller@Contoso.example",
        "pronouns",
        "he/him",
        "--overrides",
        f,
    ]);
    // Global flag before the action, a value with a comma and quotes, a leading dash.
    ok(&[
        "attributes",
        "--overrides",
        f,
        "set",
        "zoe@contoso.example",
        "jobTitle",
        "CSM, \"EMEA\"",
    ]);
    ok(&[
        "attributes",
        "set",
        "zoe@contoso.example",
        "mobilePhone",
        "-",
        "--overrides",
        f,
    ]);

    let ov = overrides::load(&file).unwrap();
    assert_eq!(
        ov.by_address["jose.mueller@contoso.example"]["pronouns"],
        json!("he/him")
    );
    assert_eq!(
        ov.by_address["zoe@contoso.example"]["jobTitle"],
        json!("CSM, \"EMEA\"")
    );

    let list = String::from_utf8(ok(&["attributes", "list", "--overrides", f]).stdout).unwrap();
    assert_eq!(
        list,
        "address,attribute,value\n\
         jose.mueller@contoso.example,pronouns,he/him\n\
         zoe@contoso.example,jobTitle,\"CSM, \"\"EMEA\"\"\"\n\
         zoe@contoso.example,mobilePhone,-\n"
    );
    let one = String::from_utf8(
        ok(&[
            "attributes",
            "list",
            "ZOE@contoso.example",
            "--overrides",
            f,
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(one.lines().count(), 3, "{one}");

    // The listing is valid import input: re-importing it changes nothing.
    let csv = dir.path().join("list.csv");
    std::fs::write(&csv, &list).unwrap();
    ok(&["attributes", "import", s(&csv), "--overrides", f]);
    assert_eq!(overrides::load(&file).unwrap(), ov);

    ok(&[
        "attributes",
        "unset",
        "zoe@contoso.example",
        "jobTitle",
        "--overrides",
        f,
    ]);
    ok(&[
        "attributes",
        "unset",
        "zoe@contoso.example",
        "jobTitle",
        "--overrides",
        f,
    ]);
    let ov = overrides::load(&file).unwrap();
    assert!(!ov.by_address["zoe@contoso.example"].contains_key("jobTitle"));
}

#[test]
fn config_flag_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.json");
    let config = dir.path().join("sigstamp.toml");
    std::fs::write(
        &config,
        format!("[directory]\noverrides = {:?}\n", file.to_str().unwrap()),
    )
    .unwrap();
    ok(&[
        "attributes",
        "--config",
        s(&config),
        "set",
        "a@contoso.example",
        "team",
        "Blue",
    ]);
    assert_eq!(
        overrides::load(&file).unwrap().by_address["a@contoso.example"]["team"],
        json!("Blue")
    );

    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "[directory]\n").unwrap();
    fails(
        &["attributes", "list", "--config", s(&bare)],
        "no `overrides` key",
    );
    fails(&["attributes", "list"], "no overrides file");
    fails(
        &[
            "attributes",
            "list",
            "--config",
            s(&config),
            "--overrides",
            s(&file),
        ],
        "not both",
    );
}

#[test]
fn import_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.json");
    let f = s(&file);
    ok(&[
        "attributes",
        "set",
        "a@contoso.example",
        "jobTitle",
        "CEO",
        "--overrides",
        f,
    ]);
    let before = std::fs::read(&file).unwrap();

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "address,attribute,value\nb@contoso.example,team,Red\nb@contoso.example,mail,x@y.example\n",
    )
    .unwrap();
    fails(
        &["attributes", "import", s(&bad), "--overrides", f],
        "bad.csv: line 3:",
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "a failed import wrote the file"
    );

    let good = dir.path().join("good.csv");
    std::fs::write(
        &good,
        "\u{feff}address,attribute,value\r\nb@contoso.example,team,Red\r\na@contoso.example,jobTitle,\r\n",
    )
    .unwrap();
    let out = ok(&["attributes", "import", s(&good), "--overrides", f]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 set, 1 unset"));
    let ov = overrides::load(&file).unwrap();
    assert_eq!(
        ov.entries(),
        [("b@contoso.example", "team", &json!("Red"))],
        "blank value unset a@'s jobTitle"
    );

    fails(
        &[
            "attributes",
            "set",
            "a@contoso.example",
            "mail",
            "x@y.example",
            "--overrides",
            f,
        ],
        "cannot be overridden",
    );
    fails(
        &["attributes", "import", "/nonexistent.csv", "--overrides", f],
        "/nonexistent.csv",
    );
    std::fs::write(&file, "{ broken").unwrap();
    fails(&["attributes", "list", "--overrides", f], "not valid");
}

#[test]
fn concurrent_edits_are_all_kept() {
    // Each process reads, edits and saves the whole file; without the edit lock a save made
    // from an older read drops the edits saved in between.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.json");
    let n = 24;
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_sigstamp"))
                .args(["attributes", "--overrides", s(&file), "set"])
                .arg(format!("user{i}@contoso.example"))
                .args(["extension", &format!("value {i}")])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn sigstamp")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ov = overrides::load(&file).unwrap();
    assert_eq!(ov.entries().len(), n, "{:?}", ov.entries());
}
