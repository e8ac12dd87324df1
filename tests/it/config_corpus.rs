//! The malformed-configuration corpus: every case under `tests/config/bad/`
//! is a directory with a `rollbackd.toml` (and any watch files it names) and
//! an `expected` file holding exactly what `rollbackd check` must print, one
//! `FILE:LINE:COLUMN: message` per line.
//!
//! `UPDATE_EXPECT=1 cargo test --test it config_corpus::` rewrites the `expected`
//! files; review the diff before committing it.

use std::path::{Path, PathBuf};

/// The environment every case sees: `${ENV}` references resolve against it
/// and nothing else, so the cases do not depend on the machine.
fn env(name: &str) -> Option<String> {
    match name {
        "CORPUS_SLACK_URL" => Some("https://hooks.slack.test/services/T0/B0/corpus".into()),
        "CORPUS_TOKEN" => Some("corpus-token-value".into()),
        "CORPUS_NOT_A_URL" => Some("not a url".into()),
        _ => None,
    }
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new("tests/config/bad");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("tests/config/bad exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.join("rollbackd.toml").exists())
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_malformed_configuration_gets_exactly_the_expected_errors() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let cases = cases();
    assert!(
        cases.len() >= 30,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let main = case.join("rollbackd.toml");
        let actual = match rollbackd::config::load_with_env(&main, &env) {
            Ok(_) => "(valid)\n".to_owned(),
            Err(errors) => errors.render(),
        };
        let expected_path = case.join("expected");
        if update {
            std::fs::write(&expected_path, &actual).expect("write expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn no_case_is_valid_and_no_error_lacks_a_location() {
    for case in cases() {
        let main = case.join("rollbackd.toml");
        let errors = rollbackd::config::load_with_env(&main, &env)
            .err()
            .unwrap_or_else(|| {
                panic!(
                    "{} is valid, but the corpus is for invalid files",
                    case.display()
                )
            });
        for e in &errors.errors {
            assert!(e.location.line >= 1 && e.location.column >= 1, "{e}");
            assert!(e.location.file.starts_with("tests/config/bad"), "{e}");
        }
    }
}
