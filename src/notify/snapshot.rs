//! Snapshot files for the rendering tests, under `tests/snapshots/`.
//! `UPDATE_EXPECT=1 cargo test --lib notify::` rewrites them; review the diff.

use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name)
}

pub fn assert_snapshot(name: &str, actual: &str) {
    let p = path(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with UPDATE_EXPECT=1 cargo test --lib notify::",
            p.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering, first at line {}:\n--- expected\n{}\n--- actual\n{}\n(UPDATE_EXPECT=1 rewrites it)",
            p.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        );
    }
}
