//! Reading the configuration (README, "Configuration"): the main file and
//! the watch files that `daemon.watches` names, into a [`Config`] or every
//! error found.
//!
//! Each TOML table has its reader (the submodules), which knows only its own
//! table: it reads it into its typed value and reports what is wrong with
//! it, located, unknown keys included. A `[[watch]]` is read over the
//! settings it inherits from `[defaults]`. What needs more than one table —
//! names that refer to other tables, names and targets unique across files
//! — is checked once everything is read, in [`rules`]. This module reads
//! the files, expands `daemon.watches` into them, and sorts every
//! diagnostic into file and position order.

mod daemon;
mod defaults;
mod kubernetes;
mod notifiers;
mod prometheus;
mod rules;
mod values;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::diag::{ConfigErrors, Diagnostic, Location, Severity, SourceFile};
use super::reader::{Ctx, EnvLookup, Table, Value, io_reason};
use super::secret::SecretSet;
use super::{Config, KubernetesSettings, Notifier, PrometheusSource};
use daemon::{DaemonTable, read_daemon};
use defaults::{DefaultsTable, read_defaults};
use kubernetes::read_kubernetes;
use notifiers::read_notifier;
use prometheus::read_prometheus;
use rules::{Declared, Ruled};
use watch::{WatchTable, read_watch_array};

pub use daemon::log_level_problem;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/rollbackd/rollbackd.toml";

/// Loads and validates the configuration, reading `${ENV}` references from
/// the process environment.
pub fn load(main: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(main, &|name| std::env::var(name).ok())
}

/// Loads and validates the configuration with an explicit environment.
pub fn load_with_env(main: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
    let started = std::time::SystemTime::now();
    let mut diags = Vec::new();
    let mut secrets = SecretSet::default();
    let config = read_all(main, env, &mut diags, &mut secrets);
    // Files in the order their first problem was found. That is the order
    // they were read in, but for a main file whose first problem is a watch
    // file that exists and cannot be read: it is listed where that was found.
    let mut order: Vec<PathBuf> = Vec::new();
    for d in &diags {
        if !order.contains(&d.location.file) {
            order.push(d.location.file.clone());
        }
    }
    // Stable: problems at one place keep the order they were found in.
    diags.sort_by_key(|d| {
        let file = order.iter().position(|f| *f == d.location.file);
        (file, d.location.line, d.location.column)
    });
    let (errors, warnings): (Vec<_>, Vec<_>) = diags
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    match config {
        Some(mut c) if errors.is_empty() => {
            c.warnings = warnings;
            c.secrets = secrets;
            c.loaded_at = started;
            Ok(c)
        }
        _ => Err(ConfigErrors { errors }),
    }
}

fn read_source(
    path: &Path,
    at: Option<Location>,
    diags: &mut Vec<Diagnostic>,
) -> Option<SourceFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(SourceFile::new(path.to_path_buf(), text)),
        Err(e) => {
            let (location, message) = match at {
                Some(loc) => (
                    loc,
                    format!("cannot read {}: {}", path.display(), io_reason(&e)),
                ),
                None => (
                    Location::file(path),
                    format!("cannot read the file: {}", io_reason(&e)),
                ),
            };
            diags.push(Diagnostic {
                location,
                severity: Severity::Error,
                message,
                hint: None,
            });
            None
        }
    }
}

/// Parses TOML, reporting syntax errors; `None` if there were any.
fn parse<'a>(
    src: &'a SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<toml::Spanned<DeTable<'a>>> {
    let (doc, errors) = DeTable::parse_recoverable(&src.text);
    if errors.is_empty() {
        return Some(doc);
    }
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        diags.push(Diagnostic {
            location: src.location(&span),
            severity: Severity::Error,
            message: format!("invalid TOML: {}", e.message().trim_end()),
            hint: None,
        });
    }
    None
}

/// The main file's tables, as read.
struct MainFile {
    daemon: DaemonTable,
    defaults: DefaultsTable,
    kubernetes: Option<KubernetesSettings>,
    prometheus: Named<PrometheusSource>,
    notifiers: Named<Notifier>,
    watches: Vec<WatchTable>,
}

/// A table of named tables (`[prometheus.NAME]`, `[notifiers.NAME]`).
struct Named<T> {
    valid: BTreeMap<String, T>,
    /// Every name, valid or not.
    declared: BTreeSet<String>,
}

/// Reads a table of named tables with `read`, one per name.
fn read_named<T>(
    cx: &mut Ctx<'_>,
    v: Option<&Value<'_>>,
    key: &str,
    read: fn(&mut Ctx<'_>, &str, &Value<'_>) -> Option<T>,
) -> Named<T> {
    let mut out = Named {
        valid: BTreeMap::new(),
        declared: BTreeSet::new(),
    };
    let Some(v) = v else { return out };
    let Some(table) = v.get_ref().as_table() else {
        cx.error(
            &v.span(),
            format!("\"{key}\" must be a table of named tables, like [{key}.NAME]"),
        );
        return out;
    };
    for (name, item) in table.iter() {
        let name = name.get_ref().to_string();
        out.declared.insert(name.clone());
        if let Some(x) = read(cx, &name, item) {
            out.valid.insert(name, x);
        }
    }
    out
}

fn read_main_file(cx: &mut Ctx<'_>, doc: &toml::Spanned<DeTable<'_>>) -> MainFile {
    let mut root = Table::new(doc.get_ref(), doc.span(), "the main file".into());
    let daemon = read_daemon(cx, root.get("daemon"));
    let defaults = read_defaults(cx, root.get("defaults"));
    let kubernetes = read_kubernetes(cx, root.get("kubernetes"));
    let prometheus = read_named(cx, root.get("prometheus"), "prometheus", read_prometheus);
    let notifiers = read_named(cx, root.get("notifiers"), "notifiers", read_notifier);
    let watches = match root.get("watch") {
        Some(v) => read_watch_array(cx, v, &defaults.inherited),
        None => Vec::new(),
    };
    root.finish(cx);
    MainFile {
        daemon,
        defaults,
        kubernetes,
        prometheus,
        notifiers,
        watches,
    }
}

fn read_all(
    main: &Path,
    env: EnvLookup<'_>,
    diags: &mut Vec<Diagnostic>,
    secrets: &mut SecretSet,
) -> Option<Config> {
    // Relative to the main file as it was named, so messages show
    // `etc/watches.d/web.toml` rather than an absolute path.
    let base_dir = main.parent().map(Path::to_path_buf).unwrap_or_default();
    let main_src = read_source(main, None, diags)?;
    let doc = parse(&main_src, diags)?;
    let mut cx = Ctx {
        file: &main_src,
        base_dir: &base_dir,
        env,
        diags,
        secrets,
    };
    let MainFile {
        daemon,
        defaults,
        kubernetes,
        prometheus,
        notifiers,
        mut watches,
    } = read_main_file(&mut cx, &doc);

    let mut files = vec![main.to_path_buf()];
    let watch_file_list: Vec<(PathBuf, Location)> = daemon
        .settings
        .watches
        .iter()
        .zip(&daemon.watches_at)
        .flat_map(|(p, at)| {
            watch_files(p, at, cx.diags)
                .into_iter()
                .map(move |f| (f, at.clone()))
        })
        .collect();
    let diags = cx.diags;
    let secrets = cx.secrets;

    // The same file reached twice (`watches = ["."]` beside the main file,
    // a symlink, `./x` and `x`) is read once.
    let identity = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut seen: BTreeSet<PathBuf> = [identity(main)].into();
    for (path, at) in watch_file_list {
        if !seen.insert(identity(&path)) {
            continue;
        }
        files.push(path.clone());
        let Some(src) = read_source(&path, Some(at), diags) else {
            continue;
        };
        let Some(doc) = parse(&src, diags) else {
            continue;
        };
        let mut cx = Ctx {
            file: &src,
            base_dir: &base_dir,
            env,
            diags,
            secrets,
        };
        let mut root = Table::new(doc.get_ref(), doc.span(), "a watch file".into());
        match root.get("watch") {
            Some(v) => watches.extend(read_watch_array(&mut cx, v, &defaults.inherited)),
            None => cx.warn(&(0..0), "this file defines no [[watch]]"),
        }
        root.finish(&mut cx);
    }

    let declared = Declared {
        notifiers: &notifiers.declared,
        sources: &prometheus.declared,
    };
    let Ruled {
        mut watches,
        origins,
        diagnostics,
    } = rules::check(&declared, &defaults.notify, watches);
    *diags = rules::file_among(std::mem::take(diags), diagnostics);

    watches.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Config {
        main_file: main.to_path_buf(),
        daemon: daemon.settings,
        kubernetes: kubernetes?,
        prometheus: prometheus.valid,
        notifiers: notifiers.valid,
        watches,
        origins,
        files,
        warnings: Vec::new(),
        secrets: SecretSet::default(),
        loaded_at: std::time::SystemTime::UNIX_EPOCH,
    })
}

/// The `*.toml` files of a watch path: the file itself, or a directory's
/// files in name order. Hidden entries are skipped, which also skips the
/// `..data` machinery of Kubernetes ConfigMap volumes.
fn watch_files(path: &Path, at: &Location, diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let err = |diags: &mut Vec<Diagnostic>, message: String| {
        diags.push(Diagnostic {
            location: at.clone(),
            severity: Severity::Error,
            message,
            hint: None,
        })
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            err(
                diags,
                format!("watch path {}: {}", path.display(), io_reason(&e)),
            );
            return Vec::new();
        }
    };
    if meta.is_file() {
        return vec![path.to_path_buf()];
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            err(
                diags,
                format!("cannot list {}: {}", path.display(), io_reason(&e)),
            );
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && name.ends_with(".toml") && p.is_file()
        })
        .collect();
    files.sort();
    files
}
