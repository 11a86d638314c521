//! Stage 2's storage microbenchmarks (criterion):
//! `cargo bench -p stage-2 --bench storage` (add `-- --quick` for a short
//! check). Seeds a new Postgres database (and Redis key prefix, both
//! dropped afterwards) with the lab's dataset, measures the `Store` use
//! cases in-process and writes `results/bench-storage-stage-2.json`
//! (operation | mean | target | status; see `contract::bench`).

#[path = "../tests/common/mod.rs"]
mod common;

use stage_2::Stage2Config;

fn main() -> anyhow::Result<()> {
    let opts =
        contract::bench::Options::from_args("stage-2", "cargo bench -p stage-2 --bench storage");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The defaults `stage-2` serves with (pools, feed cache), on a new
    // database and key prefix.
    let (fresh, name) = common::fresh_config();
    let mut config = Stage2Config::new(fresh.database_url, fresh.redis_url);
    config.redis_prefix = fresh.redis_prefix;
    let backend = format!(
        "Postgres (sqlx pool of {}) + Redis (pool of {}, feed cache {})",
        config.pg_pool_size,
        config.redis_pool_size,
        if config.feed_cache { "on" } else { "off" }
    );
    let pg = rt.block_on(common::Pg::with_config(config, name));
    let uploads = pg.dir.path().join("uploads");
    std::fs::create_dir_all(&uploads)?;
    let result = contract::bench::run(&rt, &pg.store, &uploads, "stage-2", &backend, &opts);
    drop(pg);
    result.map(|_| ())
}
