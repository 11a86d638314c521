"""The cross-check: stage 1's breaking point, found by
the lab's generator (`loadtests breaking`, Goose) and by Locust
(crosscheck/ladder.py, crosscheck/locustfile.py), repeated and
interleaved (Goose, Locust; then Locust, Goose; ...) so slow drift of the
machine lands on both alike. Every run gets fresh storage, seeded like the
lab's (10,000 users, 100,000 photos, 50 follows each, 200,000 likes), and
a fresh stage-1 server with its defaults, in a CPU budget of its own
(--server-cores, 0.3 as the lab's app host: so the server runs out before
either generator does; 0 puts it on the bare shared box); both generators
use the closed
model (users from 8, doubling, then bisection; think times 200-800 ms;
500 people with lasting sessions) and the same SLO.

Writes results/crosscheck-locust-<time>.json with every run (users and
req/s at the breaking point, what broke, the generator's CPU there, every
step); `dashboard report` turns it into the README's table, with each
generator's median and range and ours / Locust's paired by repeat. Run
through scripts/crosscheck.sh, which installs Locust first.
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerHost:
    """A CPU budget for the server, as the lab's simulated app host: a
    cgroup (v1 `cpu` controller) with a quota per 10 ms period. The
    generator stays outside it, on the rest of the machine, so the server
    and not the generator is what runs out."""

    def __init__(self, cores):
        self.dir = None
        if cores <= 0:
            return
        self.dir = f"/sys/fs/cgroup/cpu/minigram-crosscheck-{os.getpid()}"
        os.makedirs(self.dir, exist_ok=True)
        period = 10_000
        with open(f"{self.dir}/cpu.cfs_period_us", "w") as f:
            f.write(str(period))
        with open(f"{self.dir}/cpu.cfs_quota_us", "w") as f:
            f.write(str(round(cores * period)))

    def enter(self):
        """Runs in the server's process between fork and exec."""
        if self.dir:
            with open(f"{self.dir}/cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def remove(self):
        if self.dir:
            os.rmdir(self.dir)


def start_stage_1(bins, data, host_budget):
    seed = [f"{bins}/stage-1", "seed", "--data-dir", data, "--users", "10000",
            "--photos", "100000", "--follows-per-user", "50", "--likes", "200000"]
    subprocess.run(seed, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen(
        [f"{bins}/stage-1", "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=host_budget.enter,
    )
    host = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{host}/health", timeout=1):
                return server, host
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("stage 1 did not answer /health")


def run_goose(bins, host, out, a):
    subprocess.run(
        [f"{bins}/loadtests", "breaking", "--host", host, "--users", "8",
         "--seeded-users", "10000", "--max-users", str(a.max_users), "--step-secs", str(a.step_secs),
         "--bisect", str(a.bisect), "--json-out", out],
        check=True, stdout=sys.stderr,
    )
    with open(out) as f:
        d = json.load(f)
    bp = d.get("breakingPoint") or {}
    cores = (d.get("machine") or {}).get("cores") or 1
    share = bp.get("generatorCpuAtFailure")
    return {"generator": "loadtests (Goose)", "commit": d.get("commit"), "machine": d.get("machine"),
            "users": bp.get("users"), "rps": bp.get("rps"), "brokenBy": bp.get("brokenBy"),
            "generatorCoresAtFailure": None if share is None else share * cores,
            "steps": [{"users": s.get("users"), "rps": s.get("rps"),
                       "generatorCpu": s.get("generatorCpu")} for s in d.get("steps", [])]}


def run_locust(python, host, a):
    out = subprocess.run(
        [python, os.path.join(HERE, "ladder.py"), "--host", host,
         "--max-users", str(a.max_users), "--step-secs", str(a.step_secs),
         "--bisect", str(a.bisect)],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    d = json.loads(out)
    bp = d.get("breakingPoint") or {}
    failing = [st for st in d["steps"] if st["breach"]]
    return {"generator": d["generator"], "users": bp.get("users"), "rps": bp.get("rps"),
            "brokenBy": bp.get("brokenBy"),
            "generatorCoresAtFailure": failing[-1]["generatorCores"] if failing else None,
            "steps": d["steps"]}


def spread(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"values": v, "median": statistics.median(v), "min": min(v), "max": max(v)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--step-secs", type=int, default=20)
    ap.add_argument("--bisect", type=int, default=3)
    ap.add_argument("--max-users", type=int, default=4096)
    ap.add_argument("--server-cores", type=float, default=0.3,
                    help="the server's CPU budget in cores (0: none, the bare shared box)")
    ap.add_argument("--bins", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release"))
    ap.add_argument("--python", default=sys.executable, help="a Python with Locust")
    ap.add_argument("--command", help="the command as typed, for the result file "
                    "(scripts/crosscheck.sh passes its own)")
    a = ap.parse_args()
    if a.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    started = datetime.datetime.now(datetime.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    runs, began = [], time.monotonic()
    host_budget = ServerHost(a.server_cores)
    for r in range(1, a.repeat + 1):
        order = ["goose", "locust"] if r % 2 else ["locust", "goose"]
        for gen in order:
            data = tempfile.mkdtemp(prefix="minigram-crosscheck-")
            server, host = start_stage_1(a.bins, data, host_budget)
            try:
                print(f"crosscheck: repeat {r} of {a.repeat}, {gen} on {host}", file=sys.stderr)
                if gen == "goose":
                    out = os.path.join(data, "goose.json")
                    run = run_goose(a.bins, host, out, a)
                else:
                    run = run_locust(a.python, host, a)
            finally:
                server.terminate()
                server.wait(timeout=30)
                shutil.rmtree(data, ignore_errors=True)
            run["repeat"] = r
            runs.append(run)
            print(f"crosscheck: {run['generator']}: {run['users']} users, "
                  f"{run['rps']} req/s; {run['brokenBy'] or 'the SLO held'}", file=sys.stderr)
    host_budget.remove()
    goose = next(x for x in runs if x["generator"].startswith("loadtests"))
    result = {
        "schema": "minigram.crosscheck/1",
        "commit": goose["commit"],
        "machine": goose["machine"],
        "command": a.command or " ".join(["python", "crosscheck/run.py"] + sys.argv[1:]),
        "startedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "stage": "stage-1",
        "testBed": (f"stage 1 in a host of {a.server_cores:g} cores (a cgroup CPU quota), "
                    "the generator outside it on the rest of the machine"
                    if a.server_cores > 0 else
                    "shared box (server and generator on the same cores, no CPU budgets)"),
        "model": (f"closed: users from 8 doubling up to {a.max_users}, {a.bisect} bisection steps; "
                  "think 200-800 ms; 500 people"),
        "repeats": a.repeat,
        "minutes": round((time.monotonic() - began) / 60, 1),
        "runs": runs,
    }
    os.makedirs(os.path.join(REPO, "results"), exist_ok=True)
    path = os.path.join(REPO, "results", f"crosscheck-locust-{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    for gen in ("loadtests", "locust"):
        mine = [x for x in runs if x["generator"].startswith(gen)]
        users, rps = spread([x["users"] for x in mine]), spread([x["rps"] for x in mine])
        if users and rps:
            print(f"crosscheck: {gen}: {users['median']:g} users ({users['min']:g}-{users['max']:g}), "
                  f"{rps['median']:.0f} req/s ({rps['min']:.0f}-{rps['max']:.0f})", file=sys.stderr)
    print(path)


if __name__ == "__main__":
    main()
