//! `rollbackd notify-test [NOTIFIER...]`: sends a clearly marked test
//! message through each named notifier (every one without names), directly
//! rather than through the outbox, and says per notifier whether it was
//! delivered, with the server's answer either way.

use super::{Exit, Global};
use crate::config;
use crate::notify::{self, Event};

pub fn notify_test(global: &Global, names: &[String]) -> Exit {
    let cfg = match config::load(&global.config) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{}", errors.render());
            eprintln!("{}: {errors}", global.config.display());
            return Exit::Usage;
        }
    };
    let chosen: Vec<String> = if names.is_empty() {
        cfg.notifiers.keys().cloned().collect()
    } else {
        names.to_vec()
    };
    if chosen.is_empty() {
        eprintln!(
            "{}: no notifiers are configured ([notifiers.NAME])",
            global.config.display()
        );
        return Exit::Usage;
    }
    let unknown: Vec<&String> = chosen
        .iter()
        .filter(|n| !cfg.notifiers.contains_key(*n))
        .collect();
    if !unknown.is_empty() {
        for n in &unknown {
            let known: Vec<&str> = cfg.notifiers.keys().map(String::as_str).collect();
            let hint = config::did_you_mean(n, known.iter().copied())
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            eprintln!("error: no notifier named \"{n}\"{hint}");
        }
        return Exit::Usage;
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
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let event = Event::test(now, &host);
    let failed = runtime.block_on(async {
        let http = match notify::http_client() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return chosen.len();
            }
        };
        // One at a time, in order: the output reads like a checklist.
        let mut failed = 0;
        for name in &chosen {
            let Some(n) = cfg.notifiers.get(name) else {
                continue;
            };
            let id = format!("{}-{name}", event.id);
            let line = match notify::deliver(n, &id, &event, &http).await {
                Ok(answer) => format!("  ok      {name} ({}): delivered; {answer}", n.kind()),
                Err(e) => {
                    failed += 1;
                    format!("  FAILED  {name} ({}): {e}", n.kind())
                }
            };
            println!("{}", cfg.secrets.redact(&line));
        }
        failed
    });
    if failed > 0 {
        eprintln!(
            "{}: {failed} of {} notifiers failed",
            global.config.display(),
            chosen.len()
        );
        Exit::Failure
    } else {
        Exit::Success
    }
}
