//! The shape of the code, held against the rules the team keeps (docs/architecture.md): the
//! README's architecture table names every crate, no source file outgrows 400 lines, no crate
//! holds more than a third of the code, and no module of a crate imports one that imports it
//! back. Each rule fails here the day it is broken, not at the next review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// The workspace's members, read from the root `Cargo.toml`.
fn members() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members list");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The crates that ship (not the tests or the benchmarks), each with its `src/`.
fn product_crates() -> Vec<String> {
    members()
        .into_iter()
        .filter(|m| m != "tests" && !m.starts_with("bench/"))
        .collect()
}

/// Every `.rs` file under `dir`, with its line count; unit tests in `tests.rs` files apart.
fn sources(dir: &Path, out: &mut Vec<(PathBuf, usize)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            out.push((path, lines));
        }
    }
}

fn is_unit_tests(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
}

#[test]
fn the_readme_architecture_table_names_every_crate_and_only_crates_that_exist() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let rows: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("/` |").map(|(folder, _)| folder.to_owned()))
        .collect();
    for member in members() {
        let top = member.split('/').next().unwrap().to_owned();
        assert!(
            rows.contains(&top),
            "README's architecture table has no row for `{top}/`"
        );
    }
    for folder in &rows {
        assert!(
            root().join(folder).is_dir(),
            "README's architecture table names `{folder}/`, which does not exist"
        );
    }
}

#[test]
fn no_source_file_is_over_400_lines_and_no_crate_holds_over_a_third_of_the_code() {
    let mut per_crate = BTreeMap::new();
    for krate in product_crates() {
        let mut files = Vec::new();
        sources(&root().join(&krate).join("src"), &mut files);
        for (path, lines) in &files {
            assert!(
                *lines <= 400 || is_unit_tests(path),
                "{} has {lines} lines: split it by what its parts do",
                path.display()
            );
        }
        let code: usize = files
            .iter()
            .filter(|(p, _)| !is_unit_tests(p))
            .map(|(_, l)| l)
            .sum();
        per_crate.insert(krate, code);
    }
    let total: usize = per_crate.values().sum();
    for (krate, code) in &per_crate {
        assert!(
            code * 3 <= total,
            "{krate} holds {code} of {total} lines, over a third of the code"
        );
    }
}

/// The top-level module a file of `krate` belongs to (`<root>` for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => "<root>".into(),
        Some(name) => name.into(),
        None => first.into_owned(),
    }
}

/// The top-level modules a path after `crate::` names: `a::b` names `a`, `{a::b, c}` names both.
fn imported_modules(path: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    match path.strip_prefix('{') {
        Some(list) => {
            let list = list.split('}').next().unwrap_or_default();
            list.split(',')
                .map(ident)
                .filter(|m| !m.is_empty())
                .collect()
        }
        None => vec![ident(path)]
            .into_iter()
            .filter(|m| !m.is_empty())
            .collect(),
    }
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    for krate in product_crates() {
        let src = root().join(&krate).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, _) in files.iter().filter(|(p, _)| !is_unit_tests(p)) {
            let module = module_of(&src, path);
            let text = std::fs::read_to_string(path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for part in code.split("crate::").skip(1) {
                for target in imported_modules(part) {
                    if target != module {
                        uses.entry(module.clone()).or_default().insert(target);
                    }
                }
            }
        }
        for (module, targets) in &uses {
            for target in targets {
                let back = uses.get(target).is_some_and(|t| t.contains(module));
                assert!(
                    !back,
                    "{krate}: `{module}` and `{target}` import each other"
                );
            }
        }
    }
}
