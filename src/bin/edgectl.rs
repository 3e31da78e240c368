//! `edgectl`: the command-line client of an edge cluster. Parsing happens here; everything else
//! lives in `edge::cli` so it can be tested without a process.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = edge::cli::Cli::parse();
    match edge::cli::run_blocking(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => edge::cli::report_error(&e),
    }
}
