//! Directory lookups with a 100,000-user tenant (issue 4 target: < 1 µs), and the cost of
//! rebuilding the index after a sync.
//! `cargo bench --bench directory`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use sigstamp::directory::{Directory, Source, User};
use std::hint::black_box;

const USERS: usize = 100_000;

fn user(i: usize) -> User {
    let mail = format!("u{i:07}@contoso.test");
    let attrs = json!({
        "id": format!("{i:08x}-0000-4000-8000-{i:012x}"),
        "displayName": format!("User {i}"),
        "jobTitle": "Engineer",
        "department": "R&D",
        "businessPhones": ["+1 555 0100"],
        "mail": mail,
        "userPrincipalName": mail,
        "proxyAddresses": [format!("SMTP:{mail}"), format!("smtp:u{i}@contoso.onmicrosoft.com")],
    });
    User::new(attrs.as_object().unwrap().clone())
}

fn users() -> Vec<User> {
    (0..USERS).map(user).collect()
}

fn lookups(c: &mut Criterion) {
    let d = Directory::new();
    d.replace_users(users(), Source::Graph);
    // Addresses spread over the tenant, built up front so only the lookup is measured.
    let addrs: Vec<String> = (0..1024)
        .map(|k| format!("u{:07}@contoso.test", k * 97 % USERS))
        .collect();
    let mut i = 0usize;
    c.bench_function("lookup exact (100k users)", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(d.lookup(black_box(&addrs[i])))
        })
    });
    let fixed = "U0054321@Contoso.TEST";
    c.bench_function("lookup mixed case (100k users)", |b| {
        b.iter(|| black_box(d.lookup(black_box(fixed))))
    });
    c.bench_function("lookup miss (100k users)", |b| {
        b.iter(|| black_box(d.lookup(black_box("nobody@contoso.test"))))
    });
}

fn rebuild(c: &mut Criterion) {
    let d = Directory::new();
    let mut g = c.benchmark_group("replace_users");
    g.sample_size(10);
    g.bench_function("100k users", |b| {
        b.iter_batched(
            users,
            |u| d.replace_users(u, Source::Graph),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, lookups, rebuild);
criterion_main!(benches);
