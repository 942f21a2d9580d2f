//! The architecture's one-way dependencies, checked on the source tree: the sidecar side
//! (`sidecar/`, `sync`, `disk`, `snapshot`) never imports the admin side (`admin`, `ledger`,
//! `relay`, `leader`, `local`) nor the composition roots (`app`, `cli`), and never names the
//! PostgreSQL client crates. Each module may be one file (`src/sync.rs`) or a directory
//! (`src/sync/`); both layouts are covered.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The sidecar side: a module is `src/<name>.rs` and/or `src/<name>/**.rs`.
const SIDECAR_SIDE: &[&str] = &["sidecar", "sync", "disk", "snapshot"];
/// Modules of ours the sidecar side must not import.
const ADMIN_SIDE: &[&str] = &["admin", "ledger", "relay", "leader", "local", "app", "cli"];
/// Crates the sidecar side must not name.
const POSTGRES_CRATES: &[&str] = &[
    "tokio_postgres",
    "deadpool_postgres",
    "deadpool",
    "refinery",
];

#[test]
fn the_sidecar_side_imports_nothing_of_the_admin_side_or_postgres() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for module in SIDECAR_SIDE {
        let files = module_files(&src, module);
        assert!(
            !files.is_empty(),
            "module {module} is neither src/{module}.rs nor src/{module}/: update SIDECAR_SIDE"
        );
        for (file, depth) in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let named = names(&text, depth);
            for bad in ADMIN_SIDE.iter().chain(POSTGRES_CRATES) {
                if named.contains(*bad) {
                    violations.push(format!("{} uses {bad}", file.display()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "the sidecar side must not depend on the admin side (docs/ARCHITECTURE.md, Dependency direction):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_boundary_check_sees_every_form_of_import() {
    let text = r#"
        //! Docs may mention crate::admin and tokio_postgres freely.
        use crate::{snapshot::Snapshot, ledger::{Ledger, LedgerError}};
        use crate::metrics::Metrics;
        /* a block comment naming crate::relay */
        fn f() -> crate::leader::Lease { todo!() }
        type C = tokio_postgres::Client;
        use super::super::local::LocalPublisher;
        use super::read; // crate::cli in a comment
    "#;
    let named = names(text, 1);
    for expected in [
        "snapshot",
        "ledger",
        "metrics",
        "leader",
        "tokio_postgres",
        "local",
    ] {
        assert!(
            named.contains(expected),
            "{expected} not found in {named:?}"
        );
    }
    for hidden in ["admin", "relay", "cli", "read"] {
        assert!(!named.contains(hidden), "{hidden} found in {named:?}");
    }
}

/// The files of `src/<module>.rs` and `src/<module>/**.rs`, each with its depth below `src/`
/// (0 for `src/x.rs`, 1 for `src/x/y.rs`), so `super::super` can be resolved.
fn module_files(src: &Path, module: &str) -> Vec<(PathBuf, usize)> {
    let mut files = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        files.push((file, 0));
    }
    let mut dirs = vec![(src.join(module), 1)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push((path, depth + 1));
            } else if path.extension().is_some_and(|e| e == "rs") {
                // `x/mod.rs` is module `x` itself, one level up.
                let is_mod = path.file_name().is_some_and(|n| n == "mod.rs");
                files.push((path, if is_mod { depth - 1 } else { depth }));
            }
        }
    }
    files
}

/// Every module of ours (`crate::x`, `crate::{x, y::z}`, `super::…::x` reaching the crate root)
/// and every external crate of [`POSTGRES_CRATES`] that the code (not its comments) names.
fn names(text: &str, depth: usize) -> BTreeSet<String> {
    let code = strip_comments(text);
    let mut out = BTreeSet::new();
    let root_super = format!("{}::", vec!["super"; depth + 1].join("::"));
    for prefix in ["crate::".to_owned(), root_super] {
        if depth == 0 && prefix.starts_with("super") {
            continue;
        }
        let mut rest = code.as_str();
        while let Some(i) = rest.find(&prefix) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                out.extend(group_heads(group));
            } else {
                out.insert(ident(rest).to_owned());
            }
        }
    }
    for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if POSTGRES_CRATES.contains(&word) {
            out.insert(word.to_owned());
        }
    }
    out.remove("");
    out
}

/// The first path segment of each item of a `{a, b::c, d::{e, f}}` group (text after `{`).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if at_item_start && depth == 0 && !c.is_whitespace() => {
                heads.push(ident(&group[i..]).to_owned());
                at_item_start = false;
            }
            _ => {}
        }
    }
    heads
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The text without `//…` line comments and `/* … */` block comments.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let line = rest.find("//");
        let block = rest.find("/*");
        match (line, block) {
            (Some(l), b) if b.is_none_or(|b| l < b) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |n| &rest[l + n..]);
            }
            (_, Some(b)) => {
                out.push_str(&rest[..b]);
                rest = rest[b..].find("*/").map_or("", |e| &rest[b + e + 2..]);
            }
            (_, None) => {
                out.push_str(rest);
                return out;
            }
        }
    }
}
