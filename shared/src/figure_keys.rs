//! The keys of the saturation figures (`/api/metrics`'s `figures`, the
//! live page, the load tests' server samples): written by the stores and
//! the telemetry sampler, read by the verdicts and the lab's report. One
//! list, so a renamed figure fails to compile instead of silently reading
//! zero.

/// Password hashes running or queued (the hash pool).
pub const HASH_IN_FLIGHT: &str = "hash.inFlight";

/// Stage 1: writes queued for the one SQLite writer.
pub const SQLITE_WRITERS_WAITING: &str = "sqlite.writersWaiting";
/// Stage 1: milliseconds writes spent queued (a counter).
pub const SQLITE_WRITE_WAIT_MS: &str = "sqlite.writeWaitMs";
/// Stage 1: write transactions or savepoints (a counter).
pub const SQLITE_WRITES: &str = "sqlite.writes";
/// Stage 1: commits, one per group of writes (a counter).
pub const SQLITE_COMMITS: &str = "sqlite.commits";
/// Stage 1: writes per commit over the last second.
pub const SQLITE_BATCH_SIZE: &str = "sqlite.batchSize";
/// Stage 1: writes in the largest commit so far.
pub const SQLITE_LARGEST_BATCH: &str = "sqlite.largestBatch";
/// Stage 1: SQLITE_BUSY / LOCKED errors (a counter).
pub const SQLITE_BUSY: &str = "sqlite.busy";
/// Stage 1: milliseconds reads spent running SQL (a counter).
pub const SQLITE_READ_MS: &str = "sqlite.readMs";
/// Stage 1: read connections in use (an instant, for the live page).
pub const SQLITE_READERS_BUSY: &str = "sqlite.readersBusy";
/// Stage 1: milliseconds read connections' slots were held, waiting for a
/// core or running SQL (a counter: per second, the mean slots held — on
/// the same footing as `sqlite.readMs`, which it always includes).
pub const SQLITE_READ_HELD_MS: &str = "sqlite.readHeldMs";

/// Stage 2: Postgres connections in use, idle, and calls waiting for one.
pub const POSTGRES_USED: &str = "postgres.used";
pub const POSTGRES_IDLE: &str = "postgres.idle";
pub const POSTGRES_WAITING: &str = "postgres.waiting";
/// Stage 2: Postgres pool timeouts and calls refused at once (counters).
pub const POSTGRES_TIMEOUTS: &str = "postgres.timeouts";
pub const POSTGRES_SHED: &str = "postgres.shed";

/// Stage 2: Redis connections in use, and calls waiting for one.
pub const REDIS_USED: &str = "redis.used";
pub const REDIS_WAITING: &str = "redis.waiting";
/// Stage 2: Redis pool timeouts and calls refused at once (counters).
pub const REDIS_TIMEOUTS: &str = "redis.timeouts";
pub const REDIS_SHED: &str = "redis.shed";

/// Stage 2: feed reads the cache answered, missed, or bypassed (counters).
pub const CACHE_HITS: &str = "cache.hits";
pub const CACHE_MISSES: &str = "cache.misses";
pub const CACHE_BYPASSES: &str = "cache.bypasses";

/// Stage 2 (photo queue): photos waiting, processed (a counter), and the
/// upload-to-visible time of the last one.
pub const PHOTOS_QUEUED: &str = "photos.queued";
pub const PHOTOS_PROCESSED: &str = "photos.processed";
pub const PHOTOS_LAG_MS: &str = "photos.lagMs";

/// Stage 2 with timelines (`--feed-strategy push|hybrid`): photos
/// announced and not yet in every timeline, the fan-out lag of the last
/// one (ms), and counters of what fan-out and the readers did.
pub const FANOUT_BACKLOG: &str = "fanout.backlog";
pub const FANOUT_LAG_MS: &str = "fanout.lagMs";
pub const FANOUT_WRITES: &str = "fanout.timelineWrites";
pub const FANOUT_PHOTOS: &str = "fanout.photos";
pub const FANOUT_CELEBRITY_POSTS: &str = "fanout.celebrityPhotos";
pub const FANOUT_LOST: &str = "fanout.lost";
pub const FANOUT_FOLLOWERS_MS: &str = "fanout.followersMs";
pub const FANOUT_WRITE_MS: &str = "fanout.writeMs";
pub const TIMELINES_BUILT: &str = "timelines.built";
pub const TIMELINES_PAST_END: &str = "timelines.pastEnd";

/// Stage 2 with read replicas: reads sent to the primary because no
/// replica had replayed the reader's own last write.
pub const REPLICA_BEHIND_FLOOR: &str = "replicas.behindOwnWrite";
/// Reads sent to the primary because no replica was usable (down, too far
/// behind, or busy).
pub const REPLICA_NONE_USABLE: &str = "replicas.noneUsable";
/// Reads that failed on a replica and were answered by the primary.
pub const REPLICA_RETRIED: &str = "replicas.retried";
