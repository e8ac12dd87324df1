//! The `command` target: `current` prints the deployed version, `rollback`
//! undoes the last deploy. Both run without a shell, with `ROLLBACKD_WATCH`,
//! `ROLLBACKD_REASON` and `ROLLBACKD_FROM_VERSION` in their environment
//! (the rollback also with `ROLLBACKD_TO_VERSION`, `ROLLBACKD_TRIGGER` and
//! `ROLLBACKD_OPERATOR`, empty where they do not apply), and are killed at
//! their timeout.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tracing::{info, warn};

use super::{AdapterError, Answer, Detail, HistoryRow};
use crate::clock::now_ms;
use crate::config::CommandTarget;
use crate::engine::{ActResult, Action, Input, Millis, Origin, Recheck, Revision, RolloutResult};

/// How much of each output stream is kept for the journal and reports.
const KEEP: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// `None` when the program was killed (timeout or signal).
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
    pub timed_out: bool,
}

impl Run {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// One line for a log or a report: why it failed, with the output's tail.
    pub fn failure(&self) -> String {
        let what = match (self.timed_out, self.exit_code) {
            (true, _) => format!(
                "timed out after {}",
                humantime::format_duration(round(self.duration))
            ),
            (false, Some(code)) => format!("exit status {code}"),
            (false, None) => "killed by a signal".to_owned(),
        };
        let tail = last_line(&self.stderr).or_else(|| last_line(&self.stdout));
        match tail {
            Some(t) => format!("{what}: {t}"),
            None => what,
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

fn last_line(s: &str) -> Option<String> {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {program}: {error}")]
    Spawn {
        program: String,
        error: std::io::Error,
    },
    #[error("the command is empty")]
    Empty,
    /// `current` ran and did not print a version.
    #[error("`current` failed: {0}")]
    Current(String),
    #[error("`current` printed nothing")]
    NoVersion,
}

/// The environment a command receives.
pub struct Env<'a> {
    pub watch: &'a str,
    pub reason: &'a str,
    pub from_version: &'a str,
    /// The version an operator chose to restore; empty: the previous one.
    pub to_version: &'a str,
    /// `auto` or `manual`; empty outside a rollback.
    pub trigger: &'a str,
    /// Who asked for a manual rollback (`user@host`).
    pub operator: &'a str,
}

/// How long the output pipes may stay open after the command exited: a
/// background process it left behind may hold them forever.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Runs `argv` to completion or `timeout`, keeping the head of each stream.
/// The command runs in its own process group, so that at the timeout the
/// whole group is killed, not only the first process.
pub async fn run(argv: &[String], env: &Env<'_>, timeout: Duration) -> Result<Run, CommandError> {
    let (program, args) = argv.split_first().ok_or(CommandError::Empty)?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env("ROLLBACKD_WATCH", env.watch)
        .env("ROLLBACKD_REASON", env.reason)
        .env("ROLLBACKD_FROM_VERSION", env.from_version)
        .env("ROLLBACKD_TO_VERSION", env.to_version)
        .env("ROLLBACKD_TRIGGER", env.trigger)
        .env("ROLLBACKD_OPERATOR", env.operator)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| CommandError::Spawn {
            program: program.clone(),
            error,
        })?;
    let pid = child.id();
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let err = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(read_capped(s, out.clone()))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(read_capped(s, err.clone()))),
    ];
    let (exit_code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.ok().and_then(|s| s.code()), false),
        Err(_) => {
            kill_group(pid);
            let _ = child.kill().await;
            (None, true)
        }
    };
    for mut r in readers.into_iter().flatten() {
        if tokio::time::timeout(DRAIN_GRACE, &mut r).await.is_err() {
            // Left open by a background process: what was read is kept.
            r.abort();
        }
    }
    let text = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
        b.lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    };
    Ok(Run {
        exit_code,
        stdout: text(&out),
        stderr: text(&err),
        duration: started.elapsed(),
        timed_out,
    })
}

/// Kills every process of the command's group.
fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    // SAFETY: killpg only sends a signal; the group id is the child's pid,
    // which `process_group(0)` made the leader of its own group.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
    }
}

/// Reads a stream to its end, keeping the first [`KEEP`] bytes: a chatty
/// command must not block on a full pipe.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    keep: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Ok(mut k) = keep.lock() {
            let room = KEEP.saturating_sub(k.len());
            k.extend_from_slice(&buf[..n.min(room)]);
        }
    }
}

/// Runs `current` and returns the version it printed (trimmed).
pub async fn current(
    argv: &[String],
    env: &Env<'_>,
    timeout: Duration,
) -> Result<String, CommandError> {
    let run = run(argv, env, timeout).await?;
    if !run.success() {
        return Err(CommandError::Current(run.failure()));
    }
    let version = run.stdout.trim();
    if version.is_empty() {
        return Err(CommandError::NoVersion);
    }
    Ok(version.lines().next().unwrap_or(version).trim().to_owned())
}

/// A command target, as one watch drives it.
pub struct CommandAdapter {
    pub watch: String,
    pub target: CommandTarget,
    pub interval: Duration,
    pub rollout_timeout: Duration,
}

impl CommandAdapter {
    fn env<'a>(&'a self, reason: &'a str, from_version: &'a str) -> Env<'a> {
        Env {
            watch: &self.watch,
            reason,
            from_version,
            to_version: "",
            trigger: "",
            operator: "",
        }
    }

    /// Reads the version before each evaluation.
    pub fn poller(&self, known: Option<String>) -> Poller {
        Poller {
            watch: self.watch.clone(),
            argv: self.target.current.clone(),
            timeout: self.interval.min(self.target.timeout),
            last_version: known,
            last_poll: None,
            last_error: None,
            changes_in_a_row: 0,
        }
    }

    pub async fn execute(&self, action: Action) -> Answer {
        match action {
            Action::Recheck {
                rollback_id, from, ..
            } => {
                let result = match &self.target.current {
                    None => Recheck::Proceed,
                    Some(argv) => {
                        let timeout = self.interval.min(self.target.timeout);
                        match current(argv, &self.env("", &from), timeout).await {
                            Ok(v) if v == from => Recheck::Proceed,
                            Ok(v) => Recheck::Superseded(Revision {
                                id: v,
                                since: now_ms(),
                                origin: Origin::Rollout,
                                definite: false,
                            }),
                            Err(e) => Recheck::Failed(e.to_string()),
                        }
                    }
                };
                Answer {
                    input: Input::Rechecked {
                        rollback_id,
                        result,
                    },
                    detail: None,
                }
            }
            Action::Undo(order) => {
                if order.dry_run {
                    // A command has no dry run: proving it would mean running it.
                    return Answer {
                        input: Input::Acted {
                            rollback_id: order.rollback_id,
                            result: ActResult::Applied { to: None },
                        },
                        detail: None,
                    };
                }
                let mut env = self.env(&order.reason, &order.from);
                env.to_version = order.to.as_deref().unwrap_or("");
                env.trigger = order.trigger.as_str();
                env.operator = order.operator.as_deref().unwrap_or("");
                info!(command = %self.target.rollback.join(" "), "running the rollback command");
                let (result, detail) =
                    match run(&self.target.rollback, &env, self.target.timeout).await {
                        Ok(run) => {
                            let result = if run.success() {
                                ActResult::Applied { to: None }
                            } else {
                                ActResult::Failed(run.failure())
                            };
                            (result, Some(Detail::Command(run)))
                        }
                        Err(e) => (ActResult::Failed(e.to_string()), None),
                    };
                Answer {
                    input: Input::Acted {
                        rollback_id: order.rollback_id,
                        result,
                    },
                    detail,
                }
            }
            Action::AwaitRollout {
                rollback_id,
                from,
                timeout,
            } => {
                let timeout = timeout.map_or(self.rollout_timeout, Duration::from_millis);
                let result = self.wait_version_change(&from, timeout).await;
                Answer {
                    input: Input::RolledOut {
                        rollback_id,
                        result,
                    },
                    detail: None,
                }
            }
        }
    }

    /// The rollout is done when `current` no longer prints the version
    /// rolled away from. Right after a successful rollback command that is
    /// at once; after a restart the command may still be running, orphaned,
    /// so this waits for it, bounded by `rollout_timeout`. Without
    /// `current` the command's success is all there is to go by.
    async fn wait_version_change(&self, from: &str, timeout: Duration) -> RolloutResult {
        let Some(argv) = &self.target.current else {
            return RolloutResult::Complete(None);
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let env = self.env("", from);
        let poll = self
            .interval
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            if let Ok(v) = current(
                argv,
                &env,
                poll.max(Duration::from_secs(1)).min(self.target.timeout),
            )
            .await
                && v != from
            {
                let landed = Revision {
                    id: v,
                    since: now_ms(),
                    origin: Origin::Rollback,
                    definite: false,
                };
                return RolloutResult::Complete(Some(landed));
            }
            if tokio::time::Instant::now() + poll > deadline {
                return RolloutResult::Failed(format!(
                    "`current` still reports {from} {} after the rollback",
                    humantime::format_duration(timeout)
                ));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// A command target keeps no history of its own: the one row is the
    /// version `current` prints now (the journal has the versions seen).
    pub async fn history(&self) -> Result<Vec<HistoryRow>, AdapterError> {
        let Some(argv) = &self.target.current else {
            return Ok(Vec::new());
        };
        let timeout = self.interval.min(self.target.timeout);
        let version = current(argv, &self.env("", ""), timeout).await?;
        Ok(vec![HistoryRow {
            revision: version,
            images: Vec::new(),
            change_cause: None,
            created: None,
            current: true,
        }])
    }

    /// Whether the programs would be found, as the daemon runs them.
    pub fn probe(&self) -> Vec<(String, Result<String, String>)> {
        let mut out = vec![(
            "rollback command".to_owned(),
            executable(&self.target.rollback[0]),
        )];
        if let Some(cur) = &self.target.current {
            out.push(("current command".to_owned(), executable(&cur[0])));
        }
        out
    }
}

/// Where a program would be found, as the daemon runs it (no shell).
pub fn executable(program: &str) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<std::path::PathBuf> = if program.contains('/') {
        vec![program.into()]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    };
    for c in &candidates {
        if let Ok(m) = std::fs::metadata(c)
            && m.is_file()
        {
            return if m.permissions().mode() & 0o111 != 0 {
                Ok(format!("{} is executable", c.display()))
            } else {
                Err(format!("{} is not executable", c.display()))
            };
        }
    }
    if program.contains('/') {
        Err(format!("{program} does not exist"))
    } else {
        Err(format!("{program} is not on PATH"))
    }
}

/// A `current` whose output changes this many polls in a row is not
/// printing a version (a timestamp, a request id): said once, loudly.
const UNSTABLE_AFTER: u32 = 5;

/// Reads a command target's version before each evaluation; a change is a
/// new revision.
pub struct Poller {
    watch: String,
    argv: Option<Vec<String>>,
    timeout: Duration,
    last_version: Option<String>,
    /// When `current` last answered: a new version appeared after it.
    last_poll: Option<Millis>,
    last_error: Option<String>,
    /// Polls in a row that each saw a new version.
    changes_in_a_row: u32,
}

impl Poller {
    pub fn last_version(&self) -> Option<String> {
        self.last_version.clone()
    }

    pub async fn poll(&mut self) -> Option<Revision> {
        let argv = self.argv.as_ref()?;
        let env = Env {
            watch: &self.watch,
            reason: "",
            from_version: self.last_version.as_deref().unwrap_or(""),
            to_version: "",
            trigger: "",
            operator: "",
        };
        let polled = now_ms();
        match current(argv, &env, self.timeout).await {
            Ok(version) => {
                self.last_error = None;
                let previous_poll = self.last_poll.replace(polled);
                if self.last_version.as_deref() == Some(version.as_str()) {
                    self.changes_in_a_row = 0;
                    return None;
                }
                if self.last_version.is_some() {
                    self.changes_in_a_row += 1;
                }
                if self.changes_in_a_row == UNSTABLE_AFTER {
                    warn!(
                        polls = UNSTABLE_AFTER,
                        "`current` printed a different version on every poll; it must print the deployed version only (no timestamps), or every poll is a new rollout"
                    );
                }
                // The first version this watch sees has an unknown age:
                // only the saved memory can say whether it is armed.
                let origin = if self.last_version.is_none() {
                    Origin::Unknown
                } else {
                    Origin::Rollout
                };
                self.last_version = Some(version.clone());
                // The rollout began after the last poll that saw the old
                // version: that is the baseline's moment, and the start of
                // the arming window.
                Some(Revision {
                    id: version,
                    since: previous_poll.unwrap_or(polled),
                    origin,
                    definite: false,
                })
            }
            Err(e) => {
                let e = e.to_string();
                if self.last_error.as_deref() != Some(e.as_str()) {
                    warn!(error = %e, "cannot read the deployed version");
                    self.last_error = Some(e);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env<'static> {
        Env {
            watch: "billing",
            reason: "health 500",
            from_version: "v2",
            to_version: "",
            trigger: "",
            operator: "",
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn runs_without_a_shell_with_the_documented_environment() {
        let r = run(&sh("echo \"$ROLLBACKD_WATCH|$ROLLBACKD_REASON|$ROLLBACKD_FROM_VERSION\"; echo oops >&2"), &env(), Duration::from_secs(10)).await.unwrap();
        assert!(r.success());
        assert_eq!(r.stdout, "billing|health 500|v2\n");
        assert_eq!(r.stderr, "oops\n");
        // No shell: metacharacters in arguments are just characters.
        let r = run(
            &["/bin/echo".into(), "$HOME;".into(), "|x".into()],
            &env(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(r.stdout, "$HOME; |x\n");
    }

    #[tokio::test]
    async fn a_failure_says_how_with_the_last_line_of_output() {
        let r = run(
            &sh("echo step one; echo 'deploy: no previous release' >&2; exit 3"),
            &env(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(!r.success());
        assert_eq!(r.failure(), "exit status 3: deploy: no previous release");
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed() {
        let started = Instant::now();
        let r = run(&sh("sleep 30"), &env(), Duration::from_millis(200))
            .await
            .unwrap();
        assert!(r.timed_out);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            r.failure().starts_with("timed out after 2"),
            "{}",
            r.failure()
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let e = run(
            &["/nonexistent/deploy".into()],
            &env(),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot run /nonexistent/deploy: "),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group_and_keeps_the_output_so_far() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survivor");
        let script = format!(
            "echo starting; (sleep 1; touch {}) & sleep 30",
            marker.display()
        );
        let r = run(&sh(&script), &env(), Duration::from_millis(300))
            .await
            .unwrap();
        assert!(r.timed_out);
        assert_eq!(r.stdout, "starting\n", "partial output is kept");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "the background child was killed with its group"
        );
    }

    #[tokio::test]
    async fn a_background_child_holding_the_pipe_does_not_turn_success_into_a_timeout() {
        let r = run(
            &sh("echo done; sleep 30 &"),
            &env(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(r.success(), "{r:?}");
        assert_eq!(r.stdout, "done\n");
        assert!(r.duration < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn current_prints_the_version() {
        assert_eq!(
            current(&sh("printf '  v3\\n'"), &env(), Duration::from_secs(5))
                .await
                .unwrap(),
            "v3"
        );
        assert!(
            current(&sh("true"), &env(), Duration::from_secs(5))
                .await
                .unwrap_err()
                .to_string()
                .contains("printed nothing")
        );
        assert!(
            current(&sh("exit 1"), &env(), Duration::from_secs(5))
                .await
                .unwrap_err()
                .to_string()
                .contains("exit status 1")
        );
    }

    #[tokio::test]
    async fn large_output_does_not_block_the_command() {
        let r = run(
            &sh("head -c 1000000 /dev/zero | tr '\\0' x"),
            &env(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(r.success());
        assert_eq!(r.stdout.len(), KEEP);
    }
}
