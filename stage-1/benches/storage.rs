//! Stage 1's storage microbenchmarks (criterion):
//! `cargo bench -p stage-1 --bench storage` (add `-- --quick` for a short
//! check). Seeds a fresh SQLite file with the lab's dataset, measures the
//! `Store` use cases in-process and writes `results/bench-storage-stage-1.json`
//! (operation | mean | target | status; see `contract::bench`).

use stage_1::{SqliteConfig, SqliteStore};

fn main() -> anyhow::Result<()> {
    let opts =
        contract::bench::Options::from_args("stage-1", "cargo bench -p stage-1 --bench storage");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    // The defaults `stage-1` serves with: WAL, synchronous=FULL, 8 readers.
    let config = SqliteConfig::new(dir.path().join("minigram.sqlite3"));
    let backend = format!(
        "SQLite ({:?} journal, synchronous {:?}, one writer, {} readers)",
        config.journal_mode, config.synchronous, config.max_readers
    );
    let store = SqliteStore::open(config)?;
    let uploads = dir.path().join("uploads");
    std::fs::create_dir_all(&uploads)?;
    contract::bench::run(&rt, &store, &uploads, "stage-1", &backend, &opts)?;
    Ok(())
}
