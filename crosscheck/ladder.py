"""Locust's breaking point for one Minigram server, searched the way the
lab's `loadtests breaking --users` searches it (loadtests/src/verdict.rs):
a ladder of users doubling from --users, each step its own measurement
after every user launched, then bisection between the last passing and the
first failing level until they are within 1/20 of each other. Each step is
judged by the lab's SLO (loadtests/src/slo.rs): a class breaks only when a
one-sided 95 % lower confidence bound on its p95 is over its limit, and
errors may be at most 1 %.

Prints one JSON object: the steps (users, req/s, per-class count, errors,
p95 and its bound, generator CPU) and the breaking point. crosscheck/run.py
calls it; it runs alone too:

    python crosscheck/ladder.py --host http://127.0.0.1:8080
"""

import argparse
import json
import math
import resource
import sys
import time

import gevent
from gevent.pool import Pool
from locust.env import Environment

import locustfile
from locustfile import POOL, SEED_PASSWORD, Person

LIMITS_MS = {"reads": 250.0, "writes": 500.0, "sign-in": 1000.0}
MAX_ERROR_RATE = 0.01


def class_of(name):
    if name.startswith("GET "):
        return "reads"
    if name in ("POST /api/login", "POST /api/register"):
        return "sign-in"
    return "writes"


def p95_and_bound(times):
    """The p95 (nearest rank) and its one-sided 95 % lower confidence
    bound: the k-th fastest, k the largest rank with P(Bin(n, .95) >= k)
    >= .95 by the normal approximation, as loadtests/src/slo.rs."""
    n = len(times)
    if n == 0:
        return 0.0, 0.0
    s = sorted(times)
    p95 = s[min(n, max(1, math.ceil(0.95 * n))) - 1]
    k = math.floor(0.95 * n - 1.645 * math.sqrt(n * 0.95 * 0.05))
    k = min(max(k, 1), n)
    return p95, s[k - 1]


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sign_in_people(host, people):
    """The sessions people have from earlier visits (not measured), four
    at a time, retrying when the server sheds (503/429)."""
    import urllib.error
    import urllib.request

    def one(k):
        username = f"user{k + 1}"
        body = json.dumps({"username": username, "password": SEED_PASSWORD}).encode()
        for _ in range(40):
            req = urllib.request.Request(
                f"{host}/api/login", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    me = json.load(r)
                return {"username": username, "password": SEED_PASSWORD,
                        "token": me["token"], "userId": me["userId"], "busy": 0}
            except urllib.error.HTTPError as e:
                if e.code not in (429, 503):
                    raise SystemExit(f"signing in {username} answered {e.code}: is the dataset seeded?")
                gevent.sleep(float(e.headers.get("Retry-After") or 0.5))
        raise SystemExit(f"could not sign {username} in")

    POOL.clear()
    POOL.extend(Pool(4).map(one, range(people)))


def step(host, users, secs):
    """One measurement: `users` Locust users, all launched, then `secs`
    seconds of their requests."""
    env = Environment(user_classes=[Person], host=host)
    times, errors, counts = {}, {}, {}
    measuring = [False]

    def on_request(name, response_time, exception, **_):
        if not measuring[0]:
            return
        c = class_of(name)
        counts[c] = counts.get(c, 0) + 1
        times.setdefault(c, []).append(response_time)
        if exception is not None:
            errors[c] = errors.get(c, 0) + 1

    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=max(users, 1))
    while runner.user_count < users:
        gevent.sleep(0.05)
    measuring[0] = True
    began, cpu = time.monotonic(), cpu_seconds()
    gevent.sleep(secs)
    measuring[0] = False
    elapsed, cpu = time.monotonic() - began, cpu_seconds() - cpu
    runner.quit()
    gevent.sleep(1.0)  # the server drains what was in flight
    total, failed = sum(counts.values()), sum(errors.values())
    classes = {}
    for c, t in times.items():
        p95, low = p95_and_bound(t)
        classes[c] = {"count": counts[c], "errors": errors.get(c, 0), "p95Ms": p95, "p95LowMs": low}
    return {
        "users": users,
        "secs": round(elapsed, 2),
        "requests": total,
        "rps": total / elapsed,
        "errorRate": failed / total if total else 1.0,
        "classes": classes,
        "generatorCores": cpu / elapsed,
    }


def breach(s):
    if s["errorRate"] > MAX_ERROR_RATE:
        return f"error rate {s['errorRate'] * 100:.2f}% > 1%"
    worst = None
    for c, st in s["classes"].items():
        over = st["p95LowMs"] / LIMITS_MS[c]
        if over > 1 and (worst is None or over > worst[0]):
            worst = (over, c, st)
    if worst is None:
        return None
    _, c, st = worst
    return (f"{c} p95 = {st['p95Ms']:.0f} ms > {LIMITS_MS[c]:.0f} ms, "
            f">= {st['p95LowMs']:.0f} ms at 95% confidence from {st['count']} requests")


def search(host, start, most, secs, bisect, bisect_secs, log):
    steps, passing, failing = [], None, None
    level = max(1, min(start, most))
    while True:
        s = step(host, level, secs)
        s["phase"], s["breach"] = "ladder", breach(s)
        steps.append(s)
        log(s)
        if s["breach"] is None:
            passing = s
            if level >= most:
                break
            level = min(level * 2, most)
        else:
            failing = s
            break
    for _ in range(bisect if failing else 0):
        lo = passing["users"] if passing else 0
        hi = failing["users"]
        if hi - lo <= max(lo / 20, 1):
            break
        s = step(host, math.ceil((lo + hi) / 2), bisect_secs)
        s["phase"], s["breach"] = "bisect", breach(s)
        steps.append(s)
        log(s)
        if s["breach"] is None:
            passing = s
        else:
            failing = s
    return steps, passing, failing


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--max-users", type=int, default=512)
    ap.add_argument("--step-secs", type=float, default=20)
    ap.add_argument("--bisect", type=int, default=3)
    ap.add_argument("--bisect-secs", type=float, default=None)
    ap.add_argument("--people", type=int, default=500)
    ap.add_argument("--seeded-users", type=int, default=10000)
    a = ap.parse_args()
    locustfile.SEEDED_USERS = a.seeded_users
    sign_in_people(a.host, min(a.people, a.seeded_users))

    def log(s):
        print(f"locust: {s['users']} users: {s['rps']:.1f} req/s, generator "
              f"{s['generatorCores']:.2f} cores: {s['breach'] or 'SLO held'}", file=sys.stderr)

    steps, passing, failing = search(a.host, a.users, a.max_users, a.step_secs,
                                     a.bisect, a.bisect_secs or a.step_secs, log)
    import locust
    json.dump({
        "generator": f"locust {locust.__version__}",
        "host": a.host,
        "steps": steps,
        "breakingPoint": None if failing is None else {
            "users": passing["users"] if passing else 0,
            "rps": passing["rps"] if passing else 0.0,
            "brokenBy": failing["breach"],
        },
    }, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
