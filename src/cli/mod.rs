//! The command line: clap definitions, one module per subcommand, and the
//! exit codes every subcommand shares.

mod check;
mod demo;
mod notify_test;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{DEFAULT_CONFIG_PATH, LogFormat};
use crate::telemetry::Overrides;

/// Exit codes, the same for every subcommand (the README's "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// An operational failure: a check, rollback or verification failed.
    Failure = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// `verify` could not decide (no data, a source down).
    Inconclusive = 3,
    /// The operator said no, or pressed Ctrl-C.
    Aborted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "rollbackd",
    version,
    about = "Watches services right after they are deployed and rolls them back when they go bad",
    long_about = None,
    after_help = "Examples:\n  rollbackd check -c /etc/rollbackd/rollbackd.toml\n  rollbackd run -c /etc/rollbackd/rollbackd.toml"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The main configuration file
    #[arg(short = 'c', long = "config", env = "ROLLBACKD_CONFIG", default_value = DEFAULT_CONFIG_PATH, global = true, value_name = "FILE")]
    pub config: PathBuf,
    /// Log format; overrides daemon.log_format
    #[arg(long, env = "ROLLBACKD_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Log level or filter (e.g. "debug" or "info,rollbackd=trace"); overrides daemon.log_level
    #[arg(long, env = "ROLLBACKD_LOG_LEVEL", global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

impl Global {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            format: self.log_format.map(|f| match f {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            }),
            level: self.log_level.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon
    #[command(
        after_help = "Example:\n  rollbackd run -c /etc/rollbackd/rollbackd.toml\n\nReloads on SIGHUP and on any change to the configuration files; stops on SIGTERM or SIGINT."
    )]
    Run,
    /// Validate the configuration and print every error as FILE:LINE:COLUMN
    #[command(
        after_help = "Examples:\n  rollbackd check -c /etc/rollbackd/rollbackd.toml\n  rollbackd check --online   # also ask every Prometheus, resolve every URL, find every command\n\nExit status: 0 valid, 1 an online check failed, 2 invalid."
    )]
    Check {
        /// Also prove that each Prometheus source answers and each query
        /// parses there, each health URL resolves, and each command exists
        /// and is executable
        #[arg(long)]
        online: bool,
    },
    /// Show the whole loop on an embedded simulated cluster: a good deploy, a
    /// bad one, detection, the undo, the rollout wait, verification
    #[command(
        after_help = "Example:\n  rollbackd demo\n\nNeeds no cluster and no network; exits 0 once the bad release is rolled back and verified (some 15 s)."
    )]
    Demo,
    /// Send a test message through each notifier and say whether it arrived
    #[command(
        name = "notify-test",
        after_help = "Examples:\n  rollbackd notify-test                      # every [notifiers.NAME]\n  rollbackd notify-test ops-slack oncall-email\n\nEach notifier gets one message marked as a test, sent directly (not through\nthe outbox). Prints per notifier whether it was delivered, with the server's\nanswer. Exit status: 0 all delivered, 1 any failed, 2 invalid configuration\nor unknown notifier."
    )]
    NotifyTest {
        /// Notifier names from [notifiers.NAME]; all of them when none is given
        #[arg(value_name = "NOTIFIER")]
        notifiers: Vec<String>,
    },
    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  rollbackd completions bash > /usr/share/bash-completion/completions/rollbackd"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    #[command(
        after_help = "Example:\n  rollbackd manpage | gzip > /usr/share/man/man1/rollbackd.1.gz"
    )]
    Manpage,
}

/// Runs the parsed command line and returns the process exit code.
pub fn dispatch(cli: Cli) -> ExitCode {
    let exit = match &cli.command {
        Command::Run => run::run(&cli.global),
        Command::Check { online } => check::check(&cli.global, *online),
        Command::Demo => demo::demo(&cli.global),
        Command::NotifyTest { notifiers } => notify_test::notify_test(&cli.global, notifiers),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "rollbackd",
                &mut std::io::stdout(),
            );
            Exit::Success
        }
        Command::Manpage => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => Exit::Success,
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit::Failure
                }
            }
        }
    };
    exit.into()
}
