//! One variant's simulated machines (a topology run): its hosts, the
//! Postgres (and its read replicas) and Redis it runs inside them, and the
//! links between the app and its data, started together and removed
//! together.
//!
//! The lab seeds through the direct addresses (seeding is not measured)
//! and points the app processes at the app-side addresses, which go
//! through the links when the topology has a round-trip time.

use std::sync::Arc;

use crate::hosts::{Budget, Host, Hosts};
use crate::servers::{self, OwnPostgres, Owned};
use crate::topology::{Shape, Topology};

pub struct Fleet {
    // Fields drop in order: the processes first, the groups last (a group
    // with members cannot be removed).
    /// The links in front of Postgres and Redis (and each replica), when
    /// the topology has an RTT.
    links: Option<Links>,
    redis: Option<Owned>,
    /// Before the primary: a replica stops before what it follows.
    replicas: Vec<OwnPostgres>,
    postgres: Option<OwnPostgres>,
    pub apps: Vec<Arc<Host>>,
    pub generator: Arc<Host>,
    pub hosts: Hosts,
    /// The servers' logs and Redis's directory (after the hosts: dropped last).
    _logs: tempfile::TempDir,
    /// The topology's record for this variant (result files, reports).
    pub record: serde_json::Value,
}

struct Links {
    postgres: Owned,
    redis: Owned,
    replicas: Vec<Owned>,
}

/// Where the app and the seeder find Postgres, its replicas and Redis.
pub struct DataAddrs {
    pub postgres: String,
    pub redis: String,
    /// The read replicas' servers (no database), in host order.
    pub replicas: Vec<String>,
}

impl Fleet {
    /// Makes the hosts of the variant's app processes (and, for stage 2,
    /// its data hosts with their own Postgres, read replicas and Redis, and
    /// links of `rtt_ms`).
    pub fn start(topology: &Topology, shape: Shape, rtt_ms: Option<f64>) -> anyhow::Result<Self> {
        let logs_dir = tempfile::Builder::new()
            .prefix("minigram-fleet-")
            .tempdir()?;
        let logs = logs_dir.path();
        let mut hosts = Hosts::new()?;
        let mut app_hosts = Vec::new();
        let mut generator = None;
        let (mut pg_host, mut redis_host, mut replica_hosts) = (None, None, Vec::new());
        for h in topology.hosts(shape)? {
            let host = hosts.add(&h.name, h.budget)?;
            match h.name.as_str() {
                "postgres" => pg_host = Some(host),
                "redis" => redis_host = Some(host),
                "generator" => generator = Some(host),
                n if n.starts_with("replica-") => replica_hosts.push(host),
                _ => app_hosts.push(host),
            }
        }
        let generator = generator.expect("every topology has a generator host");
        let (mut postgres, mut redis, mut links, mut replicas) = (None, None, None, Vec::new());
        if let (Some(pg_host), Some(redis_host)) = (pg_host, redis_host) {
            let primary = OwnPostgres::start(&pg_host, logs)?;
            for host in &replica_hosts {
                replicas.push(OwnPostgres::replica_of(&primary, host, logs, &host.name)?);
            }
            postgres = Some(primary);
            redis = Some(servers::own_redis(&redis_host, logs)?);
            if let Some(rtt) = rtt_ms {
                // The links stand for the network: no budget, but their
                // own group, so their CPU is measured and reported apart.
                let network = hosts.add(
                    "network",
                    Budget {
                        cpus: None,
                        memory_mib: None,
                    },
                )?;
                let to = |pg: &OwnPostgres, name: &str| {
                    servers::link(&format!("127.0.0.1:{}", pg.port), rtt, &network, logs, name)
                };
                let r = redis.as_ref().map(|r| r.addr.clone()).unwrap_or_default();
                links = Some(Links {
                    postgres: to(postgres.as_ref().expect("started above"), "postgres")?,
                    redis: servers::link(&r, rtt, &network, logs, "redis")?,
                    replicas: replicas
                        .iter()
                        .zip(&replica_hosts)
                        .map(|(pg, host)| to(pg, &host.name))
                        .collect::<anyhow::Result<_>>()?,
                });
            }
        }
        Ok(Self {
            links,
            redis,
            replicas,
            postgres,
            apps: app_hosts,
            generator,
            hosts,
            _logs: logs_dir,
            record: topology.json(shape, rtt_ms)?,
        })
    }

    /// Waits (up to `within`) until every replica has replayed all the
    /// primary had written when this was called: the seeded dataset is on
    /// every replica before the load starts, so no variant is measured
    /// while its replicas still catch up.
    pub async fn replicas_caught_up(&self, within: std::time::Duration) -> anyhow::Result<()> {
        let Some(primary) = &self.postgres else {
            return Ok(());
        };
        if self.replicas.is_empty() {
            return Ok(());
        }
        let target = primary.query("SELECT pg_current_wal_lsn()")?;
        let deadline = std::time::Instant::now() + within;
        for (i, replica) in self.replicas.iter().enumerate() {
            let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn");
            while replica.query(&sql)? != "t" {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "replica {} had not replayed the primary's {target} within {} s",
                    i + 1,
                    within.as_secs()
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// The direct addresses (for seeding), if this fleet runs stage 2.
    pub fn direct(&self) -> Option<DataAddrs> {
        Some(DataAddrs {
            postgres: self.postgres.as_ref()?.url(),
            redis: format!("redis://{}", self.redis.as_ref()?.addr),
            replicas: self.replicas.iter().map(OwnPostgres::url).collect(),
        })
    }

    /// The addresses the app processes use: through the links, if any.
    pub fn for_app(&self) -> Option<DataAddrs> {
        let direct = self.direct()?;
        Some(match &self.links {
            Some(links) => DataAddrs {
                postgres: format!("postgres://postgres@{}", links.postgres.addr),
                redis: format!("redis://{}", links.redis.addr),
                replicas: links
                    .replicas
                    .iter()
                    .map(|r| format!("postgres://postgres@{}", r.addr))
                    .collect(),
            },
            None => direct,
        })
    }
}
