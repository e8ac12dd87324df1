//! The pure comparison of two configurations that a reload acts on: which
//! watches start, stop, restart or keep running (and so keep their state).

use super::Config;

/// What changed between two configurations, by watch name (each list sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// The definition changed: the watch restarts with a fresh streak.
    pub changed: Vec<String>,
    /// The definition is the same (perhaps moved, reordered or re-commented):
    /// the watch keeps its streak, arming and history.
    pub kept: Vec<String>,
}

impl ConfigDiff {
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares the watches of two configurations. A watch is kept when its
/// resolved definition (with `[defaults]` applied) is equal, wherever it is
/// written; the file and line it is on do not matter.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    for w in &new.watches {
        match old.watch(&w.name) {
            None => d.added.push(w.name.clone()),
            Some(o) if o == w => d.kept.push(w.name.clone()),
            Some(_) => d.changed.push(w.name.clone()),
        }
    }
    for w in &old.watches {
        if new.watch(&w.name).is_none() {
            d.removed.push(w.name.clone());
        }
    }
    // `watches` are sorted by name, so the lists are too.
    d
}

/// Settings that a running daemon cannot change: a reload that changes them
/// is refused whole rather than half-applied. Returns one message per setting.
pub fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.daemon.listen != new.daemon.listen {
        out.push(format!(
            "daemon.listen changed from {} to {}; restart rollbackd to apply it",
            old.daemon.listen, new.daemon.listen
        ));
    }
    if old.daemon.state_dir != new.daemon.state_dir {
        out.push(format!(
            "daemon.state_dir changed from {} to {}; restart rollbackd to apply it",
            old.daemon.state_dir.display(),
            new.daemon.state_dir.display()
        ));
    }
    if old.kubernetes.leader_election != new.kubernetes.leader_election {
        out.push("kubernetes.leader_election changed; restart rollbackd to apply it".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(dir: &Path, watches: &str) -> Config {
        let main = dir.join("rollbackd.toml");
        std::fs::write(
            &main,
            format!(
                "[daemon]\nstate_dir = \"{}\"\n[notifiers.n]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:1/x\"\n[defaults]\nnotify = [\"n\"]\n{watches}",
                dir.join("state").display()
            ),
        )
        .unwrap();
        crate::config::load_with_env(&main, &|_| None).unwrap()
    }

    const A: &str = "[[watch]]\nname = \"a\"\ntarget = { kind = \"command\", rollback = [\"true\"] }\n[[watch.health]]\nurl = \"http://127.0.0.1:1/\"\n";
    const B: &str = "[[watch]]\nname = \"b\"\ntarget = { kind = \"command\", rollback = [\"true\"] }\n[[watch.health]]\nurl = \"http://127.0.0.1:2/\"\n";

    #[test]
    fn reordered_and_recommented_watches_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let old = config(dir.path(), &format!("{A}{B}"));
        let new = config(dir.path(), &format!("# moved\n{B}\n# a comment\n{A}"));
        let d = diff(&old, &new);
        assert_eq!(d.kept, ["a", "b"]);
        assert!(d.is_noop());
    }

    #[test]
    fn added_removed_and_changed_watches_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let old = config(dir.path(), A);
        let changed_a = A.replace("127.0.0.1:1/", "127.0.0.1:9/");
        let new = config(dir.path(), &format!("{changed_a}{B}"));
        let d = diff(&old, &new);
        assert_eq!(d.added, ["b"]);
        assert_eq!(d.changed, ["a"]);
        assert!(d.removed.is_empty() && d.kept.is_empty());
        let back = diff(&new, &old);
        assert_eq!(back.removed, ["b"]);
    }

    #[test]
    fn a_changed_default_changes_the_watches_that_inherit_it() {
        let dir = tempfile::tempdir().unwrap();
        let old = config(dir.path(), A);
        let new = config(
            dir.path(),
            &A.replace("[[watch]]", "[[watch]]\ninterval = \"5s\""),
        );
        assert_eq!(diff(&old, &new).changed, ["a"]);
    }

    #[test]
    fn listen_and_state_dir_changes_need_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let old = config(dir.path(), A);
        let mut new = old.clone();
        assert!(restart_required(&old, &new).is_empty());
        new.daemon.listen = "127.0.0.1:1".parse().unwrap();
        new.daemon.state_dir = "/elsewhere".into();
        let msgs = restart_required(&old, &new);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].contains("daemon.listen"));
    }
}
