//! Where a lab run's processes live: the size of each simulated host
//! (`hosts.rs`) and the round trip between the app and its data.
//!
//! Written as `--topology app=0.2,postgres=0.45,redis=0.15,generator=0.45,rtt=0.5`:
//! cores per host (`cores/MiB` adds a memory limit, e.g. `app=0.2/512`),
//! and the app–data round-trip time in milliseconds. Every app process is
//! a host of the `app` size (a variant with two processes has two app
//! hosts), and every read replica a host of the `replica` size (needed
//! only by variants with replicas); stage 1 has no data hosts (its SQLite
//! file is inside the app).
//! Without `rtt` the app talks to Postgres and Redis directly; with it
//! (even `rtt=0`) through a link (`link.rs`), whose CPU belongs to no host
//! (it stands for the network) and is reported apart.

use serde_json::{Value, json};

use crate::hosts::Budget;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Topology {
    pub app: Budget,
    pub postgres: Budget,
    pub redis: Budget,
    pub generator: Budget,
    /// Each read replica's host (only variants with replicas need one).
    pub replica: Option<Budget>,
    pub rtt_ms: Option<f64>,
}

/// What one variant places on the topology: its app processes, its read
/// replicas, and whether it is stage 2 (which has data hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub apps: usize,
    pub replicas: usize,
    pub stage2: bool,
}

fn budget(text: &str) -> Result<Budget, String> {
    let (cores, memory) = match text.split_once('/') {
        Some((c, m)) => (c, Some(m)),
        None => (text, None),
    };
    let cpus: f64 = cores
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: cores must be a number, e.g. 0.25"))?;
    if !(0.01..=1024.0).contains(&cpus) {
        return Err(format!("{text:?}: cores must be between 0.01 and 1024"));
    }
    let memory_mib = memory
        .map(|m| {
            m.trim()
                .parse::<u64>()
                .map_err(|_| format!("{text:?}: memory must be MiB, e.g. 0.25/512"))
        })
        .transpose()?;
    Ok(Budget {
        cpus: Some(cpus),
        memory_mib,
    })
}

impl std::str::FromStr for Topology {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (mut app, mut postgres, mut redis, mut generator, mut replica, mut rtt_ms) =
            (None, None, None, None, None, None);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=value"))?;
            match key.trim() {
                "app" => app = Some(budget(value)?),
                "postgres" => postgres = Some(budget(value)?),
                "redis" => redis = Some(budget(value)?),
                "generator" => generator = Some(budget(value)?),
                "replica" => replica = Some(budget(value)?),
                "rtt" => {
                    let ms: f64 = value
                        .trim()
                        .trim_end_matches("ms")
                        .parse()
                        .map_err(|_| format!("{part:?}: rtt is milliseconds, e.g. rtt=0.5"))?;
                    if !(0.0..=1000.0).contains(&ms) {
                        return Err(format!("{part:?}: rtt must be between 0 and 1000 ms"));
                    }
                    rtt_ms = Some(ms);
                }
                other => {
                    return Err(format!(
                        "unknown host {other:?}: the hosts are app, postgres, redis, generator, replica (and rtt)"
                    ));
                }
            }
        }
        let need = |b: Option<Budget>, name: &str| {
            b.ok_or_else(|| format!("the topology names no {name} host (e.g. {name}=0.25)"))
        };
        Ok(Self {
            app: need(app, "app")?,
            postgres: need(postgres, "postgres")?,
            redis: need(redis, "redis")?,
            generator: need(generator, "generator")?,
            replica,
            rtt_ms,
        })
    }
}

/// One host as the run places it.
#[derive(Debug, Clone)]
pub struct Placed {
    pub name: String,
    pub budget: Budget,
}

impl Topology {
    /// The hosts of one variant: its app hosts, the data hosts if it is
    /// stage 2 (Postgres, its replicas, Redis), and the generator. Fails
    /// when the variant has replicas and the topology no `replica` size.
    pub fn hosts(&self, shape: Shape) -> anyhow::Result<Vec<Placed>> {
        let mut v: Vec<Placed> = (1..=shape.apps)
            .map(|i| Placed {
                name: format!("app-{i}"),
                budget: self.app,
            })
            .collect();
        if shape.stage2 {
            v.push(Placed {
                name: "postgres".into(),
                budget: self.postgres,
            });
            if shape.replicas > 0 {
                let budget = self.replica.ok_or_else(|| {
                    anyhow::anyhow!(
                        "the variant has {} read replicas and the topology names no replica host (e.g. replica=0.2)",
                        shape.replicas
                    )
                })?;
                v.extend((1..=shape.replicas).map(|i| Placed {
                    name: format!("replica-{i}"),
                    budget,
                }));
            }
            v.push(Placed {
                name: "redis".into(),
                budget: self.redis,
            });
        }
        v.push(Placed {
            name: "generator".into(),
            budget: self.generator,
        });
        Ok(v)
    }

    /// Cores the hosts of one variant are promised.
    pub fn cores(&self, shape: Shape) -> anyhow::Result<f64> {
        Ok(self
            .hosts(shape)?
            .iter()
            .filter_map(|h| h.budget.cpus)
            .sum())
    }

    /// Refuses (one line) a variant whose budgets add up to more than the
    /// machine's cores: the hosts would not get what they were promised.
    pub fn fits(&self, shape: Shape, label: &str) -> anyhow::Result<()> {
        let cores = measure::machine::machine_cores() as f64;
        let hosts = self
            .hosts(shape)
            .map_err(|e| anyhow::anyhow!("topology refused: variant {label}: {e}"))?;
        let need = self.cores(shape)?;
        anyhow::ensure!(
            need <= cores + 1e-9,
            "topology refused: variant {label} needs {need:.2} cores ({}) and this machine has {cores}: shrink the hosts",
            hosts
                .iter()
                .map(|h| format!("{} {:.2}", h.name, h.budget.cpus.unwrap_or(0.0)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(())
    }

    /// The record of a variant's hosts for result files and reports.
    pub fn json(&self, shape: Shape, rtt_ms: Option<f64>) -> anyhow::Result<Value> {
        Ok(record(
            &self.hosts(shape)?,
            if shape.stage2 { rtt_ms } else { None },
            self.describe(shape, rtt_ms),
        ))
    }

    /// "1 app host of 0.2 cores, postgres 0.45, redis 0.15, generator 0.45
    /// cores; app–data round trip 0.5 ms (through a link)".
    pub fn describe(&self, shape: Shape, rtt_ms: Option<f64>) -> String {
        let Shape {
            apps,
            replicas,
            stage2,
        } = shape;
        let app = match apps {
            1 => format!("1 app host of {} cores", self.app.cpus.unwrap_or(0.0)),
            n => format!("{n} app hosts of {} cores", self.app.cpus.unwrap_or(0.0)),
        };
        let mut s = app;
        if stage2 {
            s += &format!(
                ", postgres {}, redis {}",
                self.postgres.cpus.unwrap_or(0.0),
                self.redis.cpus.unwrap_or(0.0)
            );
            if replicas > 0 {
                let each = self.replica.and_then(|b| b.cpus).unwrap_or(0.0);
                s += &match replicas {
                    1 => format!(", 1 read replica of {each}"),
                    n => format!(", {n} read replicas of {each} each"),
                };
            }
        }
        s += &format!(", generator {} cores", self.generator.cpus.unwrap_or(0.0));
        if stage2 {
            match rtt_ms {
                Some(r) => s += &format!("; app–data round trip {r} ms (through a link)"),
                None => s += "; app–data direct (loopback)",
            }
        }
        s
    }
}

/// The record of the one host of a plain `loadtests --generator-cpus` run
/// (it starts no servers, so only the generator is placed).
pub fn generator_only(budget: Budget) -> Value {
    let cpus = budget.cpus.unwrap_or(0.0);
    record(
        &[Placed {
            name: "generator".into(),
            budget,
        }],
        None,
        format!("generator {cpus} cores (the servers placed by whoever started them)"),
    )
}

/// `topology` of a result file: hosts, cores promised, link, period.
fn record(hosts: &[Placed], rtt_ms: Option<f64>, text: String) -> Value {
    json!({
        "hosts": hosts.iter().map(|h| json!({
            "name": h.name,
            "cpus": h.budget.cpus,
            "memoryMib": h.budget.memory_mib,
        })).collect::<Vec<_>>(),
        "cores": hosts.iter().filter_map(|h| h.budget.cpus).sum::<f64>(),
        "rttMs": rtt_ms,
        "cpuPeriodUs": crate::hosts::PERIOD_US,
        "text": text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_the_budget() {
        let t: Topology = "app=0.2,postgres=0.45,redis=0.15/256,generator=0.45,rtt=0.5"
            .parse()
            .unwrap();
        assert_eq!(t.app.cpus, Some(0.2));
        assert_eq!(t.redis.memory_mib, Some(256));
        assert_eq!(t.rtt_ms, Some(0.5));
        let shape = |apps, replicas, stage2| Shape {
            apps,
            replicas,
            stage2,
        };
        assert!((t.cores(shape(3, 0, true)).unwrap() - 1.65).abs() < 1e-9);
        assert!((t.cores(shape(1, 0, false)).unwrap() - 0.65).abs() < 1e-9);
        // 40 app hosts of 0.2 cores are 8 cores: more than any CI machine here.
        let cores = measure::machine::machine_cores();
        let err = t
            .fits(shape(cores * 10, 0, true), "too-big")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("topology refused"), "{err}");
        assert!(t.fits(shape(1, 0, false), "small").is_ok());
        // Replicas need a replica size; with one, each is a host of it.
        let err = t.fits(shape(1, 1, true), "replicas").unwrap_err();
        assert!(err.to_string().contains("no replica host"), "{err}");
        let r: Topology = "app=0.2,postgres=0.2,replica=0.25,redis=0.1,generator=0.4"
            .parse()
            .unwrap();
        let hosts = r.hosts(shape(1, 2, true)).unwrap();
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "app-1",
                "postgres",
                "replica-1",
                "replica-2",
                "redis",
                "generator"
            ]
        );
        assert!((r.cores(shape(1, 2, true)).unwrap() - 1.4).abs() < 1e-9);
        assert!(
            r.describe(shape(1, 2, true), None)
                .contains("2 read replicas of 0.25 each")
        );
    }

    #[test]
    fn refuses_bad_text() {
        assert!(
            "app=0.2"
                .parse::<Topology>()
                .unwrap_err()
                .contains("postgres")
        );
        assert!(
            "app=x,postgres=1,redis=1,generator=1"
                .parse::<Topology>()
                .unwrap_err()
                .contains("number")
        );
        assert!(
            "app=1,postgres=1,redis=1,generator=1,disk=3"
                .parse::<Topology>()
                .unwrap_err()
                .contains("unknown host")
        );
    }
}
