//! Unit tests of loading: what valid files turn into. The malformed files
//! and their messages are the corpus in `tests/config/bad/`.

use std::path::Path;
use std::time::Duration;

use super::*;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("tok-12345".into()),
        "NS" => Some("shop".into()),
        _ => None,
    }
}

fn load_dir(dir: &Path) -> Config {
    load_with_env(&dir.join("rollbackd.toml"), &env).unwrap_or_else(|e| panic!("{}", e.render()))
}

const BASE: &str = r#"
[daemon]
watches = ["watches.d"]
[notifiers.n]
type = "webhook"
url = "http://127.0.0.1:1/"
[prometheus.default]
url = "http://127.0.0.1:9090"
"#;

#[test]
fn watches_inherit_defaults_and_override_them() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "rollbackd.toml",
        &format!(
            "{BASE}\n[defaults]\ninterval = \"5s\"\nfailure_threshold = 4\nnotify = [\"n\"]\ndry_run = true\n"
        ),
    );
    write(
        d.path(),
        "watches.d/w.toml",
        "[[watch]]\nname = \"a\"\ntarget = { kind = \"deployment\", namespace = \"s\", name = \"a\" }\n\
         [[watch]]\nname = \"b\"\ninterval = \"1s\"\nnotify = []\ntarget = { kind = \"deployment\", namespace = \"s\", name = \"b\" }\n",
    );
    let c = load_dir(d.path());
    let a = &c.watch("a").unwrap().settings;
    assert_eq!(
        (a.interval, a.failure_threshold, a.dry_run),
        (Duration::from_secs(5), 4, true)
    );
    assert_eq!(a.notify, ["n"]);
    assert_eq!(a.cooldown, Duration::from_secs(1800), "built-in default");
    let b = &c.watch("b").unwrap().settings;
    assert_eq!(
        (b.interval, b.failure_threshold),
        (Duration::from_secs(1), 4)
    );
    assert!(
        b.notify.is_empty(),
        "a watch's notify replaces the default list"
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("watch \"b\" notifies nobody"))
    );
}

#[test]
fn env_references_expand_and_a_double_dollar_is_literal() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "rollbackd.toml", BASE);
    write(
        d.path(),
        "watches.d/w.toml",
        "[[watch]]\nname = \"a\"\nnotify = [\"n\"]\ntarget = { kind = \"deployment\", namespace = \"${NS}\", name = \"a\" }\n\
         [[watch.prometheus]]\nname = \"q\"\nquery = 'up{x=\"$${NS}\"}'\nmax = 1\n",
    );
    let c = load_dir(d.path());
    let w = c.watch("a").unwrap();
    assert!(matches!(&w.target, Target::Kubernetes(k) if k.namespace == "shop"));
    assert_eq!(w.prometheus[0].query, "up{x=\"${NS}\"}");
    assert_eq!(
        c.secrets.redact("shop"),
        "shop",
        "a plain field's substitution is not a secret"
    );
}

#[test]
fn secret_files_lose_one_trailing_newline_and_every_secret_is_collected() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "pw", "file-secret\n\n");
    write(
        d.path(),
        "rollbackd.toml",
        &format!(
            "{BASE}\n[notifiers.mail]\ntype = \"email\"\nsmtp_host = \"h\"\nusername = \"u\"\npassword_file = \"pw\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n\
             [prometheus.other]\nurl = \"http://u:url-pass@h/\"\nbearer_token = \"${{TOKEN}}\"\n"
        ),
    );
    write(
        d.path(),
        "watches.d/w.toml",
        "[[watch]]\nname = \"a\"\nnotify = [\"n\"]\ntarget = { kind = \"deployment\", namespace = \"s\", name = \"a\" }\n[[watch.health]]\nurl = \"http://h/?k=${TOKEN}\"\n",
    );
    let c = load_dir(d.path());
    let Notifier::Email(e) = &c.notifiers["mail"] else {
        panic!()
    };
    assert_eq!(
        e.password.as_ref().unwrap().expose(),
        "file-secret\n",
        "only one newline is dropped"
    );
    assert_eq!(e.smtp_port, 587, "the starttls port by default");
    assert!(
        matches!(&c.prometheus["other"].auth, HttpAuth::Bearer(t) if t.expose() == "tok-12345")
    );
    let shown = c
        .secrets
        .redact("file-secret\n url-pass tok-12345 http://h/?k=tok-12345");
    assert_eq!(
        shown,
        "[REDACTED] [REDACTED] [REDACTED] http://h/?k=[REDACTED]"
    );
}

#[test]
fn health_timeout_defaults_to_the_interval_when_that_is_shorter() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "rollbackd.toml", BASE);
    write(
        d.path(),
        "watches.d/w.toml",
        "[[watch]]\nname = \"a\"\nnotify = [\"n\"]\ninterval = \"2s\"\ntarget = { kind = \"command\", rollback = [\"x\"] }\n[[watch.health]]\nurl = \"http://h/\"\n[[watch.health]]\nurl = \"http://h/2\"\n",
    );
    let c = load_dir(d.path());
    let w = c.watch("a").unwrap();
    assert_eq!(w.health[0].timeout, Duration::from_secs(2));
    assert_eq!(
        (w.health[0].name.as_str(), w.health[1].name.as_str()),
        ("health-1", "health-2")
    );
    assert!(matches!(&w.target, Target::Command(t) if t.timeout == Duration::from_secs(300)));
}

#[test]
fn directories_are_read_in_name_order_skipping_hidden_and_other_files() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "rollbackd.toml",
        &format!(
            "{BASE}\n[[watch]]\nname = \"main\"\nnotify = [\"n\"]\ntarget = {{ kind = \"daemonset\", namespace = \"s\", name = \"m\" }}\n"
        ),
    );
    let w = |n: &str| {
        format!(
            "[[watch]]\nname = \"{n}\"\nnotify = [\"n\"]\ntarget = {{ kind = \"statefulset\", namespace = \"s\", name = \"{n}\" }}\n"
        )
    };
    write(d.path(), "watches.d/b.toml", &w("b"));
    write(d.path(), "watches.d/a.toml", &w("a"));
    write(d.path(), "watches.d/.hidden.toml", "not toml at all [");
    write(d.path(), "watches.d/notes.txt", "not toml at all [");
    write(
        d.path(),
        "watches.d/..2026_11_21/a.toml",
        "not toml at all [",
    );
    let c = load_dir(d.path());
    let names: Vec<&str> = c.watches.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "main"]);
    let files: Vec<String> = c
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["rollbackd.toml", "a.toml", "b.toml"]);
    assert_eq!(c.origins["a"].line, 1);
}

#[test]
fn log_levels_must_be_level_names_unless_they_are_filters() {
    use super::load::log_level_problem;
    for ok in [
        "info",
        "WARN",
        "off",
        "info,rollbackd=debug",
        "rollbackd[watch]=trace",
        "info,hyper=warn",
    ] {
        assert_eq!(log_level_problem(ok), None, "{ok}");
    }
    let (msg, hint) = log_level_problem("warning").unwrap();
    assert_eq!(msg, "\"log_level\": \"warning\" is not a level");
    assert_eq!(hint, "did you mean \"warn\"?");
    assert!(
        log_level_problem("info,verbose")
            .unwrap()
            .1
            .contains("\"verbose=debug\"")
    );
    assert!(log_level_problem("info=[").is_some());
}

#[test]
fn email_ports_follow_the_tls_mode() {
    for (tls, port) in [("starttls", 587), ("tls", 465), ("none", 25)] {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "rollbackd.toml",
            &format!(
                "[notifiers.m]\ntype = \"email\"\nsmtp_host = \"h\"\ntls = \"{tls}\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n"
            ),
        );
        let c = load_dir(d.path());
        let Notifier::Email(e) = &c.notifiers["m"] else {
            panic!()
        };
        assert_eq!(e.smtp_port, port, "{tls}");
        assert!(
            e.username.is_none() && e.password.is_none(),
            "authentication is optional"
        );
    }
}

#[test]
fn an_empty_main_file_is_a_valid_configuration_with_built_in_defaults() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "rollbackd.toml", "");
    let c = load_dir(d.path());
    assert!(c.watches.is_empty());
    assert_eq!(c.daemon.listen.to_string(), "127.0.0.1:9187");
    assert_eq!(c.daemon.state_dir, Path::new("/var/lib/rollbackd"));
    assert_eq!(c.daemon.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.kubernetes.request_timeout, Duration::from_secs(30));
}

#[test]
fn a_url_error_never_echoes_what_could_be_a_secret() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "rollbackd.toml",
        "[notifiers.n]\ntype = \"webhook\"\nurl = \"${TOKEN}:x\"\n[prometheus.p]\nurl = \"ftp://h/\"\n",
    );
    let errors = load_with_env(&d.path().join("rollbackd.toml"), &env)
        .unwrap_err()
        .render();
    assert!(!errors.contains("tok-12345"), "{errors}");
    assert!(
        errors.contains("\"url\" is not an http:// or https:// URL (write the scheme"),
        "{errors}"
    );
    assert!(
        errors.contains("not ftp://"),
        "a well-known scheme is named: {errors}"
    );
}

#[test]
fn the_main_file_is_never_read_again_as_a_watch_file() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "rollbackd.toml",
        "[daemon]\nwatches = [\".\", \"./w.toml\", \"w.toml\"]\n",
    );
    write(
        d.path(),
        "w.toml",
        "[[watch]]\nname = \"a\"\ntarget = { kind = \"deployment\", namespace = \"s\", name = \"a\" }\n",
    );
    let c = load_dir(d.path());
    assert_eq!(c.watches.len(), 1);
    assert_eq!(c.files.len(), 2, "{:?}", c.files);
}
