//! The crate's top-level modules depend on each other without a cycle, and `config` depends
//! on none of them (issue 17). A module's dependencies are the `crate::X` paths written in
//! its files (`use` lines, qualified paths and doc links alike), and the `super::` paths that
//! climb to the crate root.
//!
//! The picture in docs/architecture.md comes from the ignored test [`picture`]:
//! `MODULE_DEPS_SRC=<a src folder> cargo test --test module_deps picture -- --ignored --nocapture`

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the other top-level modules its files name.
fn graph(src: &Path) -> Graph {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() || (name != "lib" && name != "main") {
            modules.insert(name);
        }
    }
    let mut graph = Graph::new();
    for module in &modules {
        let mut files = Vec::new();
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            files.push(file);
        }
        if src.join(module).is_dir() {
            rust_files(&src.join(module), &mut files);
        }
        let mut deps = BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let text = rooted(&text, module_depth(src, &f));
            for used in used_modules(&text) {
                if used != *module && modules.contains(&used) {
                    deps.insert(used);
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

/// How deep the module of `file` sits: `src/app.rs` and `src/smtp/mod.rs` 1, `src/smtp/sink.rs` 2.
fn module_depth(src: &Path, file: &Path) -> usize {
    let rel = file.strip_prefix(src).unwrap();
    rel.components().count() - usize::from(rel.ends_with("mod.rs"))
}

/// `text` with every `super::` chain that climbs to the crate root written as `crate::`.
/// `depth` is the file's module depth; an inline `mod x {` (rustfmt-formatted: its `}` at the
/// same indentation) adds one for the lines inside it.
fn rooted(text: &str, depth: usize) -> String {
    let mut inline: Vec<usize> = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if inline.last() == Some(&indent) && line.trim() == "}" {
            inline.pop();
        }
        out.push_str(&root_supers(line, depth + inline.len()));
        out.push('\n');
        let decl = line
            .trim_start()
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ");
        if decl.starts_with("mod ") && line.trim_end().ends_with('{') {
            inline.push(indent);
        }
    }
    out
}

/// `line` with each run of exactly `depth` `super::` segments replaced by `crate::`.
fn root_supers(line: &str, depth: usize) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("super::") {
        let word_start = !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        let mut run = &rest[at..];
        let mut n = 0;
        while let Some(r) = run.strip_prefix("super::") {
            run = r;
            n += 1;
        }
        if word_start && n == depth {
            out.push_str("crate::");
        } else {
            out.push_str(&rest[at..rest.len() - run.len()]);
        }
        rest = run;
    }
    out.push_str(rest);
    out
}

/// The first segment after every `crate::`, including those inside `use crate::{a, b::c}`.
fn used_modules(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find("};").unwrap_or(group.len())];
                let mut depth = 0;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && !c.is_whitespace() => {
                            out.push(ident(&group[j..]));
                            start = false;
                        }
                        _ => {}
                    }
                }
            }
            None => out.push(ident(rest)),
        }
    }
    out
}

/// Modules on a cycle, if any (depth-first search for a back edge).
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in &graph[node] {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn parser_reads_grouped_and_plain_paths() {
    let text = "use crate::{a::X, b, c::{d, e}};\nuse crate::f::G;\nlet x = crate::h::y();";
    assert_eq!(used_modules(text), ["a", "b", "c", "f", "h"]);
}

#[test]
fn cycle_finder_finds_one() {
    let g: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), BTreeSet::from([v.to_string()])))
        .collect();
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}

/// One line per module: `module: the modules it imports`.
fn picture_of(g: &Graph) -> String {
    g.iter()
        .map(|(m, deps)| {
            format!(
                "{m}: {}\n",
                deps.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

#[test]
fn super_paths_that_reach_the_root_count() {
    let text = "use super::config::X;\npub(super) fn f() {}\nmod tests {\n    use super::*;\n    use super::super::notify::Y;\n    let a = super::super::super::render::Z;\n}\nuse super::stamp::{self, W};\n";
    assert_eq!(
        used_modules(&rooted(text, 1)),
        ["config", "notify", "stamp"]
    );
    // One level down, a single `super::` stays inside the module.
    assert!(used_modules(&rooted("use super::sink::Sink;", 2)).is_empty());
    assert_eq!(
        module_depth(Path::new("src"), Path::new("src/smtp/mod.rs")),
        1
    );
    assert_eq!(
        module_depth(Path::new("src"), Path::new("src/smtp/sink.rs")),
        2
    );
    assert_eq!(module_depth(Path::new("src"), Path::new("src/app.rs")), 1);
}

/// Prints the picture of the `src` folder named by `MODULE_DEPS_SRC` (this crate's if unset).
#[test]
#[ignore]
fn picture() {
    let src = std::env::var_os("MODULE_DEPS_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        PathBuf::from,
    );
    let g = graph(&src);
    print!("{}", picture_of(&g));
    if let Some(c) = cycle(&g) {
        println!("cycle: {}", c.join(" -> "));
    }
}

#[test]
fn no_cycles_between_top_level_modules() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let picture = picture_of(&g);
    assert!(g.len() > 5, "{picture}");
    if let Some(c) = cycle(&g) {
        panic!("import cycle {}\n{picture}", c.join(" -> "));
    }
}

#[test]
fn config_depends_on_nothing_else_in_the_crate() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert_eq!(g["config"], BTreeSet::new());
}
