//! File-system events on the configuration, turned into reload requests.
//!
//! Directories are watched rather than files: editors replace a file by
//! renaming a new one over it, and Kubernetes ConfigMap volumes swap a
//! `..data` symlink without ever touching the file names we know. Any event
//! in a watch directory, or naming a configured file, asks for a reload; the
//! reload rescans everything, so what exactly changed does not matter.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

use super::Control;
use crate::config::Config;

/// Long enough to fold an editor's write-rename-chmod into one reload, short
/// enough that a change applies well within the 2 s the README promises.
const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Interest {
    /// Watch directories: any event in them counts.
    dirs: BTreeSet<PathBuf>,
    /// The main file and watch files named directly.
    files: BTreeSet<PathBuf>,
}

impl Interest {
    fn of(config: &Config) -> Self {
        let mut i = Interest::default();
        i.files.insert(absolute(&config.main_file));
        for p in &config.daemon.watches {
            let p = absolute(p);
            if p.is_dir() {
                i.dirs.insert(p);
            } else {
                i.files.insert(p);
            }
        }
        i
    }

    /// The directories to ask the kernel about.
    fn watched(&self) -> BTreeSet<PathBuf> {
        let mut out = self.dirs.clone();
        out.extend(
            self.files
                .iter()
                .filter_map(|f| f.parent().map(Path::to_path_buf)),
        );
        out
    }

    fn wants(&self, path: &Path) -> bool {
        if self.files.contains(path) || self.dirs.contains(path) {
            return true;
        }
        let Some(parent) = path.parent() else {
            return false;
        };
        if self.dirs.contains(parent) {
            return true;
        }
        // A ConfigMap swap beside a configured file (`..data`, `..2026_…`).
        let hidden_swap = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".."));
        hidden_swap && self.files.iter().any(|f| f.parent() == Some(parent))
    }
}

/// Whether an event can mean new content. Reading the files (as every
/// reload does) raises access events: reacting to those would loop.
fn changes(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub struct ConfigWatcher {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    interest: Arc<RwLock<Interest>>,
    watched: BTreeSet<PathBuf>,
}

impl ConfigWatcher {
    pub fn start(config: &Config, control: mpsc::Sender<Control>) -> notify::Result<Self> {
        let interest = Arc::new(RwLock::new(Interest::default()));
        let seen = interest.clone();
        let debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| match res {
            Ok(events) => {
                let wanted = seen.read().is_ok_and(|i| {
                    events
                        .iter()
                        .filter(|e| changes(&e.kind))
                        .any(|e| e.paths.iter().any(|p| i.wants(p)))
                });
                if wanted {
                    // A full queue already holds a reload that will rescan.
                    let _ = control.try_send(Control::Reload {
                        cause: "file change",
                    });
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!(error = %e, "configuration file watcher error");
                }
            }
        })?;
        let mut w = Self {
            debouncer,
            interest,
            watched: BTreeSet::new(),
        };
        w.update(config);
        Ok(w)
    }

    /// Follows the configuration's list of files and directories.
    pub fn update(&mut self, config: &Config) {
        let interest = Interest::of(config);
        let wanted = interest.watched();
        if let Ok(mut i) = self.interest.write() {
            *i = interest;
        }
        self.rewatch(wanted);
    }

    /// Watches the current directories anew. A kernel watch follows an
    /// inode: a watch directory that was replaced (moved away and created
    /// again) would otherwise never be heard from again.
    pub fn refresh(&mut self) {
        let wanted = self
            .interest
            .read()
            .map(|i| i.watched())
            .unwrap_or_default();
        self.rewatch(wanted);
    }

    fn rewatch(&mut self, wanted: BTreeSet<PathBuf>) {
        for dir in &self.watched {
            let _ = self.debouncer.unwatch(dir);
        }
        for dir in &wanted {
            if let Err(e) = self.debouncer.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(path = %dir.display(), error = %e, "cannot watch for configuration changes; SIGHUP still reloads");
            }
        }
        self.watched = wanted;
    }
}

/// Whether any configuration file or watch directory changed at or after
/// `since` (an edit made while the daemon was starting, before it watched).
pub fn changed_since(config: &Config, since: std::time::SystemTime) -> bool {
    let mut paths: Vec<&Path> = config.files.iter().map(PathBuf::as_path).collect();
    paths.extend(config.daemon.watches.iter().map(PathBuf::as_path));
    paths.iter().any(|p| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interest() -> Interest {
        Interest {
            dirs: ["/etc/rollbackd/watches.d".into()].into(),
            files: [
                "/etc/rollbackd/rollbackd.toml".into(),
                "/srv/extra/one.toml".into(),
            ]
            .into(),
        }
    }

    #[test]
    fn any_event_in_a_watch_directory_counts() {
        let i = interest();
        assert!(i.wants(Path::new("/etc/rollbackd/watches.d/web.toml")));
        assert!(i.wants(Path::new("/etc/rollbackd/watches.d/..data")));
        assert!(i.wants(Path::new("/etc/rollbackd/watches.d")));
    }

    #[test]
    fn beside_a_file_only_that_file_and_configmap_swaps_count() {
        let i = interest();
        assert!(i.wants(Path::new("/etc/rollbackd/rollbackd.toml")));
        assert!(i.wants(Path::new("/srv/extra/..data")));
        assert!(!i.wants(Path::new("/srv/extra/unrelated.toml")));
        assert!(!i.wants(Path::new("/etc/rollbackd/rollbackd.toml.swp")));
    }

    #[test]
    fn reading_a_file_is_not_a_change_but_closing_a_written_one_is() {
        use notify::event::{CreateKind, ModifyKind};
        assert!(!changes(&EventKind::Access(AccessKind::Open(
            AccessMode::Read
        ))));
        assert!(!changes(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn watches_directories_not_files() {
        let w = interest().watched();
        let expected: BTreeSet<PathBuf> = [
            "/etc/rollbackd".into(),
            "/etc/rollbackd/watches.d".into(),
            "/srv/extra".into(),
        ]
        .into();
        assert_eq!(w, expected);
    }
}
