use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    rollbackd::cli::dispatch(rollbackd::cli::Cli::parse())
}
