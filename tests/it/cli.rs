//! The command line as an operator meets it: the shipped examples validate,
//! exit codes follow the README's "Exit codes", every subcommand's help has
//! an example, and the shipped systemd unit passes systemd's own checks.

use std::process::Output;

use crate::support::{self, command};

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = command(args);
    cmd.envs(env.iter().copied());
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run rollbackd");
    (
        status.code(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

const EXAMPLE_ENV: &[(&str, &str)] = &[
    (
        "SLACK_WEBHOOK_URL",
        "https://hooks.slack.test/services/T/B/example",
    ),
    ("SMTP_PASSWORD", "example-password"),
];

#[test]
fn the_shipped_example_configuration_is_valid() {
    let (code, out, err) = run(&["check", "-c", "etc/rollbackd.toml"], EXAMPLE_ENV);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("etc/rollbackd.toml: configuration is valid\n"),
        "{out}"
    );
    assert!(
        out.contains("watches:   2 (1 command, 1 deployment) in 2 files"),
        "{out}"
    );
    assert!(
        out.contains("checks:    5 (2 health, 2 prometheus, 1 alert)"),
        "{out}"
    );
    assert!(
        out.contains("notifiers: audit (webhook), oncall-email (email), ops-slack (slack)"),
        "{out}"
    );
    assert!(out.contains("shop-web"), "{out}");
    assert_eq!(err, "", "no warnings in the example");
}

#[test]
fn the_example_names_its_missing_environment_variables() {
    let (code, _, err) = run(&["check", "-c", "etc/rollbackd.toml"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("etc/rollbackd.toml:54:15: \"webhook_url\": environment variable SLACK_WEBHOOK_URL is not set"),
        "{err}"
    );
    assert!(
        err.contains("environment variable SMTP_PASSWORD is not set"),
        "{err}"
    );
    assert!(
        err.ends_with("etc/rollbackd.toml: 2 configuration errors\n"),
        "{err}"
    );
}

#[test]
fn the_config_file_comes_from_the_environment_when_not_given() {
    let (code, out, _) = run(
        &["check"],
        &[EXAMPLE_ENV, &[("ROLLBACKD_CONFIG", "etc/rollbackd.toml")]].concat(),
    );
    assert_eq!(code, Some(0));
    assert!(out.starts_with("etc/rollbackd.toml: configuration is valid"));
}

#[test]
fn a_missing_configuration_file_is_a_configuration_error() {
    let (code, _, err) = run(&["check", "-c", "/nonexistent/rollbackd.toml"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with(
            "/nonexistent/rollbackd.toml:1:1: cannot read the file: no such file or directory\n"
        ),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&[], &[]).0, Some(2));
    assert_eq!(run(&["frobnicate"], &[]).0, Some(2));
    assert_eq!(run(&["check", "--no-such-flag"], &[]).0, Some(2));
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for sub in ["run", "check", "completions", "manpage"] {
        let (code, out, _) = run(&[sub, "--help"], &[]);
        assert_eq!(code, Some(0), "{sub}");
        assert!(
            out.contains("Example"),
            "{sub} --help has no example:\n{out}"
        );
    }
    let (_, out, _) = run(&["--help"], &[]);
    for sub in ["run", "check"] {
        assert!(out.contains(sub), "{out}");
    }
}

#[test]
fn completions_and_man_page_come_from_the_same_definitions() {
    let (code, out, _) = run(&["completions", "bash"], &[]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("rollbackd__check") || out.contains("check"),
        "{out}"
    );
    let (code, out, _) = run(&["manpage"], &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains(".TH rollbackd"), "{out}");
    assert!(out.contains("check"), "{out}");
}

/// The unit with its binary path pointed at the test build, since
/// `systemd-analyze verify` checks that ExecStart exists.
fn unit_for_test() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string("systemd/rollbackd.service")
        .unwrap()
        .replace("/usr/bin/rollbackd", support::BIN);
    std::fs::write(dir.path().join("rollbackd.service"), unit).unwrap();
    dir
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let dir = unit_for_test();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("rollbackd.service"))
        .output()
        .expect("systemd-analyze is installed (.ci/run installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // verify exits 0 on unknown keys and only warns: warnings are failures here.
    assert_eq!(stderr, "", "systemd-analyze verify warned");
}

#[test]
fn the_systemd_unit_is_hardened() {
    let dir = unit_for_test();
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(dir.path().join("rollbackd.service"))
        .output()
        .expect("systemd-analyze is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for rollbackd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    eprintln!("systemd exposure score: {score}");
    assert!(score <= 2.0, "exposure {score} (lower is better):\n{text}");
}

#[test]
fn a_log_level_flag_that_is_not_a_level_is_refused() {
    let (code, _, err) = run(
        &["run", "-c", "etc/rollbackd.toml", "--log-level", "warning"],
        EXAMPLE_ENV,
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "error: --log-level: \"log_level\": \"warning\" is not a level (did you mean \"warn\"?)\n"
    );
}
