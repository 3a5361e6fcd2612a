//! The per-message directory work: lookup on a 100,000-user tenant (target: < 1 µs) and
//! rendering the built-in default signature for the user found.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use sigstamp::directory::{AttrValue, Directory, Name, Source, User};
use sigstamp::render::Templates;
use std::hint::black_box;

fn tenant(n: usize) -> Directory {
    let users = (0..n)
        .map(|i| {
            let v = json!({
                "id": format!("00000000-0000-0000-0000-{i:012}"),
                "displayName": format!("User {i}"),
                "jobTitle": "Engineer",
                "businessPhones": ["+1 555 0100"],
                "mail": format!("user{i}@contoso.example"),
                "userPrincipalName": format!("u{i}@contoso.onmicrosoft.com"),
                "proxyAddresses": [
                    format!("SMTP:user{i}@contoso.example"),
                    format!("smtp:alias{i}@contoso.example"),
                ],
            });
            User::new(v.as_object().unwrap().clone())
        })
        .collect();
    let d = Directory::new();
    d.replace_users(users, Source::Graph);
    d
}

fn lookup(c: &mut Criterion) {
    let d = tenant(100_000);
    let mut g = c.benchmark_group("lookup_100k");
    g.bench_function("lowercase_hit", |b| {
        b.iter(|| d.lookup(black_box("user54321@contoso.example")))
    });
    g.bench_function("alias_hit", |b| {
        b.iter(|| d.lookup(black_box("alias99999@contoso.example")))
    });
    g.bench_function("mixed_case_hit", |b| {
        b.iter(|| d.lookup(black_box("User54321@Contoso.Example")))
    });
    g.bench_function("miss", |b| {
        b.iter(|| d.lookup(black_box("stranger@elsewhere.example")))
    });
    g.finish();
}

fn render(c: &mut Criterion) {
    let templates = Templates::embedded();
    let users = sigstamp::directory::file::parse(include_bytes!("../examples/directory.json"))
        .expect("sample directory");
    // A repeat sender: served from the render cache.
    c.bench_function("render_default", |b| {
        b.iter(|| templates.render("default", black_box(&users[0])))
    });
    // A sender's first message (or first after a change): a full handlebars render.
    let mut n = 0u64;
    c.bench_function("render_default_uncached", |b| {
        b.iter_batched(
            || {
                n += 1;
                users[0].with_changes([(Name::new("seq"), AttrValue::Number(n.into()))])
            },
            |u| templates.render("default", black_box(&u)),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, lookup, render);
criterion_main!(benches);
