//! What machine a measurement ran on, for result files: a number without
//! its machine is not checkable.

use serde::{Deserialize, Serialize};

/// Written into every result file (`machine`) and read back by the
/// dashboard: one type for both.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Machine {
    pub cores: usize,
    pub memory_mib: u64,
    pub cpu: String,
    pub os: String,
}

impl Machine {
    /// "2 cores, 24105 MiB, <cpu>, <os>", as captions print it.
    pub fn describe(&self) -> String {
        format!(
            "{} cores, {} MiB, {}, {}",
            self.cores, self.memory_mib, self.cpu, self.os
        )
    }

    pub fn current() -> Self {
        use procfs::Current;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_mib = procfs::Meminfo::current().map_or(0, |m| m.mem_total / (1024 * 1024));
        let cpu = procfs::CpuInfo::current()
            .ok()
            .and_then(|c| c.model_name(0).map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        Self {
            cores,
            memory_mib,
            cpu,
            os,
        }
    }
}

/// The git commit of the working tree, with `-dirty` if it has changes.
pub fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}-dirty") } else { rev }
        }
        None => "unknown".into(),
    }
}

/// The machine's CPUs (the `cpuN` lines of /proc/stat), whatever CPU quota
/// the calling process runs under: inside a lab host of 0.5 cores,
/// `available_parallelism` says 1, but shares of "the machine" are shares
/// of all of them.
pub fn machine_cores() -> usize {
    match kernel_stats() {
        Some(k) if !k.cpu_time.is_empty() => k.cpu_time.len(),
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

fn kernel_stats() -> Option<procfs::KernelStats> {
    use procfs::CurrentSI;
    procfs::KernelStats::current().ok()
}

/// CPU time (user + system) a process has used so far, in seconds (0 when
/// it is gone).
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = procfs::process::Process::new(pid as i32).and_then(|p| p.stat()) else {
        return 0.0;
    };
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}

/// CPU time (all cores) the whole machine has been busy since boot, in
/// seconds: everything but idle and waiting for I/O.
pub fn machine_busy_seconds() -> f64 {
    let Some(k) = kernel_stats() else {
        return 0.0;
    };
    let t = &k.total;
    let busy = t.user
        + t.nice
        + t.system
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    // Guest time is already counted in user and nice.
    busy as f64 / procfs::ticks_per_second() as f64
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ` (UTC), without a date crate.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (Howard Hinnant's civil date).
pub fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The readings from /proc are this machine's, in seconds and MiB.
    #[test]
    fn readings_are_plausible() {
        let before = process_cpu_seconds(std::process::id());
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = process_cpu_seconds(std::process::id()) - before;
        assert!(
            (0.1..5.0).contains(&used),
            "300 ms of spinning read as {used} s"
        );
        assert!(machine_busy_seconds() > 0.0);
        assert!(machine_cores() >= 1);
        let m = Machine::current();
        assert!(m.memory_mib > 100 && m.cores >= 1, "{m:?}");
        assert_eq!(process_cpu_seconds(u32::MAX), 0.0, "a process that is gone");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400 + 86_399), "2000-02-29T23:59:59Z");
    }
}
