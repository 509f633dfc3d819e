#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::dbg_macro,
    clippy::todo
)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit with 2 inside `parse`.
    let cli = activator::cli::Cli::parse();
    match activator::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, whatever the causes' own formatting.
            let message = format!("{err:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("activator: {message}");
            ExitCode::FAILURE
        }
    }
}
