//! The README's configuration reference stays in step with the code: every
//! key the loader reads is documented there.

/// The keys `src/config/load.rs` asks tables for.
fn keys_read_by_the_loader() -> Vec<String> {
    let src = std::fs::read_to_string("src/config/load.rs").unwrap();
    let mut keys = Vec::new();
    for prefix in [
        "get(\"",
        "require(cx, \"",
        "optional(&mut t, \"",
        "num(cx, \"",
    ] {
        for (i, _) in src.match_indices(prefix) {
            let rest = &src[i + prefix.len()..];
            keys.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    // secret(&mut t, "password", "password_file") and secret_url(cx, &mut t, "url", "url_file")
    for prefix in [
        "secret(&mut t, \"",
        "secret(&mut b, \"",
        "secret_url(cx, &mut t, \"",
    ] {
        for (i, _) in src.match_indices(prefix) {
            let rest = &src[i + prefix.len() - 1..];
            let args = &rest[..rest.find(')').unwrap()];
            keys.extend(
                args.split(',')
                    .map(|a| a.trim().trim_matches('"').to_owned()),
            );
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn every_configuration_key_is_documented_in_the_readme() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let keys = keys_read_by_the_loader();
    assert!(keys.len() > 50, "the scan found only {keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from README.md: {missing:?}"
    );
}
