//! `stage-1`: run Minigram on one process with an embedded SQLite file.

use clap::Parser;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    minigram::cli::init_logging();
    match stage_1::cli::run(stage_1::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stage-1: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
