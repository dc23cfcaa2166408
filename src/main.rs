//! The `privint` binary: parse the command line and hand it to `privint::cli`.

use std::process::ExitCode;

use clap::Parser;
use privint::cli::{Cli, is_broken_pipe, run};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`privint scopes | head -3`) is a normal end.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:?}");
            ExitCode::FAILURE
        }
    }
}
