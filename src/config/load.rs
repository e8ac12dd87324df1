//! The schema of SPEC §3: reads the main file and the watch files into a
//! [`Config`], collecting every error.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::de::DeTable;

use super::diag::{ConfigErrors, Diagnostic, Location, Severity, SourceFile, did_you_mean};
use super::reader::{Ctx, EnvLookup, Sensitivity, Table, Value, io_reason, one_of, resolve};
use super::secret::{Secret, SecretSet};
use super::*;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/rollbackd/rollbackd.toml";

const MIN_INTERVAL: Duration = Duration::from_millis(10);

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
    let config = load_inner(main, env, &mut diags, &mut secrets);
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

/// What the main file provides to the watch files.
struct Shared<'a> {
    defaults: &'a WatchSettings,
    /// False when `[defaults] interval` was invalid (and reported).
    defaults_interval_ok: bool,
    /// Declared names, valid or not: a reference to a notifier whose own
    /// table has an error is not a second error.
    notifiers: &'a BTreeSet<String>,
    sources: &'a BTreeSet<String>,
}

fn declared(v: Option<&Value<'_>>) -> BTreeSet<String> {
    v.and_then(|v| v.get_ref().as_table())
        .map(|t| t.iter().map(|(k, _)| k.get_ref().to_string()).collect())
        .unwrap_or_default()
}

fn load_inner(
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
    let mut root = Table::new(doc.get_ref(), doc.span(), "the main file".into());

    let daemon = read_daemon(&mut cx, root.get("daemon"));
    let (defaults, defaults_interval_ok) = match root.get("defaults") {
        Some(v) => cx
            .table("defaults", v, "[defaults]")
            .map(|mut t| {
                let s = read_settings(&mut cx, &mut t, &WatchSettings::default(), None);
                t.finish(&mut cx);
                s
            })
            .unwrap_or_default(),
        None => (WatchSettings::default(), true),
    };
    let kubernetes = read_kubernetes(&mut cx, root.get("kubernetes"));
    let sources = read_named(
        &mut cx,
        root.get("prometheus"),
        "prometheus",
        read_source_table,
    );
    let notifiers = read_named(&mut cx, root.get("notifiers"), "notifiers", read_notifier);
    let notifier_names = declared(root.peek("notifiers"));
    let source_names = declared(root.peek("prometheus"));
    // [defaults] comes before the notifiers it names: check its references now.
    if let Some(v) = root
        .peek("defaults")
        .and_then(|d| d.get_ref().get("notify"))
    {
        check_notify_refs(&mut cx, &defaults.notify, v, &notifier_names);
    }

    let shared = Shared {
        defaults: &defaults,
        defaults_interval_ok,
        notifiers: &notifier_names,
        sources: &source_names,
    };
    let mut collected = Collected::default();
    if let Some(v) = root.get("watch") {
        read_watch_array(&mut cx, v, &shared, &mut collected);
    }
    root.finish(&mut cx);

    let mut files = vec![main.to_path_buf()];
    let watch_spans = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "daemon")
        .and_then(|(_, d)| d.get_ref().get("watches"))
        .and_then(|w| w.get_ref().as_array())
        .map(|a| a.iter().map(|i| i.span()).collect::<Vec<_>>())
        .unwrap_or_default();
    let watch_file_list: Vec<(PathBuf, Location)> = daemon
        .watches
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            let at = cx.loc(watch_spans.get(i).unwrap_or(&(0..0)));
            watch_files(p, &at, cx.diags)
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
            Some(v) => read_watch_array(&mut cx, v, &shared, &mut collected),
            None => cx.warn(&(0..0), "this file defines no [[watch]]"),
        }
        root.finish(&mut cx);
    }

    let Collected {
        mut watches,
        origins,
        ..
    } = collected;
    watches.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Config {
        main_file: main.to_path_buf(),
        daemon,
        kubernetes: kubernetes?,
        prometheus: sources,
        notifiers,
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

fn read_daemon(cx: &mut Ctx<'_>, v: Option<&Value<'_>>) -> DaemonSettings {
    let mut d = DaemonSettings {
        watches: Vec::new(),
        state_dir: PathBuf::from("/var/lib/rollbackd"),
        listen: SocketAddr::from(([127, 0, 0, 1], 9187)),
        log_format: LogFormat::Text,
        log_level: "info".into(),
        control_token: None,
        shutdown_timeout: Duration::from_secs(30),
        notify_max_age: Duration::from_secs(24 * 3600),
    };
    let Some(mut t) = v.and_then(|v| cx.table("daemon", v, "[daemon]")) else {
        return d;
    };
    // Errors are recorded in `cx`; defaults stand in so that reading goes on.
    if let Some(list) = t.get("watches").and_then(|v| cx.string_list("watches", v)) {
        for (p, span) in list {
            if p.is_empty() {
                cx.error(&span, "\"watches\": a path must not be empty");
            } else {
                d.watches.push(resolve(cx.base_dir, Path::new(&p)));
            }
        }
    }
    if let Some(p) = t.get("state_dir").and_then(|v| cx.path("state_dir", v)) {
        d.state_dir = p;
    }
    if let Some(v) = t.get("listen")
        && let Some(s) = cx.string("listen", v)
    {
        match SocketAddr::from_str(&s) {
            Ok(a) => d.listen = a,
            Err(_) => cx.error_hint(
                &v.span(),
                format!("\"listen\": \"{s}\" is not an address and port like \"127.0.0.1:9187\""),
                Some("write an IP address; host names are not resolved, and \"[::]:9187\" or \"0.0.0.0:9187\" listen everywhere".into()),
            ),
        }
    }
    if let Some(f) = t.get("log_format").and_then(|v| {
        cx.choice(
            "log_format",
            v,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )
    }) {
        d.log_format = f;
    }
    if let Some(v) = t.get("log_level")
        && let Some(s) = cx.string("log_level", v)
    {
        match log_level_problem(&s) {
            None => d.log_level = s,
            Some((message, hint)) => cx.error_hint(&v.span(), message, Some(hint)),
        }
    }
    d.control_token = cx.secret(&mut t, "control_token", "control_token_file");
    for (key, slot) in [
        ("shutdown_timeout", &mut d.shutdown_timeout),
        ("notify_max_age", &mut d.notify_max_age),
    ] {
        if let Some(x) = t.get(key).and_then(|v| cx.duration(key, v)) {
            *slot = x;
        }
    }
    t.finish(cx);
    d
}

/// Why a `log_level` is unusable, with a hint. A bare word is a target
/// filter to `EnvFilter`, so `"warning"` would silently log nothing: only
/// level names may stand alone.
pub fn log_level_problem(s: &str) -> Option<(String, String)> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let usage = "use error, warn, info, debug or trace, or a filter like \"info,rollbackd=debug\"";
    if tracing_subscriber::EnvFilter::builder().parse(s).is_err() {
        return Some((
            format!("\"log_level\": \"{s}\" is not a level or filter"),
            usage.into(),
        ));
    }
    let bare = s
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.contains('=') && !d.contains('['))
        .find(|d| !LEVELS.contains(&d.to_ascii_lowercase().as_str()))?;
    let hint = did_you_mean(bare, LEVELS)
        .unwrap_or_else(|| format!("{usage}; to filter by module write \"{bare}=debug\""));
    Some((format!("\"log_level\": \"{bare}\" is not a level"), hint))
}

fn read_kubernetes(cx: &mut Ctx<'_>, v: Option<&Value<'_>>) -> Option<KubernetesSettings> {
    let mut k = KubernetesSettings {
        kubeconfig: None,
        context: None,
        request_timeout: Duration::from_secs(30),
        leader_election: None,
    };
    let Some(v) = v else { return Some(k) };
    let mut t = cx.table("kubernetes", v, "[kubernetes]")?;
    let mut ok = true;
    if let Some(v) = t.get("kubeconfig") {
        k.kubeconfig = cx.path("kubeconfig", v);
        ok &= k.kubeconfig.is_some();
    }
    if let Some(v) = t.get("context") {
        k.context = cx.nonempty_string("context", v);
        ok &= k.context.is_some();
    }
    if let Some(v) = t.get("request_timeout") {
        match cx.duration_min("request_timeout", v, Duration::from_millis(100)) {
            Some(d) => k.request_timeout = d,
            None => ok = false,
        }
    }
    if let Some(v) = t.get("leader_election") {
        k.leader_election = read_leader_election(cx, v);
        ok &= k.leader_election.is_some();
    }
    t.finish(cx);
    ok.then_some(k)
}

fn read_leader_election(cx: &mut Ctx<'_>, v: &Value<'_>) -> Option<LeaderElection> {
    let mut t = cx.table("leader_election", v, "leader_election")?;
    let lease = t
        .require(cx, "lease")
        .and_then(|v| dns_name(cx, "lease", v, 253));
    let namespace = t
        .require(cx, "namespace")
        .and_then(|v| dns_name(cx, "namespace", v, 63));
    let lease_duration = match t.get("lease_duration") {
        Some(v) => cx.duration_min("lease_duration", v, Duration::from_secs(1)),
        None => Some(Duration::from_secs(15)),
    };
    t.finish(cx);
    Some(LeaderElection {
        lease: lease?,
        namespace: namespace?,
        lease_duration: lease_duration?,
    })
}

/// Reads a table of named tables (`[prometheus.NAME]`, `[notifiers.NAME]`).
fn read_named<T>(
    cx: &mut Ctx<'_>,
    v: Option<&Value<'_>>,
    key: &str,
    read: fn(&mut Ctx<'_>, &str, &Value<'_>) -> Option<T>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
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
        if let Some(x) = read(cx, &name, item) {
            out.insert(name, x);
        }
    }
    out
}

fn http_url(cx: &mut Ctx<'_>, key: &str, s: &str, span: &Range<usize>) -> bool {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if let Some(p) = u.password() {
                // The URL keeps it percent-encoded; requests send it decoded.
                cx.register_secret(p, span);
                if let Ok(decoded) = percent_encoding::percent_decode_str(p).decode_utf8() {
                    cx.register_secret(&decoded, span);
                }
            }
            true
        }
        // The value may hold a token: say what is wrong, never echo it. Only
        // a well-known scheme is named; anything else may be part of a secret
        // (`token:x` parses as scheme "token").
        Ok(u) if KNOWN_SCHEMES.contains(&u.scheme()) => {
            cx.error(
                span,
                format!(
                    "\"{key}\" must be an http:// or https:// URL, not {}://",
                    u.scheme()
                ),
            );
            false
        }
        _ => {
            cx.error_hint(
                span,
                format!("\"{key}\" is not an http:// or https:// URL"),
                Some("write the scheme, like \"http://host:port/path\"".into()),
            );
            false
        }
    }
}

/// Schemes that are safe to name in an error message.
const KNOWN_SCHEMES: &[&str] = &[
    "ftp", "ftps", "file", "tcp", "udp", "unix", "ws", "wss", "grpc", "smtp", "smtps", "mailto",
    "ssh", "git", "redis", "postgres", "mysql", "amqp", "ldap", "s3",
];

fn read_source_table(cx: &mut Ctx<'_>, name: &str, v: &Value<'_>) -> Option<PrometheusSource> {
    let mut t = cx.table(name, v, format!("[prometheus.{name}]"))?;
    let url = t.require(cx, "url").and_then(|v| {
        let s = cx.string_as("url", v, Sensitivity::Secret)?;
        http_url(cx, "url", &s, &v.span()).then_some(s)
    });
    let timeout = match t.get("timeout") {
        Some(v) => cx.duration_min("timeout", v, Duration::from_millis(10)),
        None => Some(Duration::from_secs(10)),
    };
    let bearer = cx.secret(&mut t, "bearer_token", "bearer_token_file");
    let basic = t.get("basic_auth").and_then(|v| {
        let mut b = cx.table("basic_auth", v, "basic_auth")?;
        let username = b
            .require(cx, "username")
            .and_then(|v| cx.nonempty_string("username", v));
        let password = cx.secret(&mut b, "password", "password_file");
        if password.is_none() && b.peek("password").is_none() && b.peek("password_file").is_none() {
            cx.error(
                &b.span,
                "basic_auth is missing \"password\" or \"password_file\"",
            );
        }
        b.finish(cx);
        Some((username?, password?))
    });
    let auth = match (bearer, basic) {
        (Some(_), Some(_)) => {
            cx.error(
                &t.span,
                format!("[prometheus.{name}] sets both a bearer token and basic_auth; choose one"),
            );
            HttpAuth::None
        }
        (Some(b), None) => HttpAuth::Bearer(b),
        (None, Some((username, password))) => HttpAuth::Basic { username, password },
        (None, None) => HttpAuth::None,
    };
    let headers = optional(&mut t, "headers", |v| read_headers(cx, v));
    let ca_file = optional(&mut t, "ca_file", |v| readable_file(cx, "ca_file", v));
    t.finish(cx);
    Some(PrometheusSource {
        url: url?,
        timeout: timeout?,
        auth,
        headers: headers.ok()?.unwrap_or_default(),
        ca_file: ca_file.ok()?,
    })
}

/// HTTP headers; every value is treated as a secret (they carry tokens).
fn read_headers(cx: &mut Ctx<'_>, v: &Value<'_>) -> Option<BTreeMap<String, Secret>> {
    let map = cx.string_map("headers", v, Sensitivity::Secret)?;
    let key_span = |name: &str| {
        v.get_ref()
            .as_table()
            .and_then(|t| t.iter().find(|(k, _)| k.get_ref() == name))
            .map_or(v.span(), |(k, _)| k.span())
    };
    let mut ok = true;
    for (k, val) in &map {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            cx.error(
                &key_span(k),
                format!("\"headers\": \"{k}\" is not a valid header name"),
            );
            ok = false;
        } else if reqwest::header::HeaderValue::from_str(val).is_err() {
            cx.error(
                &key_span(k),
                format!("\"headers\": the value of \"{k}\" is not a valid header value"),
            );
            ok = false;
        }
    }
    ok.then(|| map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
}

fn readable_file(cx: &mut Ctx<'_>, key: &str, v: &Value<'_>) -> Option<PathBuf> {
    let p = cx.path(key, v)?;
    match std::fs::File::open(&p) {
        Ok(_) => Some(p),
        Err(e) => {
            cx.error(
                &v.span(),
                format!("\"{key}\": cannot read {}: {}", p.display(), io_reason(&e)),
            );
            None
        }
    }
}

fn optional<T>(
    t: &mut Table<'_, '_>,
    key: &'static str,
    read: impl FnOnce(&Value<'_>) -> Option<T>,
) -> Result<Option<T>, ()> {
    match t.get(key) {
        Some(v) => read(v).map(Some).ok_or(()),
        None => Ok(None),
    }
}

fn read_notifier(cx: &mut Ctx<'_>, name: &str, v: &Value<'_>) -> Option<Notifier> {
    let mut t = cx.table(name, v, format!("[notifiers.{name}]"))?;
    #[derive(Clone, Copy)]
    enum Kind {
        Slack,
        Email,
        Webhook,
    }
    const TYPES: &[(&str, Kind)] = &[
        ("slack", Kind::Slack),
        ("email", Kind::Email),
        ("webhook", Kind::Webhook),
    ];
    let kind = match t.get("type") {
        Some(v) => cx.choice("type", v, TYPES),
        None => {
            cx.error_hint(
                &t.span,
                format!("{} is missing the required key \"type\"", t.what),
                Some("it is \"slack\", \"email\" or \"webhook\"; use \"webhook\" for any other service".into()),
            );
            None
        }
    };
    let Some(kind) = kind else {
        t.finish_any_variant(cx, NOTIFIER_KEYS);
        return None;
    };
    let timeout_default = match kind {
        Kind::Email => Duration::from_secs(30),
        _ => Duration::from_secs(10),
    };
    let timeout = match t.get("timeout") {
        Some(v) => cx.duration_min("timeout", v, Duration::from_millis(10)),
        None => Some(timeout_default),
    };
    let n = match kind {
        Kind::Slack => {
            let url = secret_url(cx, &mut t, "webhook_url", "webhook_url_file");
            let channel = optional(&mut t, "channel", |v| cx.nonempty_string("channel", v));
            let username = optional(&mut t, "username", |v| cx.nonempty_string("username", v));
            let icon_emoji = optional(&mut t, "icon_emoji", |v| {
                cx.nonempty_string("icon_emoji", v)
            });
            t.finish(cx);
            Notifier::Slack(SlackNotifier {
                webhook_url: url?,
                channel: channel.ok()?,
                username: username.ok()?,
                icon_emoji: icon_emoji.ok()?,
                timeout: timeout?,
            })
        }
        Kind::Webhook => {
            let url = secret_url(cx, &mut t, "url", "url_file");
            let headers = optional(&mut t, "headers", |v| read_headers(cx, v));
            let hmac = cx.secret(&mut t, "hmac_secret", "hmac_secret_file");
            t.finish(cx);
            Notifier::Webhook(WebhookNotifier {
                url: url?,
                headers: headers.ok()?.unwrap_or_default(),
                hmac_secret: hmac,
                timeout: timeout?,
            })
        }
        Kind::Email => read_email(cx, t, timeout)?,
    };
    Some(n)
}

/// A URL that is a secret in itself (Slack webhook URLs are credentials).
fn secret_url(
    cx: &mut Ctx<'_>,
    t: &mut Table<'_, '_>,
    key: &'static str,
    file_key: &'static str,
) -> Option<Secret> {
    let s = cx.secret(t, key, file_key);
    let Some(s) = s else {
        if t.peek(key).is_none() && t.peek(file_key).is_none() {
            cx.error(
                &t.span,
                format!("{} is missing \"{key}\" (or \"{file_key}\")", t.what),
            );
        }
        return None;
    };
    let span = t
        .peek(key)
        .or_else(|| t.peek(file_key))
        .map(|v| v.span())
        .unwrap_or(t.span.clone());
    http_url(cx, key, s.expose(), &span).then_some(s)
}

fn mailbox(cx: &mut Ctx<'_>, key: &str, s: &str, span: &Range<usize>) -> bool {
    match lettre::message::Mailbox::from_str(s) {
        Ok(_) => true,
        Err(_) => {
            cx.error(
                span,
                format!(
                    "\"{key}\": \"{s}\" is not an email address like \"name <user@example.com>\""
                ),
            );
            false
        }
    }
}

/// Every key of every notifier type.
const NOTIFIER_KEYS: &[&str] = &[
    "timeout",
    "webhook_url",
    "webhook_url_file",
    "channel",
    "username",
    "icon_emoji",
    "url",
    "url_file",
    "headers",
    "hmac_secret",
    "hmac_secret_file",
    "smtp_host",
    "smtp_port",
    "tls",
    "password",
    "password_file",
    "ca_file",
    "from",
    "to",
];

fn read_email(
    cx: &mut Ctx<'_>,
    mut t: Table<'_, '_>,
    timeout: Option<Duration>,
) -> Option<Notifier> {
    let host = t
        .require(cx, "smtp_host")
        .and_then(|v| cx.nonempty_string("smtp_host", v));
    let tls = match t.get("tls") {
        Some(v) => cx.choice(
            "tls",
            v,
            &[
                ("starttls", SmtpTls::StartTls),
                ("tls", SmtpTls::Tls),
                ("none", SmtpTls::None),
            ],
        ),
        None => Some(SmtpTls::StartTls),
    };
    let port = match t.get("smtp_port") {
        Some(v) => cx.int("smtp_port", v, 1, 65535).map(|p| p as u16),
        None => tls.map(|t| match t {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }),
    };
    let username = optional(&mut t, "username", |v| cx.nonempty_string("username", v));
    let password = cx.secret(&mut t, "password", "password_file");
    if password.is_some() && !matches!(username, Ok(Some(_))) {
        let at = t
            .peek("password")
            .or_else(|| t.peek("password_file"))
            .map_or(t.span.clone(), |v| v.span());
        cx.error(
            &at,
            format!("{} sets a password but no \"username\"", t.what),
        );
    }
    let ca_file = optional(&mut t, "ca_file", |v| readable_file(cx, "ca_file", v));
    let from = t.require(cx, "from").and_then(|v| {
        let s = cx.nonempty_string("from", v)?;
        mailbox(cx, "from", &s, &v.span()).then_some(s)
    });
    let to = t.require(cx, "to").and_then(|v| {
        let list = cx.string_list("to", v)?;
        if list.is_empty() {
            cx.error(&v.span(), "\"to\" must list at least one address");
            return None;
        }
        let mut ok = true;
        for (s, span) in &list {
            ok &= mailbox(cx, "to", s, span);
        }
        ok.then(|| list.into_iter().map(|(s, _)| s).collect())
    });
    t.finish(cx);
    Some(Notifier::Email(EmailNotifier {
        smtp_host: host?,
        smtp_port: port?,
        tls: tls?,
        username: username.ok()?,
        password,
        ca_file: ca_file.ok()?,
        from: from?,
        to: to?,
        timeout: timeout?,
    }))
}

/// Reads the keys of [`WatchSettings`] from `t` over `base`. `notifiers` is
/// `None` for `[defaults]`, whose references are checked later.
fn read_settings(
    cx: &mut Ctx<'_>,
    t: &mut Table<'_, '_>,
    base: &WatchSettings,
    notifiers: Option<&BTreeSet<String>>,
) -> (WatchSettings, bool) {
    let mut s = base.clone();
    // Whether `interval` is this table's own valid value (or not set here);
    // checks compared with an invalid interval would report nonsense.
    let mut interval_ok = true;
    if let Some(v) = t.get("interval") {
        match cx.duration_min("interval", v, MIN_INTERVAL) {
            Some(d) => s.interval = d,
            None => interval_ok = false,
        }
    }
    if let Some(v) = t.get("failure_threshold") {
        s.failure_threshold = cx
            .int("failure_threshold", v, 1, 1000)
            .map_or(s.failure_threshold, |n| n as u32);
    }
    if let Some(v) = t.get("arm") {
        s.arm = cx
            .choice(
                "arm",
                v,
                &[
                    ("after-rollout", Arm::AfterRollout),
                    ("always", Arm::Always),
                ],
            )
            .unwrap_or(s.arm);
    }
    for (key, slot) in [
        ("arm_window", &mut s.arm_window),
        ("cooldown", &mut s.cooldown),
        ("rollout_timeout", &mut s.rollout_timeout),
        ("verify_for", &mut s.verify_for),
    ] {
        if let Some(v) = t.get(key)
            && let Some(d) = cx.duration(key, v)
        {
            *slot = d;
        }
    }
    if let Some(v) = t.peek("arm_window")
        && s.arm == Arm::AfterRollout
        && s.arm_window.is_zero()
    {
        cx.error(
            &v.span(),
            "\"arm_window\" must be longer than 0 (with arm = \"always\" no window is needed)",
        );
    }
    if let Some(v) = t.peek("rollout_timeout")
        && s.rollout_timeout < MIN_INTERVAL
    {
        cx.error(&v.span(), "\"rollout_timeout\" must be at least 10ms");
    }
    if let Some(v) = t.get("notify")
        && let Some(list) = cx.string_list("notify", v)
    {
        s.notify = list.into_iter().map(|(n, _)| n).collect();
        if let Some(known) = notifiers {
            check_notify_refs(cx, &s.notify, v, known);
        }
    }
    if let Some(v) = t.get("dry_run") {
        s.dry_run = cx.bool("dry_run", v).unwrap_or(s.dry_run);
    }
    if let Some(v) = t.get("rollout_check") {
        s.rollout_check = cx.bool("rollout_check", v).unwrap_or(s.rollout_check);
    }
    (s, interval_ok)
}

fn check_notify_refs(cx: &mut Ctx<'_>, names: &[String], v: &Value<'_>, known: &BTreeSet<String>) {
    let spans: Vec<Range<usize>> = v
        .get_ref()
        .as_array()
        .map(|a| a.iter().map(|i| i.span()).collect())
        .unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        let span = spans.get(i).cloned().unwrap_or(v.span());
        if !known.contains(name) {
            let hint = did_you_mean(name, known.iter().map(String::as_str)).or_else(|| {
                if known.is_empty() {
                    Some("no [notifiers.NAME] is configured".into())
                } else {
                    Some(format!(
                        "configured: {}",
                        one_of(&known.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>())
                    ))
                }
            });
            cx.error_hint(&span, format!("unknown notifier \"{name}\""), hint);
        } else if names[..i].contains(name) {
            cx.warn(&span, format!("notifier \"{name}\" is listed twice"));
        }
    }
}

#[derive(Default)]
struct Collected {
    watches: Vec<Watch>,
    origins: BTreeMap<String, Location>,
    /// Kubernetes targets already watched, with the watch that has them.
    targets: BTreeMap<(WorkloadKind, String, String, Option<String>), String>,
}

fn read_watch_array(cx: &mut Ctx<'_>, v: &Value<'_>, shared: &Shared<'_>, out: &mut Collected) {
    for (table, span) in cx.tables("watch", v) {
        let loc = cx.loc(&span);
        let (name, watch) = read_watch(cx, table, span.clone(), shared);
        // Names are claimed even by invalid watches, so a duplicate is
        // reported together with the other errors.
        if let Some(name) = &name {
            if let Some(first) = out.origins.get(name) {
                cx.error(
                    &span,
                    format!("watch \"{name}\" is defined twice; it is already defined at {first}"),
                );
                continue;
            }
            out.origins.insert(name.clone(), loc);
        }
        let Some(w) = watch else { continue };
        if let Target::Kubernetes(k) = &w.target {
            let key = (
                k.kind,
                k.namespace.clone(),
                k.name.clone(),
                k.context.clone(),
            );
            if let Some(other) = out.targets.get(&key) {
                cx.error_hint(
                    &span,
                    format!("watch \"{}\": {} is already watched by \"{other}\" (defined at {})", w.name, w.target, out.origins[other]),
                    Some("put all checks of one target in one watch, so that only one of them can roll it back".into()),
                );
                continue;
            }
            out.targets.insert(key, w.name.clone());
        }
        out.watches.push(w);
    }
}

fn valid_watch_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn dns_name(cx: &mut Ctx<'_>, key: &str, v: &Value<'_>, max: usize) -> Option<String> {
    let s = cx.nonempty_string(key, v)?;
    let ok = s.len() <= max
        && s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (max > 63 && c == '.')
        })
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        cx.error(&v.span(), format!("\"{key}\": \"{s}\" is not a valid Kubernetes name (lowercase letters, digits and '-', at most {max} characters)"));
        return None;
    }
    Some(s)
}

/// Reads one `[[watch]]`: its name (if readable) and the watch (if valid).
fn read_watch(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    shared: &Shared<'_>,
) -> (Option<String>, Option<Watch>) {
    let mut name = None;
    let watch = read_watch_inner(cx, table, span, shared, &mut name);
    (name, watch)
}

fn read_watch_inner(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    shared: &Shared<'_>,
    name_out: &mut Option<String>,
) -> Option<Watch> {
    let mut t = Table::new(table, span, "[[watch]]".into());
    let name = t.require(cx, "name").and_then(|v| {
        let s = cx.nonempty_string("name", v)?;
        if !valid_watch_name(&s) {
            cx.error(&v.span(), format!("\"name\": \"{s}\" must be 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"));
            return None;
        }
        Some(s)
    });
    if let Some(n) = &name {
        t.what = format!("watch \"{n}\"");
    }
    name_out.clone_from(&name);
    let target = t.require(cx, "target").and_then(|v| read_target(cx, v));
    let (settings, own_interval_ok) =
        read_settings(cx, &mut t, shared.defaults, Some(shared.notifiers));
    let interval_known =
        own_interval_ok && (t.peek("interval").is_some() || shared.defaults_interval_ok);
    if let (Some(Target::Command(_)), Some(v)) = (&target, t.peek("rollout_check")) {
        cx.error(
            &v.span(),
            "\"rollout_check\" applies only to Kubernetes targets",
        );
    }

    let mut names: BTreeMap<String, Location> = BTreeMap::new();
    let mut ok = true;
    let mut unique = |cx: &mut Ctx<'_>, name: &str, span: &Range<usize>| {
        if let Some(first) = names.get(name) {
            cx.error(
                span,
                format!(
                    "two checks of this watch are named \"{name}\" (the first at line {}); give each a distinct \"name\"",
                    first.line
                ),
            );
            false
        } else {
            names.insert(name.to_owned(), cx.loc(span));
            true
        }
    };

    let mut health = Vec::new();
    if let Some(v) = t.get("health") {
        let items = cx.tables("watch.health", v);
        let n = items.len();
        for (i, (ht, hspan)) in items.into_iter().enumerate() {
            match read_health(cx, ht, hspan.clone(), (i, n), &settings, interval_known) {
                Some(h) => {
                    ok &= unique(cx, &h.name, &hspan);
                    health.push(h);
                }
                None => ok = false,
            }
        }
    }
    let mut prometheus = Vec::new();
    if let Some(v) = t.get("prometheus") {
        for (pt, pspan) in cx.tables("watch.prometheus", v) {
            match read_prom_check(cx, pt, pspan.clone(), shared.sources) {
                Some(p) => {
                    ok &= unique(cx, &p.name, &pspan);
                    prometheus.push(p);
                }
                None => ok = false,
            }
        }
    }
    let mut alerts = Vec::new();
    if let Some(v) = t.get("alert") {
        let items = cx.tables("watch.alert", v);
        let n = items.len();
        for (i, (at, aspan)) in items.into_iter().enumerate() {
            match read_alert(cx, at, aspan.clone(), i, n) {
                Some(a) => {
                    ok &= unique(cx, &a.name, &aspan);
                    alerts.push(a);
                }
                None => ok = false,
            }
        }
    }
    let span = t.span.clone();
    let what = t.what.clone();
    t.finish(cx);

    let target = target?;
    let has_rollout_check = matches!(target, Target::Kubernetes(_)) && settings.rollout_check;
    if ok && health.is_empty() && prometheus.is_empty() && alerts.is_empty() && !has_rollout_check {
        cx.error_hint(
            &span,
            format!("{what} has no checks"),
            Some("add a [[watch.health]], [[watch.prometheus]] or [[watch.alert]]".into()),
        );
        return None;
    }
    if settings.verify_for < settings.interval {
        cx.warn(
            &span,
            format!(
                "{what}: verify_for ({}) is shorter than interval ({}); a rollback may end \"unverified\" before a single evaluation",
                humantime::format_duration(settings.verify_for),
                humantime::format_duration(settings.interval)
            ),
        );
    }
    if settings.notify.is_empty() {
        cx.warn(
            &span,
            format!("{what} notifies nobody (set \"notify\" here or in [defaults])"),
        );
    }
    ok.then_some(Watch {
        name: name?,
        target,
        settings,
        health,
        prometheus,
        alerts,
    })
}

fn read_target(cx: &mut Ctx<'_>, v: &Value<'_>) -> Option<Target> {
    let mut t = cx.table("target", v, "the target")?;
    let kind = t.require(cx, "kind").and_then(|v| {
        cx.choice(
            "kind",
            v,
            &[
                ("deployment", Some(WorkloadKind::Deployment)),
                ("statefulset", Some(WorkloadKind::StatefulSet)),
                ("daemonset", Some(WorkloadKind::DaemonSet)),
                ("command", None),
            ],
        )
    });
    let Some(kind) = kind else {
        t.finish_any_variant(
            cx,
            &[
                "namespace",
                "name",
                "context",
                "rollback",
                "current",
                "timeout",
            ],
        );
        return None;
    };
    let target = match kind {
        Some(kind) => {
            t.what = format!("the {} target", kind.as_str());
            let namespace = t
                .require(cx, "namespace")
                .and_then(|v| dns_name(cx, "namespace", v, 63));
            let name = t
                .require(cx, "name")
                .and_then(|v| dns_name(cx, "name", v, 253));
            let context = optional(&mut t, "context", |v| cx.nonempty_string("context", v));
            t.finish(cx);
            Target::Kubernetes(KubernetesTarget {
                kind,
                namespace: namespace?,
                name: name?,
                context: context.ok()?,
            })
        }
        None => {
            t.what = "the command target".into();
            let argv = |cx: &mut Ctx<'_>, key: &str, v: &Value<'_>| -> Option<Vec<String>> {
                // Arguments often carry tokens (`--token ${DEPLOY_TOKEN}`).
                let list = cx.string_list_as(key, v, Sensitivity::Secret)?;
                if list.is_empty() || list[0].0.trim().is_empty() {
                    cx.error(&v.span(), format!("\"{key}\" must be a program and its arguments, like [\"/usr/local/bin/deploy\", \"rollback\", \"web\"]"));
                    return None;
                }
                Some(list.into_iter().map(|(s, _)| s).collect())
            };
            let rollback = t
                .require(cx, "rollback")
                .and_then(|v| argv(cx, "rollback", v));
            let current = optional(&mut t, "current", |v| argv(cx, "current", v));
            let timeout = match t.get("timeout") {
                Some(v) => cx.duration_min("timeout", v, MIN_INTERVAL),
                None => Some(Duration::from_secs(300)),
            };
            t.finish(cx);
            Target::Command(CommandTarget {
                rollback: rollback?,
                current: current.ok()?,
                timeout: timeout?,
            })
        }
    };
    Some(target)
}

fn on_error(cx: &mut Ctx<'_>, t: &mut Table<'_, '_>, default: OnError) -> Option<OnError> {
    match t.get("on_error") {
        Some(v) => cx.choice(
            "on_error",
            v,
            &[
                ("fail", OnError::Fail),
                ("inconclusive", OnError::Inconclusive),
            ],
        ),
        None => Some(default),
    }
}

fn read_health(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    (index, count): (usize, usize),
    settings: &WatchSettings,
    interval_known: bool,
) -> Option<HealthCheck> {
    let mut t = Table::new(table, span, "[[watch.health]]".into());
    let name = match t.get("name") {
        Some(v) => cx.nonempty_string("name", v),
        None if count == 1 => Some("health".into()),
        None => Some(format!("health-{}", index + 1)),
    };
    let url = t.require(cx, "url").and_then(|v| {
        let s = cx.string_as("url", v, Sensitivity::Secret)?;
        http_url(cx, "url", &s, &v.span()).then_some(s)
    });
    let expect_status = optional(&mut t, "expect_status", |v| {
        let Some(items) = v.get_ref().as_array() else {
            cx.error(
                &v.span(),
                "\"expect_status\" must be an array of HTTP status codes, like [200, 204]",
            );
            return None;
        };
        if items.is_empty() {
            cx.error(
                &v.span(),
                "\"expect_status\" must list at least one status (leave it out to accept any 2xx)",
            );
            return None;
        }
        let codes: Vec<Option<u16>> = items
            .iter()
            .map(|i| cx.int("expect_status", i, 100, 599).map(|n| n as u16))
            .collect();
        codes.into_iter().collect::<Option<Vec<u16>>>()
    });
    let timeout_v = t.get("timeout");
    let timeout = match timeout_v {
        Some(v) => cx.duration_min("timeout", v, Duration::from_millis(1)),
        None => Some(settings.interval.min(Duration::from_secs(5))),
    };
    if let (Some(v), Some(d)) = (timeout_v, timeout)
        && interval_known
        && d > settings.interval
    {
        cx.error(
            &v.span(),
            format!(
                "\"timeout\" ({}) is longer than the watch's interval ({})",
                humantime::format_duration(d),
                humantime::format_duration(settings.interval)
            ),
        );
    }
    let max_latency = optional(&mut t, "max_latency", |v| {
        let d = cx.duration_min("max_latency", v, Duration::from_millis(1))?;
        if timeout.is_some_and(|to| d > to) {
            cx.error(
                &v.span(),
                "\"max_latency\" is longer than \"timeout\", so it can never fail",
            );
            return None;
        }
        Some(d)
    });
    let body_contains = optional(&mut t, "body_contains", |v| {
        let s = cx.string_as("body_contains", v, Sensitivity::Secret)?;
        if s.is_empty() {
            cx.error(&v.span(), "\"body_contains\" must not be empty");
            return None;
        }
        Some(s)
    });
    let headers = optional(&mut t, "headers", |v| read_headers(cx, v));
    let ca_file = optional(&mut t, "ca_file", |v| readable_file(cx, "ca_file", v));
    let on_error = on_error(cx, &mut t, OnError::Fail);
    t.finish(cx);
    Some(HealthCheck {
        name: name?,
        url: url?,
        expect_status: expect_status.ok()?.unwrap_or_default(),
        timeout: timeout?,
        max_latency: max_latency.ok()?,
        body_contains: body_contains.ok()?,
        headers: headers.ok()?.unwrap_or_default(),
        ca_file: ca_file.ok()?,
        on_error: on_error?,
    })
}

fn read_prom_check(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    sources: &BTreeSet<String>,
) -> Option<PrometheusCheck> {
    let mut t = Table::new(table, span, "[[watch.prometheus]]".into());
    let name = t
        .require(cx, "name")
        .and_then(|v| cx.nonempty_string("name", v));
    if let Some(n) = &name {
        t.what = format!("prometheus check \"{n}\"");
    }
    let query = t
        .require(cx, "query")
        .and_then(|v| cx.nonempty_string("query", v))
        .map(|q| q.trim().to_owned());
    let explicit = t.peek("source").is_some();
    let source = match t.get("source") {
        Some(v) => cx.nonempty_string("source", v).map(|s| (s, v.span())),
        None => Some(("default".to_owned(), t.span.clone())),
    };
    let source = source.and_then(|(s, sspan)| {
        if sources.contains(&s) {
            return Some(s);
        }
        if !explicit {
            let message = if sources.is_empty() {
                "this check needs a Prometheus server, but no [prometheus.NAME] is configured"
            } else {
                "this check names no \"source\" and there is no [prometheus.default]"
            };
            let hint = if sources.is_empty() {
                "add [prometheus.default] with its url".to_owned()
            } else {
                format!(
                    "set \"source\" to one of {}",
                    one_of(
                        &sources
                            .iter()
                            .map(|k| format!("\"{k}\""))
                            .collect::<Vec<_>>()
                    )
                )
            };
            cx.error_hint(&sspan, message, Some(hint));
            return None;
        }
        let hint = did_you_mean(&s, sources.iter().map(String::as_str)).or_else(|| {
            Some(if sources.is_empty() {
                "add a [prometheus.default] table with its url".into()
            } else {
                format!(
                    "configured: {}",
                    one_of(
                        &sources
                            .iter()
                            .map(|k| format!("\"{k}\""))
                            .collect::<Vec<_>>()
                    )
                )
            })
        });
        cx.error_hint(&sspan, format!("unknown Prometheus source \"{s}\""), hint);
        None
    });
    let mut num = |cx: &mut Ctx<'_>, key: &'static str| {
        optional(&mut t, key, |v| cx.float(key, v).map(|f| (f, v.span())))
    };
    let (min, max, inc, dec) = (
        num(cx, "min"),
        num(cx, "max"),
        num(cx, "max_increase"),
        num(cx, "min_decrease"),
    );
    // An unreadable threshold is already reported; keep going for the rest.
    let all_read = min.is_ok() && max.is_ok() && inc.is_ok() && dec.is_ok();
    let (min, max, inc, dec) = (
        min.ok().flatten(),
        max.ok().flatten(),
        inc.ok().flatten(),
        dec.ok().flatten(),
    );
    let mut ok = all_read;
    if all_read && min.is_none() && max.is_none() && inc.is_none() && dec.is_none() {
        cx.error(
            &t.span,
            format!(
                "{} has no threshold: set \"max\", \"min\", \"max_increase\" or \"min_decrease\"",
                t.what
            ),
        );
        ok = false;
    }
    if let (Some((lo, _)), Some((hi, span))) = (&min, &max)
        && lo > hi
    {
        cx.error(
            span,
            format!("\"max\" ({hi}) is below \"min\" ({lo}), so the check can never pass"),
        );
        ok = false;
    }
    if let Some((f, span)) = &inc
        && *f <= 1.0
    {
        cx.error(span, format!("\"max_increase\" is a factor over the baseline and must be above 1 (2.0 means twice the baseline), not {f}"));
        ok = false;
    }
    if let Some((f, span)) = &dec
        && !(*f > 0.0 && *f < 1.0)
    {
        cx.error(span, format!("\"min_decrease\" is a factor of the baseline and must be between 0 and 1 (0.5 means half the baseline), not {f}"));
        ok = false;
    }
    let on_no_data = match t.get("on_no_data") {
        Some(v) => cx.choice(
            "on_no_data",
            v,
            &[
                ("inconclusive", OnNoData::Inconclusive),
                ("fail", OnNoData::Fail),
                ("pass", OnNoData::Pass),
            ],
        ),
        None => Some(OnNoData::Inconclusive),
    };
    let on_error = on_error(cx, &mut t, OnError::Inconclusive);
    t.finish(cx);
    if !ok {
        return None;
    }
    Some(PrometheusCheck {
        name: name?,
        query: query?,
        source: source?,
        min: min.map(|x| x.0),
        max: max.map(|x| x.0),
        max_increase: inc.map(|x| x.0),
        min_decrease: dec.map(|x| x.0),
        on_no_data: on_no_data?,
        on_error: on_error?,
    })
}

fn read_alert(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    index: usize,
    count: usize,
) -> Option<AlertCheck> {
    let mut t = Table::new(table, span, "[[watch.alert]]".into());
    let labels = t.require(cx, "labels").and_then(|v| {
        let m = cx.string_map("labels", v, Sensitivity::Plain)?;
        if m.is_empty() {
            cx.error(
                &v.span(),
                "\"labels\" must name at least one label (an empty set would match every alert)",
            );
            return None;
        }
        Some(m)
    });
    let name = match t.get("name") {
        Some(v) => cx.nonempty_string("name", v),
        None => Some(match labels.as_ref().and_then(|l| l.get("alertname")) {
            Some(a) if count == 1 => a.clone(),
            Some(a) => format!("{a}-{}", index + 1),
            None if count == 1 => "alert".into(),
            None => format!("alert-{}", index + 1),
        }),
    };
    t.finish(cx);
    Some(AlertCheck {
        name: name?,
        labels: labels?,
    })
}
