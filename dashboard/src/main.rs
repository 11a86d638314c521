//! `dashboard`: renders `results/*.json` into one self-contained page, and
//! can serve it.

use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "dashboard",
    version,
    about = "Render the lab's result files into one self-contained HTML page",
    after_help = "Examples:\n  dashboard                          writes results/dashboard.html\n  dashboard --results /tmp/r --out /tmp/r/index.html\n  dashboard --serve                  and serves it on http://127.0.0.1:8090\n  dashboard report                   rewrites the generated tables of README.md and docs/ from results/\n  dashboard report --check           fails if README.md, docs/ or results/dashboard.html differ from what results/ give\n  dashboard stale                    lists the reference runs older than the code they measure"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Directory of result files.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Page to write (default: <results>/dashboard.html).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Serve the page after writing it.
    #[arg(long)]
    serve: bool,
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Rewrites the generated parts of README.md and docs/**/*.md (between
    /// `<!-- report:KEY -->` and `<!-- /report:KEY -->`) from the result files.
    Report {
        /// The repository: README.md, docs/ and (unless --results) results/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Change nothing; exit 1 if a generated part is out of date.
        #[arg(long)]
        check: bool,
    },
    /// Lists the reference runs (the newest report of each experiment,
    /// and the benchmark files) whose code has changed since they were
    /// measured; exit 1 if there is any.
    Stale,
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dashboard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Report { root, check }) = &cli.command {
        let results = if cli.results.is_absolute() {
            cli.results.clone()
        } else {
            root.join(&cli.results)
        };
        for line in dashboard::report::run(root, &results, *check)? {
            eprintln!("{line}");
        }
        return Ok(());
    }
    if let Some(Command::Stale) = &cli.command {
        let results = dashboard::load(&cli.results)?;
        let stale = dashboard::freshness::report(&results);
        for line in &stale.lines {
            println!("{line}");
        }
        anyhow::ensure!(
            stale.stale == 0,
            "{} of {} reference runs are older than the code they measure: re-run them (each line names its command)",
            stale.stale,
            stale.lines.len()
        );
        return Ok(());
    }
    eprintln!("dashboard 1/2: reading {}", cli.results.display());
    let sources = dashboard::report::Sources::load(&cli.results)?;
    let results = sources.results();
    eprintln!(
        "dashboard 2/2: rendering {} load-test runs and {} benchmark files ({} skipped)",
        results.runs.len(),
        results.benches.len(),
        results.skipped.len()
    );
    for (file, why) in &results.skipped {
        eprintln!("  skipped {file}: {why}");
    }
    // Dated by its files, not by the clock: `dashboard report --check`
    // compares results/dashboard.html with what the files give.
    let html = dashboard::render(results, dashboard::report::newest_run_date(&sources))?;
    let out = cli
        .out
        .unwrap_or_else(|| cli.results.join("dashboard.html"));
    std::fs::write(&out, &html)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "wrote {} ({} KiB); open it in a browser, no server needed",
        out.display(),
        html.len() / 1024
    );
    if cli.serve {
        let listener = std::net::TcpListener::bind(&cli.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
        eprintln!("serving it on http://{}", listener.local_addr()?);
        let page = actix_web::web::Bytes::from(html);
        actix_web::HttpServer::new(move || {
            let page = page.clone();
            actix_web::App::new().default_service(actix_web::web::to(move || {
                let page = page.clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("text/html; charset=utf-8")
                        .body(page)
                }
            }))
        })
        .listen(listener)?
        .run()
        .await?;
    }
    Ok(())
}
