//! `stage-2`: run a stateless Minigram process on Postgres and Redis.

use clap::Parser;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    minigram::cli::init_logging();
    match stage_2::cli::run(stage_2::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stage-2: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
