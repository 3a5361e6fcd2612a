//! The pipeline with `[[rules]]`: one verdict per recipient group when (and only when) the
//! groups get different signatures, the single-verdict policy of edges that cannot split,
//! and the admin page's preview.

mod rules_support;

use rules_support::*;
use sigstamp::pipeline::{Audience, Envelope, Share, Stamper, Unchanged, Verdict};

fn split(s: &Stamper, from: &str, rcpts: &[&str]) -> Vec<Share> {
    let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
    s.process_split(
        message(from).as_bytes(),
        &Envelope {
            mail_from: Some(from),
            rcpt_to: &rcpts,
        },
    )
}

/// (audience, recipient indices, template or "none"/outcome label) of each part.
fn summary(parts: &[Share]) -> Vec<(Option<Audience>, Vec<usize>, String)> {
    parts
        .iter()
        .map(|p| {
            let what = match &p.verdict {
                Verdict::Stamped { template, .. } => template.clone(),
                Verdict::Unchanged(u) => u.label().to_string(),
            };
            (p.audience, p.rcpts.clone(), what)
        })
        .collect()
}

const IN: &str = "bob@contoso.example";
const IN2: &str = "carol@eu.contoso.example";
const OUT: &str = "dave@fabrikam.example";
const OUT2: &str = "erin@notcontoso.example";

#[test]
fn mixed_recipients_split_only_when_the_results_differ() {
    use Audience::*;
    let s = stamper(RULES_TOML);
    let a = "alice@contoso.example";
    let b = "bob@contoso.example";
    let info = "info@contoso.example";
    type Want = Vec<(Option<Audience>, Vec<usize>, &'static str)>;
    let table: Vec<(&str, Vec<&str>, Want)> = vec![
        // Different templates: internal part first, then external.
        (
            a,
            vec![OUT, IN, OUT2, IN2],
            vec![
                (Some(Internal), vec![1, 3], "short"),
                (Some(External), vec![0, 2], "sales"),
            ],
        ),
        (
            b,
            vec![IN, OUT],
            vec![
                (Some(Internal), vec![0], "short"),
                (Some(External), vec![1], "default"),
            ],
        ),
        // One group only: one part for everyone.
        (a, vec![IN, IN2], vec![(None, vec![0, 1], "short")]),
        (a, vec![OUT, OUT2], vec![(None, vec![0, 1], "sales")]),
        // No recipients known: external.
        (a, vec![], vec![(None, vec![], "sales")]),
        // Same result for both groups: no split.
        (
            info,
            vec![IN, OUT],
            vec![(None, vec![0, 1], "no_signature")],
        ),
    ];
    for (from, rcpts, want) in table {
        let got = summary(&split(&s, from, &rcpts));
        let want: Vec<_> = want
            .into_iter()
            .map(|(a, r, t)| (a, r, t.to_string()))
            .collect();
        assert_eq!(got, want, "{from} → {rcpts:?}");
    }
}

#[test]
fn each_part_carries_its_own_signature_once() {
    let s = stamper(RULES_TOML);
    let parts = split(&s, "alice@contoso.example", &[IN, OUT]);
    assert_eq!(parts.len(), 2);
    for (part, mark, other) in [
        (&parts[0], SHORT_MARK, SALES_MARK),
        (&parts[1], SALES_MARK, SHORT_MARK),
    ] {
        let Verdict::Stamped { message, .. } = &part.verdict else {
            panic!("{:?}", part.verdict)
        };
        let text = String::from_utf8_lossy(message);
        assert!(text.contains(mark), "{mark} missing:\n{text}");
        assert!(!text.contains(other), "{other} present:\n{text}");
        assert_eq!(signatures(message), 1, "{text}");
    }
}

#[test]
fn edges_that_cannot_split_use_the_external_choice() {
    let s = stamper(RULES_TOML);
    let rcpts = vec![IN.to_string(), OUT.to_string()];
    let raw = message("alice@contoso.example");
    let env = Envelope {
        mail_from: Some("alice@contoso.example"),
        rcpt_to: &rcpts,
    };
    match s.process(raw.as_bytes(), &env) {
        Verdict::Stamped { template, .. } => assert_eq!(template, "sales"),
        other => panic!("{other:?}"),
    }
    // A shared mailbox: no signature, and the verdict says why.
    let raw = message("info@contoso.example");
    let v = s.process(raw.as_bytes(), &env);
    assert!(
        matches!(v, Verdict::Unchanged(Unchanged::NoSignature)),
        "{v:?}"
    );
    assert_eq!(v.label(), "no_signature");
}

#[test]
fn without_rules_nothing_changes() {
    let s = stamper("");
    assert!(s.rules().is_empty());
    let got = summary(&split(&s, "alice@contoso.example", &[IN, OUT]));
    assert_eq!(got, vec![(None, vec![0, 1], "default".to_string())]);
    // Exceptions do not need internal domains; a rule without recipients never splits.
    let s = stamper(
        "[[rules]]\nexcept_subject = \"rules\"\ntemplate = \"sales\"\n\
         [[rules]]\ntemplate = \"short\"\n",
    );
    let got = summary(&split(&s, "alice@contoso.example", &[IN, OUT]));
    assert_eq!(got, vec![(None, vec![0, 1], "short".to_string())]);
}

#[test]
fn preview_names_the_rule_and_renders_its_template() {
    let s = stamper(RULES_TOML);
    let p = s
        .preview("Alice@Contoso.example", Audience::External)
        .unwrap();
    assert_eq!(p.sender, "alice@contoso.example");
    assert_eq!(p.rule.as_deref(), Some("sales banner"));
    assert_eq!(p.template.as_deref(), Some("sales"));
    let sig = p.signature.unwrap();
    assert!(sig.text.contains(SALES_MARK), "{}", sig.text);
    assert!(sig.html.contains(SALES_MARK), "{}", sig.html);
    assert_eq!(p.error, None);

    let p = s
        .preview("alice@contoso.example", Audience::Internal)
        .unwrap();
    assert_eq!(
        (p.rule.as_deref(), p.template.as_deref()),
        (Some("internal"), Some("short"))
    );
    // No rule matched: the default, no rule named.
    let p = s
        .preview("bob@contoso.example", Audience::External)
        .unwrap();
    assert_eq!((p.rule, p.template.as_deref()), (None, Some("default")));
    assert!(p.signature.unwrap().text.contains(DEFAULT_MARK));
    // "none": no template, no signature.
    let p = s
        .preview("info@contoso.example", Audience::External)
        .unwrap();
    assert_eq!(p.rule.as_deref(), Some("shared mailbox"));
    assert_eq!((p.template, p.signature), (None, None));
    assert!(s
        .preview("nobody@contoso.example", Audience::External)
        .is_none());

    let rules = s.rules();
    let labels: Vec<String> = rules.rules().iter().map(|r| r.label()).collect();
    assert_eq!(labels, ["shared mailbox", "internal", "sales banner"]);
    assert_eq!(
        rules.rules()[2].describe(),
        "group Sales Team · external recipients → template sales"
    );
}

#[test]
fn config_errors_name_the_key() {
    use sigstamp::config::Config;
    let table = [
        (
            "[[rules]]\ntemplate = \"x\"\nrecipients = \"everyone\"\n",
            "rules[1].recipients",
        ),
        (
            "[recipients]\ninternal_domains = [\"a.example\"]\n[[rules]]\ntemplate = \"x\"\n\
             [[rules]]\nuntil = \"soon\"\ntemplate = \"x\"\n",
            "rules[2].until",
        ),
    ];
    for (text, key) in table {
        let e = sigstamp::app::parse_config(text).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")), "{e}");
    }
    let e = sigstamp::app::parse_config("[[rules]]\ntemplate = \"x\"\nsubject = \"y\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("subject"), "{e}");
    // A template the folder does not have is refused at start-up, with the rule's key.
    let cfg =
        Config::parse("[[rules]]\ntemplate = \"short\"\n[[rules]]\ntemplate = \"gone\"\n").unwrap();
    let rules = sigstamp::rules::RuleSet::compile(&cfg.rules, &cfg.recipients).unwrap();
    let t = templates();
    let e = rules
        .check_templates("default", |n| t.has(n))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "config key `rules[2].template`: no template named \"gone\""
    );
}

/// The rules documentation's example (docs/rules.md) and the commented one in `sigstamp.example.toml` are valid and do
/// what their comments say.
#[test]
fn documented_examples_work() {
    use sigstamp::config::Config;
    use sigstamp::rules::{MessageFacts, RuleSet, Sender};
    use time::macros::datetime;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("docs/rules.md")).unwrap();
    let section = &readme[readme.find("# Rules: which signature").unwrap()..];
    let start = section.find("```toml\n").unwrap() + 8;
    let readme_toml = &section[start..start + section[start..].find("```").unwrap()];

    let example = std::fs::read_to_string(root.join("sigstamp.example.toml")).unwrap();
    let block = &example[example.find("\n# [recipients]").unwrap() + 1..];
    let block = &block[..block.find("\n\n").unwrap()];
    let example_toml: String = block
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .collect::<Vec<_>>()
        .join("\n");

    let t = templates();
    let dir = directory();
    let alice = dir.lookup("alice@contoso.example").unwrap();
    let info = dir.lookup("info@contoso.example").unwrap();
    let facts = MessageFacts::none();
    let at = datetime!(2026-06-01 12:00 UTC);
    for (text, outside_label) in [
        (readme_toml, "sales banner"),
        (&example_toml, "sales banner"),
    ] {
        let cfg = Config::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let rules = RuleSet::compile(&cfg.rules, &cfg.recipients).unwrap();
        // `christmas` is the documentation's template "left to you".
        rules
            .check_templates(&cfg.templates.default, |n| t.has(n) || n == "christmas")
            .unwrap();
        let label = |address: &str, user, audience| {
            let s = Sender { address, user };
            rules
                .choose(s, audience, &facts, at)
                .map(|r| r.label())
                .unwrap_or_default()
        };
        let a = "alice@contoso.example";
        assert_eq!(label(a, &*alice, Audience::External), outside_label);
        assert_eq!(label(a, &*alice, Audience::Internal), "internal");
        let i = "info@contoso.example";
        assert_eq!(label(i, &*info, Audience::External), "shared mailboxes");
    }
}

#[test]
fn a_message_neither_group_can_get_a_signature_is_not_split() {
    // Different templates for the two groups, but nothing to stamp: one unchanged part.
    let s = stamper(RULES_TOML);
    let raw = "From: bob@contoso.example\r\nSubject: scan\r\nMIME-Version: 1.0\r\n\
               Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n";
    let rcpts = vec![IN.to_string(), OUT.to_string()];
    let parts = s.process_split(
        raw.as_bytes(),
        &Envelope {
            mail_from: Some("bob@contoso.example"),
            rcpt_to: &rcpts,
        },
    );
    assert_eq!(
        summary(&parts),
        vec![(None, vec![0, 1], "no_text_body".to_string())]
    );
}
