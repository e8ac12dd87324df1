//! The README's configuration reference stays in step with the code: every
//! key the loader reads is documented there, and every key the reference
//! tables document is one the loader reads.

use std::collections::BTreeSet;

fn is_key(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

/// The text of every source file under `dir`, its subdirectories included.
fn sources_under(dir: &std::path::Path) -> String {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut text = String::new();
    for p in paths {
        if p.is_dir() {
            text.push_str(&sources_under(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            text.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    text
}

/// The keys the loader (`src/config/load/`, a file per table) asks tables for.
fn keys_read_by_the_loader() -> BTreeSet<String> {
    let src = sources_under(std::path::Path::new("src/config/load"));
    let mut keys = BTreeSet::new();
    let first_literal = |rest: &str| rest.split('"').next().unwrap_or("").to_owned();
    // get("x"), peek("x"), require(cx, "x"), optional(&mut t, "x", num(cx, "x"
    for prefix in [
        "get(\"",
        "peek(\"",
        "require(cx, \"",
        "optional(&mut t, \"",
        "num(cx, \"",
    ] {
        for (i, _) in src.match_indices(prefix) {
            keys.insert(first_literal(&src[i + prefix.len()..]));
        }
    }
    // for (key, slot) in [("shutdown_timeout", &mut d.shutdown_timeout), ...]
    for (i, _) in src.match_indices(", &mut ") {
        let before = &src[..i];
        if let Some(open) = before.rfind("(\"") {
            let lit = &before[open + 2..];
            if let Some(k) = lit.strip_suffix('"')
                && is_key(k)
            {
                keys.insert(k.to_owned());
            }
        }
    }
    // secret(&mut t, "password", "password_file"), secret_url(cx, &mut t, "url", "url_file")
    for prefix in [
        "secret(&mut t, ",
        "secret(&mut b, ",
        "secret_url(cx, &mut t, ",
    ] {
        for (i, _) in src.match_indices(prefix) {
            let rest = &src[i + prefix.len()..];
            let args = &rest[..rest.find(')').unwrap()];
            keys.extend(
                args.split(',')
                    .map(|a| a.trim().trim_matches('"').to_owned()),
            );
        }
    }
    keys.retain(|k| is_key(k));
    keys
}

/// The keys in the first column of the README's configuration tables.
fn keys_in_readme_tables(readme: &str) -> BTreeSet<String> {
    let section = &readme[readme.find("## Configuration").unwrap()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut keys = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap_or("");
        for (n, token) in cell.split('`').enumerate() {
            if n % 2 == 1 && is_key(token) {
                keys.insert(token.to_owned());
            }
        }
    }
    keys
}

#[test]
fn every_key_the_loader_reads_is_documented() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let keys = keys_read_by_the_loader();
    for expected in [
        "shutdown_timeout",
        "notify_max_age",
        "arm_window",
        "verify_for",
        "webhook_url_file",
    ] {
        assert!(
            keys.contains(expected),
            "the scan misses {expected}: {keys:?}"
        );
    }
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from README.md: {missing:?}"
    );
}

#[test]
fn every_key_the_readme_tables_document_exists() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let known = keys_read_by_the_loader();
    let documented = keys_in_readme_tables(&readme);
    assert!(documented.len() > 30, "the scan found only {documented:?}");
    let unknown: Vec<&String> = documented.iter().filter(|k| !known.contains(*k)).collect();
    assert!(
        unknown.is_empty(),
        "README.md documents keys the loader does not read: {unknown:?}"
    );
}

#[test]
fn the_first_commands_are_the_demo_and_the_ci_script() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let block = readme
        .split("## Two commands")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("a sh block under \"Two commands\"");
    let commands: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(commands, ["cargo run --release -- demo", ".ci/run"]);
    assert!(std::path::Path::new(".ci/run").exists());
}
