//! The pure comparison of two configurations that a reload acts on: which
//! watches start, stop, restart or keep running (and so keep their state).
//!
//! [`ConfigDiff`] is the one diff of a reload: the same value is logged and
//! applied, so the log says what was done.

use std::collections::BTreeMap;

use super::{Config, Watch};

/// What a reload does to the watches, by name (each list sorted): the diff
/// a reload logs and the one it applies.
///
/// A watch is `kept` exactly when its definition, the [`Watch`] with
/// `[defaults]` applied, is `==` on both sides: where it is written (file,
/// line, order, comments) is no part of it, and neither are the
/// `[notifiers.NAME]` and `[prometheus.NAME]` tables it names, so editing
/// one of those changes no watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// New names: the watch starts (from its saved memory, if any).
    pub added: Vec<String>,
    /// Names no longer defined: the watch's memory is saved and it stops.
    pub removed: Vec<String>,
    /// The definition changed: the watch restarts with a fresh streak.
    pub changed: Vec<String>,
    /// The definition is the same (perhaps moved, reordered or re-commented):
    /// the watch keeps its streak, arming and history.
    pub kept: Vec<String>,
}

/// What applying a [`ConfigDiff`] does to one watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchChange {
    Added,
    Removed,
    Changed,
    Kept,
}

impl ConfigDiff {
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Every watch of either side with what happens to it, in the order to
    /// apply: the removed first, so that a watch stops before another may
    /// start on the target it had (a renamed watch), then the new side's
    /// watches by name. The definitions to start are the new side's
    /// ([`Config::watch`] of the configuration the diff was made against).
    pub fn changes(&self) -> Vec<(&str, WatchChange)> {
        let mut rest: Vec<(&str, WatchChange)> = [
            (&self.added, WatchChange::Added),
            (&self.changed, WatchChange::Changed),
            (&self.kept, WatchChange::Kept),
        ]
        .into_iter()
        .flat_map(|(names, change)| names.iter().map(move |n| (n.as_str(), change)))
        .collect();
        rest.sort_by_key(|(name, _)| *name);
        self.removed
            .iter()
            .map(|n| (n.as_str(), WatchChange::Removed))
            .chain(rest)
            .collect()
    }
}

/// Compares the watches of two configurations (see [`ConfigDiff`]).
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    diff_watches(&old.watches, &new.watches)
}

/// Compares two sets of watch definitions, such as the running ones with a
/// configuration's, when what runs is not a configuration's watches (a
/// daemon that becomes the leader runs none yet: every watch is added).
pub fn diff_watches<'a>(
    old: impl IntoIterator<Item = &'a Watch>,
    new: impl IntoIterator<Item = &'a Watch>,
) -> ConfigDiff {
    fn by_name<'a>(ws: impl IntoIterator<Item = &'a Watch>) -> BTreeMap<&'a str, &'a Watch> {
        ws.into_iter().map(|w| (w.name.as_str(), w)).collect()
    }
    let (old, new) = (by_name(old), by_name(new));
    let mut d = ConfigDiff::default();
    for (name, w) in &new {
        match old.get(name) {
            None => d.added.push((*name).to_owned()),
            Some(o) if o == w => d.kept.push((*name).to_owned()),
            Some(_) => d.changed.push((*name).to_owned()),
        }
    }
    d.removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .map(|name| (*name).to_owned())
        .collect();
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
    //! The diff of configurations read from files, as a reload reads them.

    use super::*;
    use std::path::Path;

    fn config(dir: &Path, watches: &str) -> Config {
        config_with(dir, "", watches)
    }

    /// `daemon` is added to `[daemon]`; `rest` follows `[defaults]`.
    fn config_with(dir: &Path, daemon: &str, rest: &str) -> Config {
        let main = dir.join("rollbackd.toml");
        std::fs::write(
            &main,
            format!(
                "[daemon]\nstate_dir = \"{}\"\n{daemon}\n[notifiers.n]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:1/x\"\n[defaults]\nnotify = [\"n\"]\n{rest}",
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
    fn a_watch_moved_to_another_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let old = config(dir.path(), &format!("{A}{B}"));
        std::fs::create_dir(dir.path().join("w")).unwrap();
        std::fs::write(dir.path().join("w/a.toml"), A).unwrap();
        let new = config_with(dir.path(), "watches = [\"w\"]", B);
        assert_ne!(old.origins["a"], new.origins["a"]);
        let d = diff(&old, &new);
        assert_eq!(d.kept, ["a", "b"]);
        assert!(d.is_noop());
    }

    #[test]
    fn editing_a_notifier_or_a_source_that_a_watch_names_changes_no_watch() {
        let dir = tempfile::tempdir().unwrap();
        let with = |port: u16| {
            let check = "[[watch.prometheus]]\nname = \"q\"\nquery = \"up\"\nmax = 1\n";
            config(
                dir.path(),
                &format!(
                    "[notifiers.m]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/m\"\n\
                     [prometheus.default]\nurl = \"http://127.0.0.1:{port}\"\n\
                     {}{check}",
                    A.replace(
                        "[[watch.health]]",
                        "notify = [\"n\", \"m\"]\n[[watch.health]]"
                    )
                ),
            )
        };
        let (old, new) = (with(9090), with(9091));
        assert_ne!(old.notifiers, new.notifiers);
        assert_ne!(old.prometheus, new.prometheus);
        assert_eq!(diff(&old, &new).kept, ["a"]);
    }

    #[test]
    fn changes_come_removed_first_then_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let z = B.replace("name = \"b\"", "name = \"z\"");
        let old = config(dir.path(), &format!("{z}{B}"));
        let changed_b = B.replace("127.0.0.1:2/", "127.0.0.1:3/");
        let new = config(dir.path(), &format!("{A}{changed_b}"));
        let d = diff(&old, &new);
        assert_eq!(
            d.changes(),
            [
                ("z", WatchChange::Removed),
                ("a", WatchChange::Added),
                ("b", WatchChange::Changed),
            ]
        );
        let same = diff(&new, &new);
        assert_eq!(
            same.changes(),
            [("a", WatchChange::Kept), ("b", WatchChange::Kept)]
        );
    }

    #[test]
    fn against_no_running_watch_every_watch_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), &format!("{B}{A}"));
        let d = diff_watches([], &c.watches);
        assert_eq!(d.added, ["a", "b"]);
        assert!(d.removed.is_empty() && d.changed.is_empty() && d.kept.is_empty());
        assert_eq!(diff_watches(&c.watches, &c.watches), diff(&c, &c));
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
