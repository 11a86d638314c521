//! Simulated hosts on one machine: each host is a control group with its
//! own CPU budget (and, if asked, a memory limit), and the kernel's own
//! accounting of what the processes in it used.
//!
//! A lab run with a topology (`topology.rs`) makes one group per host
//! under `minigram-lab-<pid>` and places the processes it starts in them:
//! the app processes, its Postgres cluster and Redis (`servers.rs`), the
//! links between them (`link.rs`), and the lab process itself while it
//! generates load. The quota is the CFS bandwidth limit: cgroup v1's
//! `cpu.cfs_quota_us` / `cpu.cfs_period_us` (this machine), or v2's
//! `cpu.max`. Usage is read from the group's own counters (v1
//! `cpuacct.usage`, v2 `cpu.stat usage_usec`), not from the processes, so
//! it counts every thread and child (Postgres's backends) the host ran.
//!
//! The period is 10 ms, not the kernel's (and Docker's) 100 ms: with 100 ms
//! a host of 0.2 cores that needs more runs 20 ms and then waits 80 ms,
//! which shows up as 80 ms latency spikes that a slower machine would not
//! have. A short period makes a small budget behave more like a slower CPU.
//!
//! Processes are placed right after they are spawned (the workspace forbids
//! `unsafe`, so not between fork and exec); a server that forks workers
//! early (Postgres) is placed again with all its descendants once it is
//! ready.

use anyhow::{Context, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The CFS period every budget is expressed in (see the module doc).
pub const PERIOD_US: u64 = 10_000;

/// How the machine's cgroups are laid out.
#[derive(Debug, Clone)]
enum Tree {
    /// One hierarchy per controller; `cpu` and `cpuacct` may share one.
    /// Each entry: (controller, where this process's group is).
    V1 {
        cpu: PathBuf,
        cpuacct: PathBuf,
        memory: Option<PathBuf>,
    },
    /// The unified hierarchy: (its mount, this process's group).
    V2 { mount: PathBuf, own: PathBuf },
}

/// What a host may use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Cores' worth of CPU time per second (`None`: unlimited, for the
    /// links, which stand for the network and belong to no host).
    pub cpus: Option<f64>,
    pub memory_mib: Option<u64>,
}

/// One simulated host: a group in each hierarchy the tree has.
#[derive(Debug)]
pub struct Host {
    pub name: String,
    pub budget: Budget,
    /// Directories whose `cgroup.procs` a process is written to.
    dirs: Vec<PathBuf>,
    /// Where its CPU usage is read (v1 cpuacct, or the v2 group).
    acct: PathBuf,
    /// Where its throttling is read (`cpu.stat`).
    cpu: PathBuf,
    v2: bool,
}

/// The kernel's counters of a host at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub cpu_ns: u64,
    pub periods: u64,
    pub throttled: u64,
}

pub use measure::schema::HostUse;

impl Counters {
    /// `self` minus `before`, over `secs` seconds of wall time.
    pub fn since(&self, before: &Counters, host: &Host, secs: f64) -> HostUse {
        let cpu_seconds = self.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9;
        let cores = cpu_seconds / secs.max(1e-3);
        let periods = self.periods.saturating_sub(before.periods);
        HostUse {
            name: host.name.clone(),
            cpus: host.budget.cpus,
            cpu_seconds,
            cores,
            budget_share: host.budget.cpus.map(|c| cores / c),
            throttled_share: if periods == 0 {
                0.0
            } else {
                self.throttled.saturating_sub(before.throttled) as f64 / periods as f64
            },
        }
    }
}

/// The groups of one lab run, removed (with every host) when dropped.
#[derive(Debug)]
pub struct Hosts {
    tree: Tree,
    /// The run's parent group in each hierarchy.
    bases: Vec<PathBuf>,
    hosts: Vec<std::sync::Arc<Host>>,
}

/// Whether this machine can simulate hosts, and if not, why, in one line
/// that says what to do.
pub fn check() -> anyhow::Result<()> {
    detect().map(|_| ())
}

fn detect() -> anyhow::Result<Tree> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("cannot read /proc/mounts")?;
    let own =
        std::fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
    // (controllers, path of this process's group)
    let groups: Vec<(Vec<&str>, &str)> = own
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some((controllers.split(',').collect(), path))
        })
        .collect();
    let v1_mount = |controller: &str| -> Option<PathBuf> {
        mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[2] == "cgroup" && f[3].split(',').any(|o| o == controller))
                .then(|| PathBuf::from(f[1]))
        })
    };
    let v1_group = |controller: &str| -> Option<PathBuf> {
        let mount = v1_mount(controller)?;
        let path = groups
            .iter()
            .find(|(c, _)| c.contains(&controller))
            .map_or("/", |(_, p)| p);
        Some(mount.join(path.trim_start_matches('/')))
    };
    let tree = if let (Some(cpu), Some(cpuacct)) = (v1_group("cpu"), v1_group("cpuacct")) {
        Tree::V1 {
            cpu,
            cpuacct,
            memory: v1_group("memory"),
        }
    } else if let Some(mount) = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 3 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
    }) {
        let path = groups
            .iter()
            .find(|(c, _)| c == &vec![""])
            .map_or("/", |(_, p)| p);
        let controllers =
            std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        if !controllers.split_whitespace().any(|c| c == "cpu") {
            bail!(
                "hosts need the cgroup cpu controller, which {} does not offer: run the lab without --topology (the shared box), or on a machine with cgroups v1 or v2 cpu control",
                mount.display()
            );
        }
        Tree::V2 {
            own: mount.join(path.trim_start_matches('/')),
            mount,
        }
    } else {
        bail!(
            "this machine has no cgroup cpu controller mounted: simulated hosts cannot run here; run the lab without --topology (the shared box)"
        );
    };
    let probe = match &tree {
        Tree::V1 { cpu, .. } => cpu.clone(),
        Tree::V2 { mount, .. } => mount.clone(),
    };
    // Only trying says whether groups can be made here (a read-only
    // cgroupfs in a container looks writable to root).
    let test = probe.join(format!("minigram-lab-probe-{}", std::process::id()));
    let writable = is_root() && std::fs::create_dir(&test).is_ok();
    let _ = std::fs::remove_dir(&test);
    if !writable {
        bail!(
            "simulated hosts need root (to create cgroups under {}): run the lab as root (sudo), or without --topology to use the shared box",
            probe.display()
        );
    }
    Ok(tree)
}

/// Whether this process runs as root (the owner of `/proc/self`).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value)
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A `key value` line of a stat file such as `cpu.stat`.
fn stat(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

impl Hosts {
    /// The run's parent groups; nothing is budgeted yet.
    pub fn new() -> anyhow::Result<Self> {
        let tree = detect()?;
        let name = run_group();
        let mut bases = Vec::new();
        match &tree {
            Tree::V1 {
                cpu,
                cpuacct,
                memory,
            } => {
                for own in [Some(cpu), Some(cpuacct), memory.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    let base = own.join(&name);
                    if !bases.contains(&base) {
                        bases.push(base);
                    }
                }
            }
            Tree::V2 { mount, .. } => {
                // The root is exempt from "no processes in inner groups":
                // the run's groups hang from it, with cpu (and memory, if
                // offered) enabled for their children.
                let offered =
                    std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
                let wanted: Vec<String> = ["cpu", "memory"]
                    .iter()
                    .filter(|c| offered.split_whitespace().any(|o| o == **c))
                    .map(|c| format!("+{c}"))
                    .collect();
                write(&mount.join("cgroup.subtree_control"), &wanted.join(" "))?;
                let base = mount.join(&name);
                std::fs::create_dir_all(&base)
                    .with_context(|| format!("cannot create {}", base.display()))?;
                write(&base.join("cgroup.subtree_control"), &wanted.join(" "))?;
                bases.push(base);
            }
        }
        for b in &bases {
            if let Some(parent) = b.parent() {
                sweep(parent);
            }
            std::fs::create_dir_all(b).with_context(|| format!("cannot create {}", b.display()))?;
        }
        Ok(Self {
            tree,
            bases,
            hosts: Vec::new(),
        })
    }

    /// A new host with `budget`, named `name` (unique in the run).
    pub fn add(&mut self, name: &str, budget: Budget) -> anyhow::Result<std::sync::Arc<Host>> {
        anyhow::ensure!(
            !self.hosts.iter().any(|h| h.name == name),
            "two hosts named {name}"
        );
        let dirs: Vec<PathBuf> = self.bases.iter().map(|b| b.join(name)).collect();
        for d in &dirs {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let host = match &self.tree {
            Tree::V1 {
                cpu,
                cpuacct,
                memory,
            } => {
                let base_of = |own: &Path| own.join(run_group()).join(name);
                let cpu_dir = base_of(cpu);
                if let Some(cores) = budget.cpus {
                    write(&cpu_dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                    write(
                        &cpu_dir.join("cpu.cfs_quota_us"),
                        &quota_us(cores).to_string(),
                    )?;
                }
                if let (Some(mib), Some(memory)) = (budget.memory_mib, memory) {
                    write(
                        &base_of(memory).join("memory.limit_in_bytes"),
                        &(mib * 1024 * 1024).to_string(),
                    )?;
                } else if budget.memory_mib.is_some() {
                    bail!("a memory limit was asked for, but this machine mounts no memory cgroup");
                }
                Host {
                    name: name.to_owned(),
                    budget,
                    dirs,
                    acct: base_of(cpuacct),
                    cpu: cpu_dir,
                    v2: false,
                }
            }
            Tree::V2 { .. } => {
                let dir = dirs[0].clone();
                if let Some(cores) = budget.cpus {
                    write(
                        &dir.join("cpu.max"),
                        &format!("{} {PERIOD_US}", quota_us(cores)),
                    )?;
                }
                if let Some(mib) = budget.memory_mib {
                    write(&dir.join("memory.max"), &(mib * 1024 * 1024).to_string())?;
                }
                Host {
                    name: name.to_owned(),
                    budget,
                    dirs,
                    acct: dir.clone(),
                    cpu: dir,
                    v2: true,
                }
            }
        };
        let host = std::sync::Arc::new(host);
        self.hosts.push(std::sync::Arc::clone(&host));
        Ok(host)
    }

    pub fn all(&self) -> &[std::sync::Arc<Host>] {
        &self.hosts
    }

    /// This process's own groups (to come back to from a host).
    fn own_dirs(&self) -> Vec<PathBuf> {
        match &self.tree {
            Tree::V1 {
                cpu,
                cpuacct,
                memory,
            } => {
                let mut v = vec![cpu.clone()];
                if cpuacct != cpu {
                    v.push(cpuacct.clone());
                }
                v.extend(memory.clone());
                v
            }
            Tree::V2 { own, .. } => vec![own.clone()],
        }
    }

    /// Moves this process (every thread) into `host` until the guard is
    /// dropped: the load generator runs inside its budget.
    pub fn enter(&self, host: &Host) -> anyhow::Result<Entered> {
        host.place(std::process::id())?;
        Ok(Entered {
            back: self.own_dirs(),
        })
    }
}

/// Removes the groups of earlier runs whose lab process is gone (killed
/// before it could clean up): empty groups only; one with processes left
/// in it is reported, not touched.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("minigram-lab-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = e.path();
        for host in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if host.path().is_dir() {
                let _ = std::fs::remove_dir(host.path());
            }
        }
        if std::fs::remove_dir(&dir).is_err() {
            eprintln!(
                "hosts: {} is left from an earlier run and still has processes in it",
                dir.display()
            );
        }
    }
}

/// The name of this run's parent group in every hierarchy.
fn run_group() -> String {
    format!("minigram-lab-{}", std::process::id())
}

fn quota_us(cores: f64) -> u64 {
    // The kernel refuses quotas under 1 ms.
    ((cores * PERIOD_US as f64).round() as u64).max(1_000)
}

/// This process inside a host; moved back to where it was when dropped.
pub struct Entered {
    back: Vec<PathBuf>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        for d in &self.back {
            if let Err(e) = write(&d.join("cgroup.procs"), &std::process::id().to_string()) {
                eprintln!("hosts: could not leave the generator's host: {e:#}");
            }
        }
    }
}

impl Host {
    /// Places a process (all its threads) in this host.
    pub fn place(&self, pid: u32) -> anyhow::Result<()> {
        for d in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Places a process and every process it has started (a server that
    /// forked workers before it was placed).
    pub fn place_tree(&self, pid: u32) -> anyhow::Result<()> {
        for p in descendants(pid) {
            // A worker may have exited in between: that is not an error.
            if std::path::Path::new(&format!("/proc/{p}")).exists() {
                self.place(p)?;
            }
        }
        Ok(())
    }

    /// The kernel's counters now.
    pub fn counters(&self) -> Counters {
        let stat_file = self.cpu.join("cpu.stat");
        if self.v2 {
            Counters {
                cpu_ns: stat(&stat_file, "usage_usec") * 1000,
                periods: stat(&stat_file, "nr_periods"),
                throttled: stat(&stat_file, "nr_throttled"),
            }
        } else {
            Counters {
                cpu_ns: read_u64(&self.acct.join("cpuacct.usage")),
                periods: stat(&stat_file, "nr_periods"),
                throttled: stat(&stat_file, "nr_throttled"),
            }
        }
    }

    /// The processes in this host now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dirs[0].join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// `pid` and every process descended from it, from `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// Every host's counters at one moment, to subtract later.
pub fn snapshot(hosts: &[std::sync::Arc<Host>]) -> Vec<Counters> {
    hosts.iter().map(|h| h.counters()).collect()
}

/// What each host used since `before` (taken `secs` seconds ago).
pub fn usage_since(hosts: &[std::sync::Arc<Host>], before: &[Counters], secs: f64) -> Vec<HostUse> {
    hosts
        .iter()
        .zip(before)
        .map(|(h, b)| h.counters().since(b, h, secs))
        .collect()
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let back = self.own_dirs();
        // Children first, then the run's parents. A process still inside
        // (one the lab did not start, or one not yet reaped) is moved out
        // first: a group with members cannot be removed.
        for host in &self.hosts {
            for pid in host.pids() {
                for d in &back {
                    let _ = write(&d.join("cgroup.procs"), &pid.to_string());
                }
            }
            for d in &host.dirs {
                if let Err(e) = std::fs::remove_dir(d) {
                    eprintln!("hosts: could not remove {}: {e}", d.display());
                }
            }
        }
        for b in &self.bases {
            if let Err(e) = std::fs::remove_dir(b) {
                eprintln!("hosts: could not remove {}: {e}", b.display());
            }
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The budget to check, in cores.
    #[arg(long, default_value_t = 0.3)]
    pub cpus: f64,
    /// Seconds the busy processes run.
    #[arg(long, default_value_t = 3)]
    pub secs: u64,
}

/// `loadtests hosts`: whether this machine can simulate hosts, and whether
/// a quota holds: two busy processes (one per core of a 2-core machine)
/// in one host of `--cpus` cores, and what its cgroup says they used.
/// Prints JSON; fails with one line where hosts cannot run.
pub fn run_check(args: &CheckArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        args.cpus >= 0.1 && args.secs >= 1,
        "--cpus must be at least 0.1 and --secs at least 1"
    );
    let mut hosts = Hosts::new()?;
    let host = hosts.add(
        "check",
        Budget {
            cpus: Some(args.cpus),
            memory_mib: None,
        },
    )?;
    let cores = measure::machine::machine_cores();
    let mut busy = Vec::new();
    for _ in 0..cores {
        let child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .context("cannot start sh")?;
        host.place(child.id())?;
        busy.push(child);
    }
    let (before, t0) = (host.counters(), std::time::Instant::now());
    std::thread::sleep(std::time::Duration::from_secs(args.secs));
    let used = host
        .counters()
        .since(&before, &host, t0.elapsed().as_secs_f64());
    for mut c in busy {
        let _ = c.kill();
        let _ = c.wait();
    }
    println!(
        "{}",
        serde_json::json!({
            "cgroup": match hosts.tree { Tree::V1 { .. } => "v1", Tree::V2 { .. } => "v2" },
            "periodUs": PERIOD_US,
            "busyProcesses": cores,
            "host": used,
        })
    );
    Ok(std::process::ExitCode::SUCCESS)
}
