//! Rules from TOML, table-driven: each matcher, order, windows, exceptions, validation.

use super::*;
use crate::config::ConfigError;
use crate::directory::User;
use serde::Deserialize;
use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    rules: Vec<RuleConfig>,
    #[serde(default)]
    recipients: RecipientsConfig,
}

fn compile(toml_text: &str) -> Result<RuleSet, ConfigError> {
    let f: File = toml::from_str(toml_text).expect("valid TOML");
    RuleSet::compile(&f.rules, &f.recipients)
}

fn set(toml_text: &str) -> RuleSet {
    compile(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
}

fn alice() -> User {
    User::new(
        json!({
            "id": "u1",
            "displayName": "Alice Example",
            "mail": "alice@contoso.example",
            "department": "Sales",
            "companyName": "Contoso",
            "onPremisesExtensionAttributes": {"extensionAttribute3": "EMEA"},
            "memberOf": ["Sales Team", "11111111-2222-3333-4444-555555555555"],
        })
        .as_object()
        .unwrap()
        .clone(),
    )
}

const NOW: OffsetDateTime = datetime!(2026-06-15 12:00 UTC);

/// The label of the deciding rule, or "default".
fn pick(rs: &RuleSet, address: &str, audience: Audience, raw: Option<&[u8]>) -> String {
    pick_at(rs, address, audience, raw, NOW)
}

fn pick_at(
    rs: &RuleSet,
    address: &str,
    audience: Audience,
    raw: Option<&[u8]>,
    now: OffsetDateTime,
) -> String {
    let user = alice();
    let facts = match raw {
        Some(r) => MessageFacts::new(r),
        None => MessageFacts::none(),
    };
    let sender = Sender {
        address,
        user: &user,
    };
    rs.choose(sender, audience, &facts, now)
        .map_or("default".into(), Rule::label)
}

const A: &str = "alice@contoso.example";

#[test]
fn each_sender_matcher() {
    // (rule body, sender address, expected match)
    let table: &[(&str, &str, bool)] = &[
        (r#"sender = "alice@contoso.example""#, A, true),
        (r#"sender = "ALICE@Contoso.Example""#, A, true),
        (
            r#"sender = ["x@contoso.example", "alice@contoso.example"]"#,
            A,
            true,
        ),
        (r#"sender = "bob@contoso.example""#, A, false),
        (r#"sender_domain = "contoso.example""#, A, true),
        (r#"sender_domain = "CONTOSO.example""#, A, true),
        (r#"sender_domain = "example""#, A, true),
        (
            r#"sender_domain = "contoso.example""#,
            "alice@eu.contoso.example",
            true,
        ),
        (r#"sender_domain = "eu.contoso.example""#, A, false),
        (r#"sender_domain = "toso.example""#, A, false),
        (r#"attribute = { department = "sales" }"#, A, true),
        (
            r#"attribute = { department = ["Marketing", "SALES"] }"#,
            A,
            true,
        ),
        (r#"attribute = { department = "Marketing" }"#, A, false),
        (
            r#"attribute = { department = "Sales", companyName = "Contoso" }"#,
            A,
            true,
        ),
        (
            r#"attribute = { department = "Sales", companyName = "Fabrikam" }"#,
            A,
            false,
        ),
        (r#"attribute = { jobTitle = "CEO" }"#, A, false),
        (
            r#"attribute = { "onPremisesExtensionAttributes.extensionAttribute3" = "emea" }"#,
            A,
            true,
        ),
        (r#"group = "sales team""#, A, true),
        (r#"group = "11111111-2222-3333-4444-555555555555""#, A, true),
        (r#"group = ["Finance", "Sales Team"]"#, A, true),
        (r#"group = "Finance""#, A, false),
        (r#"group = "Sales""#, A, false),
        (
            r#"sender_domain = "contoso.example"
            group = "Finance""#,
            A,
            false,
        ),
        ("", A, true),
    ];
    for (body, address, want) in table {
        let rs = set(&format!("[[rules]]\n{body}\ntemplate = \"x\"\n"));
        let got = pick(&rs, address, Audience::External, None) == "rule 1";
        assert_eq!(got, *want, "{body} for {address}");
    }
}

#[test]
fn recipients_matcher() {
    let rs = set(r#"
        [recipients]
        internal_domains = ["contoso.example"]
        [[rules]]
        name = "inside"
        recipients = "internal"
        template = "short"
        [[rules]]
        name = "outside"
        recipients = "External"
        template = "full"
        [[rules]]
        name = "never"
        recipients = "any"
        template = "none"
    "#);
    assert!(rs.depends_on_audience());
    assert_eq!(pick(&rs, A, Audience::Internal, None), "inside");
    assert_eq!(pick(&rs, A, Audience::External, None), "outside");
    for (rcpt, want) in [
        ("bob@contoso.example", Audience::Internal),
        ("bob@EU.Contoso.example", Audience::Internal),
        ("bob@fabrikam.example", Audience::External),
        ("bob@notcontoso.example", Audience::External),
    ] {
        assert_eq!(rs.audience_of(rcpt), want, "{rcpt}");
    }
    let any = set("[[rules]]\nrecipients = \"any\"\ntemplate = \"x\"\n");
    assert!(!any.depends_on_audience());
    assert_eq!(pick(&any, A, Audience::Internal, None), "rule 1");
    assert_eq!(pick(&any, A, Audience::External, None), "rule 1");
}

#[test]
fn first_match_wins_in_file_order() {
    let rs = set(r#"
        [[rules]]
        name = "shared mailbox"
        sender = "info@contoso.example"
        template = "none"
        [[rules]]
        name = "sales"
        attribute = { department = "Sales" }
        template = "sales"
        [[rules]]
        name = "everyone"
        template = "default"
    "#);
    assert_eq!(pick(&rs, A, Audience::External, None), "sales");
    assert_eq!(
        pick(&rs, "info@contoso.example", Audience::External, None),
        "shared mailbox"
    );
    let chosen = rs
        .choose(
            Sender {
                address: "info@contoso.example",
                user: &alice(),
            },
            Audience::External,
            &MessageFacts::none(),
            NOW,
        )
        .unwrap();
    assert_eq!(chosen.template(), None);
    assert_eq!(chosen.action(), &Action::NoSignature);
    // Reversed: the catch-all first shadows everything after it.
    let rs = set(r#"
        [[rules]]
        template = "default"
        [[rules]]
        attribute = { department = "Sales" }
        template = "sales"
    "#);
    assert_eq!(pick(&rs, A, Audience::External, None), "rule 1");
    // No rules: no choice, the default applies.
    assert_eq!(pick(&set(""), A, Audience::External, None), "default");
}

#[test]
fn date_windows() {
    let rs = set(r#"
        [[rules]]
        name = "campaign"
        from = "2026-12-01"
        until = 2026-12-31
        template = "xmas"
        [[rules]]
        name = "launch day"
        from = 2027-03-01T09:00:00+01:00
        until = "2027-03-01T17:00:00+01:00"
        template = "launch"
        [[rules]]
        name = "old"
        until = "2020-01-01"
        template = "old"
    "#);
    let table = [
        (datetime!(2026-11-30 23:59:59 UTC), "default"),
        (datetime!(2026-12-01 00:00 UTC), "campaign"),
        (datetime!(2026-12-31 23:59:59 UTC), "campaign"),
        (datetime!(2027-01-01 00:00 UTC), "default"),
        (datetime!(2027-03-01 07:59:59 UTC), "default"),
        (datetime!(2027-03-01 08:00 UTC), "launch day"),
        (datetime!(2027-03-01 15:59:59 UTC), "launch day"),
        (datetime!(2027-03-01 16:00 UTC), "default"),
        (datetime!(2019-12-31 23:59 UTC), "old"),
    ];
    for (now, want) in table {
        assert_eq!(
            pick_at(&rs, A, Audience::External, None, now),
            want,
            "{now}"
        );
    }
}

const MSG: &[u8] = b"From: alice@contoso.example\r\nTo: x@fabrikam.example\r\n\
Subject: Re: [Ticket 42] Your invoice\r\nX-Mailer: Ticketing\r\nAuto-Submitted: auto-generated\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Please find the =46INAL numbers attached.\r\n";

#[test]
fn each_exception_kind_falls_through_to_the_next_rule() {
    let table: &[(&str, bool)] = &[
        (r#"except_subject = "ticket""#, true),
        (r#"except_subject = ["nothing", "INVOICE"]"#, true),
        (r#"except_subject = "urgent""#, false),
        (r#"except_body = "final numbers""#, true),
        (r#"except_body = "=46INAL""#, false),
        (r#"except_body = "confidential""#, false),
        (r#"except_header = "X-Mailer""#, true),
        (r#"except_header = "x-mailer: TICKET""#, true),
        (r#"except_header = "X-Mailer: Outlook""#, false),
        (
            r#"except_header = ["X-Other", "Auto-Submitted: auto-generated"]"#,
            true,
        ),
        (r#"except_header = "List-Id""#, false),
    ];
    for (body, excepted) in table {
        let rs = set(&format!(
            "[[rules]]\nname = \"first\"\n{body}\ntemplate = \"a\"\n[[rules]]\nname = \"second\"\ntemplate = \"b\"\n"
        ));
        let want = if *excepted { "second" } else { "first" };
        assert_eq!(pick(&rs, A, Audience::External, Some(MSG)), want, "{body}");
        // Without a message (the page's preview) exceptions never apply.
        assert_eq!(pick(&rs, A, Audience::External, None), "first", "{body}");
    }
}

#[test]
fn describe_and_label() {
    let rs = set(r#"
        [recipients]
        internal_domains = ["contoso.example"]
        [[rules]]
        attribute = { department = "Sales" }
        recipients = "external"
        until = "2026-12-31"
        template = "sales"
        [[rules]]
        name = "shared"
        sender = ["Info@Contoso.example", "hr@contoso.example"]
        except_subject = ["a", "b"]
        except_header = "X-Test: yes"
        template = "NONE"
        [[rules]]
        sender_domain = "contoso.example"
        group = "Sales Team"
        recipients = "internal"
        from = "2026-01-01"
        except_body = "x"
        template = "short"
        [[rules]]
        template = "default"
    "#);
    let d: Vec<(String, String)> = rs
        .rules()
        .iter()
        .map(|r| (r.label(), r.describe()))
        .collect();
    assert_eq!(
        d,
        [
            ("rule 1".into(), "department = Sales · external recipients · until 2026-12-31 → template sales".into()),
            ("shared".into(), "sender info@contoso.example or hr@contoso.example · except subject a, b · except header X-Test: yes → no signature".into()),
            ("rule 3".into(), "sender domain contoso.example · group Sales Team · internal recipients · except body x · from 2026-01-01 → template short".into()),
            ("rule 4".into(), "every sender → template default".into()),
        ]
    );
}

#[test]
fn validation_names_the_failing_key() {
    let table: &[(&str, &str, &str)] = &[
        ("[[rules]]\nname = \"x\"\n", "rules[1].template", "missing"),
        ("[[rules]]\ntemplate = \"\"\n", "rules[1].template", "empty"),
        (
            "[[rules]]\ntemplate = \"a\"\n[[rules]]\nrecipients = \"outside\"\ntemplate = \"a\"\n",
            "rules[2].recipients",
            "unknown value \"outside\"",
        ),
        ("[[rules]]\nrecipients = \"internal\"\ntemplate = \"a\"\n", "rules[1].recipients", "internal_domains"),
        ("[[rules]]\nfrom = \"31.12.2026\"\ntemplate = \"a\"\n", "rules[1].from", "RFC 3339"),
        ("[[rules]]\nuntil = \"2026-02-30\"\ntemplate = \"a\"\n", "rules[1].until", "RFC 3339"),
        ("[[rules]]\nuntil = 7\ntemplate = \"a\"\n", "rules[1].until", "integer"),
        (
            "[[rules]]\nfrom = \"2026-12-31\"\nuntil = \"2026-12-01\"\ntemplate = \"a\"\n",
            "rules[1].until",
            "not after",
        ),
        ("[[rules]]\nsender = \"alice\"\ntemplate = \"a\"\n", "rules[1].sender", "not an email address"),
        ("[[rules]]\nsender_domain = \"a b\"\ntemplate = \"a\"\n", "rules[1].sender_domain", "not a domain"),
        ("[[rules]]\nattribute = { department = [] }\ntemplate = \"a\"\n", "rules[1].attribute.department", "no value"),
        ("[[rules]]\nattribute = { department = \" \" }\ntemplate = \"a\"\n", "rules[1].attribute.department", "empty"),
        ("[[rules]]\ngroup = \"\"\ntemplate = \"a\"\n", "rules[1].group", "empty"),
        ("[[rules]]\nexcept_subject = [\"\"]\ntemplate = \"a\"\n", "rules[1].except_subject", "empty"),
        ("[[rules]]\nexcept_header = \"Bad Name\"\ntemplate = \"a\"\n", "rules[1].except_header", "header name"),
        ("[[rules]]\nname = \" \"\ntemplate = \"a\"\n", "rules[1].name", "empty"),
        (
            "[[rules]]\nname = \"x\"\ntemplate = \"a\"\n[[rules]]\nname = \"x\"\ntemplate = \"b\"\n",
            "rules[2].name",
            "also the name of rules[1]",
        ),
        ("[recipients]\ninternal_domains = [\"ok.example\", \"not a domain\"]\n", "recipients.internal_domains[1]", "not a domain"),
        ("[[rules]]\nmessage = \"answer\"\ntemplate = \"a\"\n", "rules[1].message", "unknown value \"answer\""),
        ("[[rules]]\nmessage = [\"new\", \"\"]\ntemplate = \"a\"\n", "rules[1].message", "unknown value"),
        ("[[rules]]\nonce_per_thread = true\ntemplate = \"none\"\n", "rules[1].once_per_thread", "no signature"),
    ];
    for (text, key, message) in table {
        match compile(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(ConfigError::Invalid { key: k, message: m }) => {
                assert_eq!(k, *key, "{text}");
                assert!(m.contains(message), "{k}: {m}\n{text}");
            }
            Err(other) => panic!("{other}"),
        }
    }
    // Empty matchers are a catch-all, not an error.
    assert_eq!(set("[[rules]]\ntemplate = \"a\"\n").rules().len(), 1);
}

#[test]
fn unknown_keys_are_refused_by_toml() {
    let e = toml::from_str::<File>("[[rules]]\nsenders = \"a@b.example\"\ntemplate = \"a\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("senders"), "{e}");
    let e = toml::from_str::<File>("[[rules]]\nsender = 5\ntemplate = \"a\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("string or a list of strings"), "{e}");
}

#[test]
fn template_names_are_checked() {
    let rs = set("[[rules]]\ntemplate = \"none\"\n[[rules]]\ntemplate = \"sales\"\n");
    let has = |t: &str| t == "default";
    let e = rs.check_templates("default", has).unwrap_err().to_string();
    assert_eq!(
        e,
        "config key `rules[2].template`: no template named \"sales\""
    );
    let e = rs.check_templates("main", has).unwrap_err().to_string();
    assert!(e.contains("`templates.default`"), "{e}");
    assert!(rs.check_templates("default", |t| t != "none").is_ok());
}

/// `message` in a rule set: replies get the short signature, forwards and new mail the
/// full one, auto-replies their own; `describe` says so.
#[test]
fn message_matcher_in_order() {
    let rs = set(r#"
        [[rules]]
        name = "ooo"
        message = "auto-reply"
        template = "away"
        [[rules]]
        name = "replies"
        message = "reply"
        once_per_thread = true
        template = "short"
        [[rules]]
        name = "rest"
        message = ["new", "forward"]
        template = "full"
    "#);
    let table: &[(&str, &str)] = &[
        ("Subject: Hello\r\n\r\nx\r\n", "rest"),
        ("Subject: Fwd: Hello\r\n\r\nx\r\n", "rest"),
        ("Subject: AW: Hallo\r\n\r\nx\r\n", "replies"),
        ("In-Reply-To: <a@b>\r\n\r\nx\r\n", "replies"),
        (
            "Auto-Submitted: auto-replied\r\nSubject: Re: x\r\n\r\nx\r\n",
            "ooo",
        ),
    ];
    for (raw, want) in table {
        assert_eq!(
            pick(&rs, A, Audience::External, Some(raw.as_bytes())),
            *want,
            "{raw}"
        );
    }
    // No message (the preview): a new one.
    assert_eq!(pick(&rs, A, Audience::External, None), "rest");
    assert_eq!(
        rs.rules()[1].describe(),
        "every sender · replies · once per thread → template short"
    );
    assert_eq!(
        rs.rules()[2].describe(),
        "every sender · new messages or forwards → template full"
    );
}

/// `once_per_thread`: the rule stops matching once the quoted thread holds the sender's
/// signature of its template, and the next rule decides.
#[test]
fn once_per_thread_defers_to_the_next_rule() {
    let rs = set(r#"
        [[rules]]
        name = "first reply"
        message = "reply"
        once_per_thread = true
        template = "short"
        [[rules]]
        name = "later replies"
        message = "reply"
        template = "none"
    "#);
    let user = alice();
    let render = |t: &str| {
        (t == "short").then(|| {
            crate::stamp::Signature::new(
                "<div>Alice Example · Contoso</div>",
                "-- \nAlice Example | Contoso\n",
            )
        })
    };
    let sender = Sender {
        address: A,
        user: &user,
    };
    let choose = |raw: &str| {
        let facts = MessageFacts::new(raw.as_bytes()).with_signatures(&render);
        rs.choose(sender, Audience::External, &facts, NOW)
            .map(Rule::label)
    };
    let first = "Subject: Re: x\r\n\r\nThanks\r\n\r\nOn Mon, Bob wrote:\r\n> Can you?\r\n";
    assert_eq!(choose(first).as_deref(), Some("first reply"));
    let second = "Subject: Re: x\r\n\r\nSure\r\n\r\nOn Tue, Bob wrote:\r\n> Great\r\n>\r\n> On Mon, Alice wrote:\r\n>> Thanks\r\n>>\r\n>> -- \r\n>> Alice Example | Contoso\r\n";
    assert_eq!(choose(second).as_deref(), Some("later replies"));
    // Without a way to render (no message facts for it), the rule matches as before.
    let facts = MessageFacts::new(second.as_bytes());
    assert_eq!(
        rs.choose(sender, Audience::External, &facts, NOW)
            .map(Rule::label)
            .as_deref(),
        Some("first reply")
    );
}
