//! The open model (`--arrival-rate R`): visits start on a schedule, R per
//! second, whether or not earlier visits have finished — as people arrive
//! at a real site — like k6's `constant-arrival-rate` executor.
//!
//! Goose runs a fixed number of users, so here they are *slots* (k6's
//! VUs): each takes the next start time from one shared schedule, sleeps
//! until it, and runs one visit. A slow server therefore faces more visits
//! in progress, not fewer requests. When every slot is busy a visit starts
//! late; its first request is timed from the **scheduled** start, so the
//! wait shows in its latency (no coordinated omission), and late starts
//! are counted so a report can say the generator ran short of slots.
//!
//! This module also keeps the latency of every request as the open model
//! measures it (from the intended send time), and the number of visits in
//! progress, which is an outcome of the open model, not an input.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The step's schedule: visit `k` starts at `start + k / rate`, until `end`.
/// It starts once every slot has arrived (Goose launches them over its
/// first second and resets its metrics then): visits that started while
/// slots were still launching would be late for the generator's sake and
/// missing from Goose's counts.
struct Schedule {
    /// `None` until every slot has arrived.
    start: Option<Instant>,
    interval: Duration,
    secs: u64,
    slots: usize,
    arrived: usize,
    next: u64,
}

static SCHEDULE: Mutex<Option<Schedule>> = Mutex::new(None);
static IN_PROGRESS: AtomicI64 = AtomicI64::new(0);
static LATE: AtomicU64 = AtomicU64::new(0);
static MAX_LATE_MICROS: AtomicU64 = AtomicU64::new(0);

/// A start later than this counts as late (the slots ran out).
const LATE_AFTER: Duration = Duration::from_millis(50);

/// Sets the schedule of the next step: `rate` visits per second for
/// `secs` seconds, once all `slots` have arrived.
pub fn plan(rate: f64, slots: usize, secs: u64) {
    *SCHEDULE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Schedule {
        start: None,
        interval: Duration::from_secs_f64(1.0 / rate),
        secs,
        slots,
        arrived: 0,
        next: 0,
    });
    LATE.store(0, Ordering::Relaxed);
    MAX_LATE_MICROS.store(0, Ordering::Relaxed);
}

/// No schedule: the closed model (each user starts its next visit when
/// the last one ends, after a think time).
pub fn closed() {
    *SCHEDULE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// A slot's first call: it has launched. The last one starts the schedule.
pub fn arrive() {
    let mut s = SCHEDULE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = s.as_mut() {
        s.arrived += 1;
        if s.arrived >= s.slots && s.start.is_none() {
            s.start = Some(Instant::now() + Duration::from_millis(50));
        }
    }
}

/// What a slot should do next.
pub enum Next {
    /// Closed model: visit now.
    Now,
    /// Open model: the visit scheduled at this instant (possibly past).
    At(Instant),
    /// Open model: not started yet, or done; look again after this long.
    Idle(Duration),
}

/// Takes the next start time from the schedule.
pub fn next() -> Next {
    let mut s = SCHEDULE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = s.as_mut() else {
        return Next::Now;
    };
    let Some(start) = s.start else {
        return Next::Idle(Duration::from_millis(20));
    };
    let at = start + s.interval.mul_f64(s.next as f64);
    if at >= start + Duration::from_secs(s.secs) {
        // Goose ends the attack a little after the schedule.
        return Next::Idle(Duration::from_millis(200));
    }
    s.next += 1;
    Next::At(at)
}

/// Waits until a scheduled start, and records it if it was late.
pub async fn wait_for(at: Instant) {
    let now = Instant::now();
    if at > now {
        tokio::time::sleep_until(at.into()).await;
    } else if now - at > LATE_AFTER {
        LATE.fetch_add(1, Ordering::Relaxed);
        MAX_LATE_MICROS.fetch_max((now - at).as_micros() as u64, Ordering::Relaxed);
    }
}

/// Visits started late in this step, and the latest start (ms).
pub fn late() -> (u64, f64) {
    (
        LATE.load(Ordering::Relaxed),
        MAX_LATE_MICROS.load(Ordering::Relaxed) as f64 / 1000.0,
    )
}

/// Marks a visit in progress until dropped.
pub struct InProgress;

impl InProgress {
    pub fn start() -> Self {
        IN_PROGRESS.fetch_add(1, Ordering::Relaxed);
        InProgress
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        IN_PROGRESS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Visits in progress now.
pub fn in_progress() -> i64 {
    IN_PROGRESS.load(Ordering::Relaxed)
}

static LATENCY: Mutex<BTreeMap<String, Histogram<u64>>> = Mutex::new(BTreeMap::new());

/// Records one request's time (from its intended send time) under `name`.
pub fn record(name: &str, took: Duration) {
    let mut all = LATENCY.lock().unwrap_or_else(|e| e.into_inner());
    let h = all.entry(name.to_owned()).or_insert_with(|| {
        Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
    });
    h.saturating_record(took.as_micros().max(1) as u64);
}

/// The requests' times since the last call, per name (µs).
pub fn take_latencies() -> BTreeMap<String, Histogram<u64>> {
    std::mem::take(&mut *LATENCY.lock().unwrap_or_else(|e| e.into_inner()))
}
