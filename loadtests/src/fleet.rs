//! One variant's simulated machines (a topology run): its hosts, the
//! Postgres and Redis it runs inside them, and the links between the app
//! and its data, started together and removed together.
//!
//! The lab seeds through the direct addresses (seeding is not measured)
//! and points the app processes at the app-side addresses, which go
//! through the links when the topology has a round-trip time.

use std::sync::Arc;

use crate::hosts::{Budget, Host, Hosts};
use crate::servers::{self, OwnPostgres, Owned};
use crate::topology::Topology;

pub struct Fleet {
    // Fields drop in order: the processes first, the groups last (a group
    // with members cannot be removed).
    /// The links in front of Postgres and Redis, when the topology has an
    /// RTT.
    links: Option<(Owned, Owned)>,
    redis: Option<Owned>,
    postgres: Option<OwnPostgres>,
    pub apps: Vec<Arc<Host>>,
    pub generator: Arc<Host>,
    pub hosts: Hosts,
    /// The servers' logs and Redis's directory (after the hosts: dropped last).
    _logs: tempfile::TempDir,
    /// The topology's record for this variant (result files, reports).
    pub record: serde_json::Value,
}

/// Where the app and the seeder find Postgres and Redis.
pub struct DataAddrs {
    pub postgres: String,
    pub redis: String,
}

impl Fleet {
    /// Makes the hosts of `apps` app processes (and, for stage 2, its data
    /// hosts with their own Postgres and Redis, and links of `rtt_ms`).
    pub fn start(
        topology: &Topology,
        apps: usize,
        stage2: bool,
        rtt_ms: Option<f64>,
    ) -> anyhow::Result<Self> {
        let logs_dir = tempfile::Builder::new()
            .prefix("minigram-fleet-")
            .tempdir()?;
        let logs = logs_dir.path();
        let mut hosts = Hosts::new()?;
        let mut app_hosts = Vec::new();
        let mut generator = None;
        let (mut pg_host, mut redis_host) = (None, None);
        for h in topology.hosts(apps, stage2) {
            let host = hosts.add(&h.name, h.budget)?;
            match h.name.as_str() {
                "postgres" => pg_host = Some(host),
                "redis" => redis_host = Some(host),
                "generator" => generator = Some(host),
                _ => app_hosts.push(host),
            }
        }
        let generator = generator.expect("every topology has a generator host");
        let (mut postgres, mut redis, mut links) = (None, None, None);
        if let (Some(pg_host), Some(redis_host)) = (pg_host, redis_host) {
            postgres = Some(OwnPostgres::start(&pg_host, logs)?);
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
                let pg = postgres.as_ref().map(|p| p.port).unwrap_or_default();
                let to_pg =
                    servers::link(&format!("127.0.0.1:{pg}"), rtt, &network, logs, "postgres")?;
                let r = redis.as_ref().map(|r| r.addr.clone()).unwrap_or_default();
                links = Some((to_pg, servers::link(&r, rtt, &network, logs, "redis")?));
            }
        }
        Ok(Self {
            links,
            redis,
            postgres,
            apps: app_hosts,
            generator,
            hosts,
            _logs: logs_dir,
            record: topology.json(apps, stage2, rtt_ms),
        })
    }

    /// The direct addresses (for seeding), if this fleet runs stage 2.
    pub fn direct(&self) -> Option<DataAddrs> {
        Some(DataAddrs {
            postgres: self.postgres.as_ref()?.url(),
            redis: format!("redis://{}", self.redis.as_ref()?.addr),
        })
    }

    /// The addresses the app processes use: through the links, if any.
    pub fn for_app(&self) -> Option<DataAddrs> {
        let direct = self.direct()?;
        Some(match &self.links {
            Some((pg, redis)) => DataAddrs {
                postgres: format!("postgres://postgres@{}", pg.addr),
                redis: format!("redis://{}", redis.addr),
            },
            None => direct,
        })
    }
}
