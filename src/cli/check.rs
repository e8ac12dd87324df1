//! `rollbackd check`: validates the configuration like `nginx -t`, printing
//! every error (and warning) as `FILE:LINE:COLUMN: message`, then a summary;
//! with `--online`, also proves what can only be proven by asking: that the
//! Prometheus sources answer and the queries parse there, that health URLs
//! resolve, that commands exist, and that Kubernetes targets can be read
//! and patched (by a dry run) and the leader-election Lease read.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Exit, Global};
use std::sync::Arc;

use crate::config::{self, Config, Target};
use crate::rollback::Adapter;
use crate::rollback::kubernetes::Connector;

pub fn check(global: &Global, online: bool) -> Exit {
    match config::load(&global.config) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("{w}");
            }
            print!("{}", cfg.secrets.redact(&summary(&cfg)));
            if !online {
                return Exit::Success;
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return Exit::Failure;
                }
            };
            let results = runtime.block_on(online_checks(&cfg));
            println!("online:");
            let mut failed = 0;
            for (what, result) in &results {
                let line = match result {
                    Ok(detail) => format!("  ok      {what}: {detail}"),
                    Err(e) => {
                        failed += 1;
                        format!("  FAILED  {what}: {e}")
                    }
                };
                println!("{}", cfg.secrets.redact(&line));
            }
            if failed > 0 {
                eprintln!(
                    "{}: {failed} online check{} failed",
                    global.config.display(),
                    if failed == 1 { "" } else { "s" }
                );
                Exit::Failure
            } else {
                Exit::Success
            }
        }
        Err(errors) => {
            eprint!("{}", errors.render());
            eprintln!("{}: {errors}", global.config.display());
            Exit::Usage
        }
    }
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// What the configuration holds, at a glance.
pub fn summary(cfg: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: configuration is valid", cfg.main_file.display());
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &cfg.watches {
        *kinds.entry(w.target.kind()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        out,
        "  watches:   {}{} in {}",
        cfg.watches.len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        },
        plural(cfg.files.len(), "file"),
    );
    let (h, p, a) = cfg.watches.iter().fold((0, 0, 0), |(h, p, a), w| {
        (
            h + w.health.len(),
            p + w.prometheus.len(),
            a + w.alerts.len(),
        )
    });
    let _ = writeln!(
        out,
        "  checks:    {} ({h} health, {p} prometheus, {a} alert)",
        h + p + a
    );
    let sources: Vec<&str> = cfg.prometheus.keys().map(String::as_str).collect();
    let _ = writeln!(
        out,
        "  sources:   {}",
        if sources.is_empty() {
            "none".into()
        } else {
            sources.join(", ")
        }
    );
    let notifiers: Vec<String> = cfg
        .notifiers
        .iter()
        .map(|(n, k)| format!("{n} ({})", k.kind()))
        .collect();
    let _ = writeln!(
        out,
        "  notifiers: {}",
        if notifiers.is_empty() {
            "none".into()
        } else {
            notifiers.join(", ")
        }
    );
    let width = cfg.watches.iter().map(|w| w.name.len()).max().unwrap_or(0);
    for w in &cfg.watches {
        let target = match &w.target {
            Target::Kubernetes(k) => format!("{}/{} in {}", k.kind.as_str(), k.name, k.namespace),
            Target::Command(c) => format!(
                "command {}",
                c.rollback.first().map(String::as_str).unwrap_or("")
            ),
        };
        let s = &w.settings;
        let _ = writeln!(
            out,
            "  {:width$}  {target}; every {}, rolls back after {} failing evaluations{}; {}; notify {}",
            w.name,
            humantime::format_duration(s.interval),
            s.failure_threshold,
            if s.dry_run { " (dry run)" } else { "" },
            plural(w.check_count(), "check"),
            if s.notify.is_empty() {
                "nobody".into()
            } else {
                s.notify.join(", ")
            },
        );
    }
    out
}

type Outcome = (String, Result<String, String>);

/// Everything `--online` proves, in configuration order.
async fn online_checks(cfg: &Config) -> Vec<Outcome> {
    use crate::check::Clients;
    use crate::check::prometheus::{QueryError, Source};
    use std::time::Duration;

    let mut out = Vec::new();
    let mut clients = Clients::default();
    // Connects on first use: only Kubernetes targets and leader election do.
    let kubernetes = Arc::new(Connector::new(&cfg.kubernetes));
    let mut sources = BTreeMap::new();
    for (name, src) in &cfg.prometheus {
        let what = format!("prometheus source {name}");
        match clients.get(src.ca_file.as_deref()) {
            Ok(http) => {
                let source = Source::new(name, src, http);
                let r = source
                    .query("vector(1)", None, src.timeout)
                    .await
                    .map(|_| "answers".to_owned())
                    .map_err(|e| e.to_string());
                out.push((what, r));
                sources.insert(name.clone(), source);
            }
            Err(e) => out.push((what, Err(e.to_string()))),
        }
    }
    for w in &cfg.watches {
        for p in &w.prometheus {
            let what = format!("watch {} prometheus check {}", w.name, p.name);
            let Some(source) = sources.get(&p.source) else {
                continue;
            };
            let r = match source.query(&p.query, None, Duration::from_secs(10)).await {
                Ok(a) => Ok(match a.result.samples() {
                    Some(s) if s.is_empty() => "parses; returns no data right now".to_owned(),
                    Some(s) => format!("parses; returns {} series", s.len()),
                    None => "parses, but returns a string, which cannot be judged".to_owned(),
                }),
                Err(e @ QueryError::BadQuery { .. }) => Err(e.to_string()),
                Err(e) => Err(format!("cannot be checked: {e}")),
            };
            out.push((what, r));
        }
        for h in &w.health {
            let what = format!("watch {} health check {}", w.name, h.name);
            out.push((what, resolve(&h.url).await));
        }
        for (subject, found) in Adapter::for_watch(w, &kubernetes).probe().await {
            out.push((format!("watch {} {subject}", w.name), found));
        }
    }
    if let Some(le) = &cfg.kubernetes.leader_election {
        let k = &kubernetes;
        out.push((
            format!("leader election lease {}/{}", le.namespace, le.lease),
            probe_lease(k, &le.namespace, &le.lease).await,
        ));
    }
    out
}

async fn probe_lease(k: &Connector, namespace: &str, name: &str) -> Result<String, String> {
    use k8s_openapi::api::coordination::v1::Lease;
    let client = k.client(None).await.map_err(|e| e.to_string())?;
    let api: kube::Api<Lease> = kube::Api::namespaced(client, namespace);
    let what = format!("get lease {namespace}/{name}");
    match tokio::time::timeout(k.request_timeout(), api.get_opt(name)).await {
        Err(_) => Err(format!(
            "{what}: no answer within {:?}",
            k.request_timeout()
        )),
        Ok(Err(e)) => Err(crate::rollback::kubernetes::classify(&what, &e).to_string()),
        Ok(Ok(None)) => Ok("does not exist yet; the first replica creates it".into()),
        Ok(Ok(Some(l))) => Ok(match l.spec.and_then(|s| s.holder_identity) {
            Some(h) if !h.is_empty() => format!("held by {h}"),
            _ => "free".into(),
        }),
    }
}

async fn resolve(url: &str) -> Result<String, String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = u
        .host_str()
        .ok_or("no host")?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = u.port_or_known_default().unwrap_or(80);
    match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => Ok(format!("{host} resolves to {}", a.ip())),
            None => Err(format!("{host} resolves to no address")),
        },
        Err(e) => Err(format!("{host} does not resolve: {e}")),
    }
}
