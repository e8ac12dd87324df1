//! The `rollbackd` binary: parses the command line and hands it to
//! [`rollbackd::cli::dispatch`], which maps every outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    rollbackd::cli::dispatch(rollbackd::cli::Cli::parse())
}
