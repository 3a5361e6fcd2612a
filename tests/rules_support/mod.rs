//! Shared by the rules tests: a directory whose users carry `memberOf` (as the Graph sync
//! fills it), the shipped default template plus the rules examples' `short` and `sales`,
//! and a [`Stamper`] built from a TOML config the way `sigstamp serve` builds it.
#![allow(dead_code)]

use sigstamp::config::Config;
use sigstamp::directory::{self, Directory, Source};
use sigstamp::pipeline::Stamper;
use sigstamp::render::Templates;
use sigstamp::rules::RuleSet;
use std::path::Path;
use std::sync::Arc;

pub const DIRECTORY_JSON: &str = r#"[
 {"id":"1","displayName":"Alice Seller","jobTitle":"Account Executive","department":"Sales",
  "companyName":"Contoso","mail":"alice@contoso.example","userPrincipalName":"alice@contoso.example",
  "businessPhones":["+1 555 0100"],
  "memberOf":["Sales Team","0b5b2e58-1f4c-4c3e-9d7a-5a1e2b3c4d5e"]},
 {"id":"2","displayName":"Bob Builder","jobTitle":"Engineer","department":"Engineering",
  "companyName":"Contoso","mail":"bob@contoso.example","userPrincipalName":"bob@contoso.example",
  "memberOf":["Engineering"]},
 {"id":"3","displayName":"Contoso Info","mail":"info@contoso.example",
  "userPrincipalName":"info@contoso.example"}
]"#;

/// Alice gets `sales` outside and `short` inside; Bob `default` outside and `short` inside;
/// the shared mailbox nothing.
pub const RULES_TOML: &str = r#"
[recipients]
internal_domains = ["contoso.example"]

[[rules]]
name = "shared mailbox"
sender = "info@contoso.example"
template = "none"

[[rules]]
name = "internal"
recipients = "internal"
template = "short"

[[rules]]
name = "sales banner"
group = "Sales Team"
recipients = "external"
template = "sales"
"#;

/// Texts that tell the three templates apart in a stamped message.
pub const SALES_MARK: &str = "Spring offer";
pub const SHORT_MARK: &str = "Alice Seller | +1 555 0100";
pub const DEFAULT_MARK: &str = "Engineer | Engineering";

pub fn directory() -> Arc<Directory> {
    let dir = Arc::new(Directory::new());
    dir.replace_users(
        directory::file::parse(DIRECTORY_JSON.as_bytes()).unwrap(),
        Source::File,
    );
    dir
}

/// `templates/default.*` and `examples/templates/*` in one folder, loaded.
pub fn templates() -> Templates {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for src in [root.join("templates"), root.join("examples/templates")] {
        for entry in std::fs::read_dir(src).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    Templates::load(tmp.path()).unwrap()
}

/// A stamper with the rules of `config_toml`, checked as `sigstamp serve` checks them.
pub fn stamper(config_toml: &str) -> Stamper {
    let cfg = Config::parse(config_toml).unwrap_or_else(|e| panic!("{e}"));
    let rules = RuleSet::compile(&cfg.rules, &cfg.recipients).unwrap();
    let templates = templates();
    rules
        .check_templates(&cfg.templates.default, |t| templates.has(t))
        .unwrap();
    Stamper::new(directory(), templates)
        .with_rules(rules)
        .with_default(cfg.templates.default.clone())
}

/// A plain-text message from `from`.
pub fn message(from: &str) -> String {
    format!(
        "From: {from}\r\nTo: someone@fabrikam.example\r\nSubject: rules\r\n\
         Message-ID: <r1@contoso.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\nbye\r\n"
    )
}

/// How many signatures a stamped message carries (the text signature's delimiter line).
pub fn signatures(message: &[u8]) -> usize {
    String::from_utf8_lossy(message)
        .matches("\r\n-- \r\n")
        .count()
}
