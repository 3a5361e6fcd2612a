//! `sigstamp stamp` and `sigstamp preview`, run as real processes.

use sigstamp::stamp::TRACE_HEADER;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const EXAMPLES: &[(&str, &str)] = &[
    ("examples/plain.eml", "jose.mueller@lumen-optics.example"),
    (
        "examples/reply-gmail.eml",
        "jose.mueller@lumen-optics.example",
    ),
    (
        "examples/reply-outlook.eml",
        "zoe.obrien@lumen-optics.example",
    ),
    (
        "examples/attachment.eml",
        "soren.akesson@lumen-optics.example",
    ),
];

fn sigstamp(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sigstamp"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sigstamp");
    // Feed stdin from a thread so a large output cannot deadlock against it; a command that
    // fails before reading its input closes the pipe, which is fine here.
    let feeder = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn stamps_examples_from_file_and_stdin() {
    for (file, sender) in EXAMPLES {
        let input = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        let by_file = sigstamp(&["stamp", file], None);
        let by_stdin = sigstamp(&["stamp"], Some(&input));
        let by_dash = sigstamp(&["stamp", "-"], Some(&input));
        for out in [&by_file, &by_stdin, &by_dash] {
            assert!(out.status.success(), "{file}: {}", stderr(out));
        }
        assert_eq!(
            by_file.stdout, by_stdin.stdout,
            "{file}: file and stdin differ"
        );
        assert_eq!(by_file.stdout, by_dash.stdout, "{file}: file and - differ");
        let err = stderr(&by_file);
        assert!(
            err.contains(&format!("stamped: sender {sender}, template default")),
            "{file}: {err}"
        );
        assert_ne!(by_file.stdout, input, "{file}");
        assert!(
            contains(&by_file.stdout, &format!("{TRACE_HEADER}:")),
            "{file}"
        );
        // Stamping is idempotent: the stamped message comes back byte for byte.
        let again = sigstamp(&["stamp"], Some(&by_file.stdout));
        assert!(again.status.success());
        assert_eq!(again.stdout, by_file.stdout, "{file}: stamped twice");
        assert!(
            stderr(&again).contains("already_stamped"),
            "{}",
            stderr(&again)
        );
    }
    // The text signature of a 7bit us-ascii message is readable in the output.
    let out = sigstamp(&["stamp", "examples/plain.eml"], None);
    assert!(contains(&out.stdout, "Head of Sales | Sales EMEA"));
}

#[test]
fn unknown_sender_leaves_the_bytes_unchanged() {
    for eol in ["\r\n", "\n"] {
        let input = [
            "From: Stranger <stranger@nowhere.example>",
            "To: jose.mueller@lumen-optics.example",
            "Subject: hello",
            "",
            "Hi there,   ",
            "trailing blanks and no final newline",
        ]
        .join(eol);
        let out = sigstamp(&["stamp"], Some(input.as_bytes()));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(out.stdout, input.as_bytes(), "bytes changed (eol {eol:?})");
        let err = stderr(&out);
        assert!(err.contains("unchanged (unknown_sender)"), "{err}");
        assert!(err.contains("stranger@nowhere.example"), "{err}");
    }
}

#[test]
fn sender_flag_chooses_the_sender() {
    // A sender that is not in the directory, even though From is.
    let out = sigstamp(
        &[
            "stamp",
            "--sender",
            "Nobody@Nowhere.example",
            "examples/plain.eml",
        ],
        None,
    );
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plain.eml")).unwrap()
    );
    assert!(
        stderr(&out).contains("unknown_sender") && stderr(&out).contains("Nobody@Nowhere.example"),
        "{}",
        stderr(&out)
    );

    // A known sender (by alias, any case) for a From outside the directory.
    let input = b"From: someone@elsewhere.example\r\nSubject: x\r\n\r\nHello\r\n";
    let out = sigstamp(
        &["stamp", "--sender", "J.Mueller@lumen-optics.example"],
        Some(input),
    );
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("stamped: sender j.mueller@lumen-optics.example"),
        "{}",
        stderr(&out)
    );
    assert!(contains(&out.stdout, "Head of Sales"));
}

#[test]
fn templates_and_directory_flags() {
    let tpl = tempfile::tempdir().unwrap();
    std::fs::write(
        tpl.path().join("default.html.hbs"),
        "<p>HTMLMARK {{displayName}}</p>",
    )
    .unwrap();
    std::fs::write(
        tpl.path().join("default.txt.hbs"),
        "-- \nTEXTMARK {{jobTitle}}\n",
    )
    .unwrap();
    let users = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        users.path(),
        r#"{"value": [{"displayName": "Ann Example", "jobTitle": "Chief Tester",
                        "mail": "ann@example.com"}]}"#,
    )
    .unwrap();
    let (tpl_s, users_s) = (tpl.path().to_str().unwrap(), users.path().to_str().unwrap());
    let input = b"From: Ann <ANN@example.com>\r\nSubject: x\r\n\r\nHello\r\n";
    let out = sigstamp(
        &["stamp", "--templates", tpl_s, "--directory", users_s],
        Some(input),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        contains(&out.stdout, "TEXTMARK Chief Tester"),
        "{}",
        stderr(&out)
    );

    let out = sigstamp(
        &[
            "preview",
            "ann@example.com",
            "--templates",
            tpl_s,
            "--directory",
            users_s,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("<p>HTMLMARK Ann Example</p>"), "{text}");
    assert!(text.contains("-- \nTEXTMARK Chief Tester\n"), "{text}");
}

#[test]
fn preview_prints_html_and_text() {
    let out = sigstamp(&["preview", "zoe.obrien@lumen-optics.example"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Zoë O&#x27;Brien-Ng"), "{text}");
    assert!(text.contains("-- \nZoë O'Brien-Ng\n"), "{text}");

    let out = sigstamp(&["preview", "nobody@lumen-optics.example"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nobody@lumen-optics.example is not in the directory"));
}

#[test]
fn usage_and_config_errors_exit_non_zero_with_a_clear_message() {
    let bad_syntax = tempfile::tempdir().unwrap();
    std::fs::write(
        bad_syntax.path().join("default.html.hbs"),
        "<p>\n{{#if mail}}{{mail}}{{/each}}\n",
    )
    .unwrap();
    std::fs::write(bad_syntax.path().join("default.txt.hbs"), "x").unwrap();
    let no_default = tempfile::tempdir().unwrap();
    std::fs::write(no_default.path().join("sales.html.hbs"), "x").unwrap();
    std::fs::write(no_default.path().join("sales.txt.hbs"), "x").unwrap();
    let bad_json = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad_json.path(), "{\"value\": [").unwrap();

    let syntax_file = bad_syntax.path().join("default.html.hbs");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["stamp", "--templates", "/nonexistent/templates"],
            "cannot read template directory /nonexistent/templates".into(),
        ),
        (
            vec!["stamp", "--templates", bad_syntax.path().to_str().unwrap()],
            format!("{}:2: ", syntax_file.display()),
        ),
        (
            vec!["stamp", "--templates", no_default.path().to_str().unwrap()],
            "no default template".into(),
        ),
        (
            vec!["stamp", "--directory", bad_json.path().to_str().unwrap()],
            bad_json.path().display().to_string(),
        ),
        (
            vec!["stamp", "--directory", "/nonexistent/users.json"],
            "/nonexistent/users.json".into(),
        ),
        (
            vec!["stamp", "/nonexistent/message.eml"],
            "cannot read /nonexistent/message.eml".into(),
        ),
        (
            vec!["stamp", "--sender", "not-an-address"],
            "not an email address".into(),
        ),
        (vec!["stamp", "--bogus"], "--bogus".into()),
    ];
    for (args, want) in cases {
        let out = sigstamp(&args, Some(b"From: a@b.example\r\n\r\nx\r\n"));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        assert!(stderr(&out).contains(&want), "{args:?}: {}", stderr(&out));
    }
}

/// Issue 17: renamed `[milter]` keys still work under their old names, with a warning naming
/// both, also for the commands that run without a log (`sigstamp stamp --config`).
#[test]
fn old_milter_key_names_work_with_a_deprecation_warning() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sigstamp.toml");
    let write = |keys: &str| {
        let text = format!(
            "[milter]\nlisten = \"127.0.0.1:0\"\n{keys}\n\n[directory]\nfile = \"{}\"\n",
            root.join("examples/directory.json").display()
        );
        std::fs::write(&config, text).unwrap();
    };
    let raw = std::fs::read(root.join("examples/plain.eml")).unwrap();
    let run = || sigstamp(&["stamp", "--config", config.to_str().unwrap()], Some(&raw));

    write("read_timeout = \"20s\"\nmax_connections = 8");
    let out = run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(contains(&out.stdout, TRACE_HEADER), "stamped");
    for (old, new) in [
        ("read_timeout", "data_timeout"),
        ("max_connections", "max_sessions"),
    ] {
        let want = format!("config key `milter.{old}` is deprecated: rename it to `milter.{new}`");
        assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    }

    write("data_timeout = \"20s\"\nmax_sessions = 8");
    let out = run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("deprecated"), "{}", stderr(&out));
}
