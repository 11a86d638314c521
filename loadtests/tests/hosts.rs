//! Simulated hosts, on the real kernel: a CPU quota holds (the cgroup's own
//! accounting says so), a link adds the round trip it is asked for, and
//! the lab refuses budgets larger than the machine before it starts
//! anything. These need root and cgroups (the test command runs as root
//! on this machine); where hosts cannot run they fail, with the line that
//! says why.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_loadtests");

#[test]
fn a_cpu_quota_holds_under_saturation() {
    let out = Command::new(BIN)
        .args(["hosts", "--cpus", "0.3", "--secs", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulated hosts must work on this machine: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let share = v["host"]["budgetShare"].as_f64().unwrap();
    // Busy processes on every core want far more than 0.3 cores: the host
    // must get its budget, and no more, within 5%.
    assert!(
        (0.95..=1.05).contains(&share),
        "a saturated host used {share:.3} of its budget: {v}"
    );
    assert!(v["host"]["throttledShare"].as_f64().unwrap() > 0.9, "{v}");
}

/// Round trips of one byte through `addr`, in milliseconds, sorted.
fn round_trips(addr: &str, n: usize) -> Vec<f64> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut times = Vec::new();
    let mut b = [0u8; 1];
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(b"x").unwrap();
        s.read_exact(&mut b).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times
}

/// A link with `rtt_ms` to a one-byte echo server; returns its address
/// and the process (killed by the caller).
fn link(rtt_ms: &str) -> (String, std::process::Child) {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = echo.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                let mut c = c;
                let mut b = [0u8; 1];
                while c.read_exact(&mut b).is_ok() && c.write_all(&b).is_ok() {}
            });
        }
    });
    let mut child = Command::new(BIN)
        .args(["link", "--to", &to, "--rtt-ms", rtt_ms])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("link on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (addr, child)
}

#[test]
fn a_link_adds_its_round_trip_time() {
    let (slow, mut a) = link("2");
    let (fast, mut b) = link("0");
    let with = round_trips(&slow, 40);
    let without = round_trips(&fast, 40);
    let _ = (a.kill(), b.kill(), a.wait(), b.wait());
    let (median, floor) = (with[20], without[20]);
    // 2 ms on the wire plus the proxy's own hop and the sleep's overshoot.
    assert!(
        (2.0..=3.0).contains(&median),
        "a 2 ms link gave a median round trip of {median:.3} ms: {with:?}"
    );
    assert!(
        floor < 1.0,
        "a 0 ms link gave a median round trip of {floor:.3} ms: {without:?}"
    );
    assert!(
        with[0] >= 2.0,
        "no round trip may beat the link's delay: {with:?}"
    );
}

#[test]
fn the_lab_refuses_budgets_beyond_the_machine_before_starting_anything() {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "lab",
            "scale-out",
            "--topology",
            "app=1,postgres=1,redis=1,generator=1",
            "--out-dir",
        ])
        .arg(std::env::temp_dir().join("minigram-refused-topology"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an oversized topology ran: {said}");
    assert!(said.contains("topology refused"), "{said}");
    assert!(
        !said.contains("seeding"),
        "it started something first: {said}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{said}");
}
