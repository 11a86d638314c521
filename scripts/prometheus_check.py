#!/usr/bin/env python3
"""The Prometheus and Grafana checks of the test command (scripts/smoke.sh).

A real `prometheus`, started with deploy/prometheus/prometheus.yml and a
targets file naming the smoke run's stage 1 and stage 2, has scraped both
under the smoke load. This script:

  wait PROM                  waits until Prometheus reports both targets up
  check PROM RUNS1 RUNS2     asks Prometheus for the p95 by route of each
                             stage (histogram_quantile over the request
                             histogram), the request totals, the pool and
                             hash figures; prints the answers and fails if
                             one is missing or implausible (RUNS: the
                             loadtests result files of that stage's loads,
                             comma-separated, to compare request counts)
  grafana DASHBOARD PROM URL...
                             every metric name in the Grafana dashboard's
                             queries is in the /metrics output of one of the
                             stages at URL..., and every query is valid
                             PromQL that Prometheus answers

Standard library only (urllib), so it runs wherever Python 3 does.
"""
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

REQUEST_TIMEOUT_S = 15.0  # the stages' --request-timeout-secs default
WINDOW = "5m"  # covers the whole smoke run


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def query(prom, expr):
    """The instant vector `expr` evaluates to, as [(labels, value)]."""
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = get_json(url)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"prometheus: {expr!r} refused: {e.read().decode()}")
    if answer.get("status") != "success":
        raise SystemExit(f"prometheus: {expr!r} failed: {answer}")
    return [(s["metric"], float(s["value"][1])) for s in answer["data"]["result"]]


def wait(prom, want=2, secs=30):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            targets = get_json(prom + "/api/v1/targets")["data"]["activeTargets"]
            up = [t for t in targets if t["labels"].get("job") == "minigram" and t["health"] == "up"]
            if len(up) >= want:
                print(f"prometheus: {len(up)} Minigram targets up")
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"prometheus: fewer than {want} Minigram targets up after {secs} s")


def generated_requests(files):
    """Requests the load generator sent, over its result files."""
    total = 0
    for f in files.split(","):
        run = json.load(open(f))
        for step in run["steps"]:
            total += sum(r["count"] for r in step["requests"].values())
    return total


def check(prom, runs1, runs2):
    problems = []
    for stage, runs in (("1", runs1), ("2", runs2)):
        sel = f'stage="{stage}"'
        p95 = query(prom, f"histogram_quantile(0.95, sum by (le, http_route) "
                          f"(rate(http_server_request_duration_seconds_bucket{{{sel}}}[{WINDOW}])))")
        by_route = {m.get("http_route"): v for m, v in p95}
        print(f"stage {stage}: histogram_quantile(0.95, ...) by route over {WINDOW}:")
        for route, v in sorted(by_route.items()):
            shown = f"{v * 1000:.2f} ms" if math.isfinite(v) else str(v)
            print(f"  {route:28} p95 {shown}")
        for route in ("/api/feed", "/api/login", "/api/register", "/api/explore", "/api/photos"):
            v = by_route.get(route)
            if v is None or not (0 < v < REQUEST_TIMEOUT_S):
                problems.append(f"stage {stage}: p95 of {route} is {v}")
        # The journeys' requests only: not Prometheus's own scrapes of
        # /metrics, nor the generator's reads of /api/metrics.
        journeys = f'{sel}, http_route=~"/api/.+", http_route!="/api/metrics"'
        counted = sum(v for _, v in query(
            prom, f"sum(increase(http_server_request_duration_seconds_count{{{journeys}}}[{WINDOW}]))"))
        sent = generated_requests(runs)
        print(f"stage {stage}: Prometheus counted {counted:.0f} requests, the generator sent {sent}")
        # increase() misses what a series counted before its first scrape
        # and extrapolates at the window's edges: a loose band.
        if not (0.5 * sent <= counted <= 1.5 * sent):
            problems.append(f"stage {stage}: {counted:.0f} requests counted for {sent} sent")
        hashes = query(prom, f"max_over_time(minigram_password_hash_queue{{{sel}}}[{WINDOW}])")
        if not hashes or not all(0 <= v < 10_000 for _, v in hashes):
            problems.append(f"stage {stage}: hash queue figure {hashes}")
        else:
            print(f"stage {stage}: password hash queue, highest sample {max(v for _, v in hashes):.0f}")
    # The pools' gauges are sampled once a second, so "in use" is often 0
    # under a light load: what must hold is that the series exist and stay
    # within the pool's size, and that the Postgres pool opened connections.
    for pool, size in (("postgres", 10), ("redis", 16)):
        used = query(prom, f'max_over_time(db_client_connection_count{{stage="2",pool="{pool}",state="used"}}[{WINDOW}])')
        u = max((v for _, v in used), default=None)
        print(f"stage 2: {pool} pool, most connections in use at a sample {u} (pool size {size})")
        if u is None or not (0 <= u <= size):
            problems.append(f"stage 2: {pool} pool in use {u}")
    opened = query(prom, f'max_over_time((sum(db_client_connection_count{{stage="2",pool="postgres"}}))[{WINDOW}:2s])')
    o = max((v for _, v in opened), default=None)
    print(f"stage 2: postgres pool, most connections open {o}")
    if o is None or not (0 < o <= 10):
        problems.append(f"stage 2: postgres connections open {o}")
    if problems:
        raise SystemExit("prometheus check failed:\n  " + "\n  ".join(problems))
    print("prometheus: p95 by route, request totals, pool and hash figures present and plausible")


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "and", "or", "unless", "offset"}


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", e)  # grouping labels
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word in PROMQL_WORDS:
            continue  # a function or an operator
        names.add(word)
    return names


def exposed_names(url):
    names = set()
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def grafana(dashboard, prom, urls):
    dash = json.load(open(dashboard))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exposed = set()
    for url in urls:
        exposed |= exposed_names(url)
    used = set().union(*(metric_names(e) for e in exprs))
    missing = sorted(used - exposed)
    if not used or missing:
        raise SystemExit(f"grafana: metric names in {dashboard} that no stage exposes: {missing}")
    for expr in exprs:
        # Grafana's "All" of the stage variable is ".+" (a selector must
        # match something non-empty).
        concrete = expr.replace("$__rate_interval", "1m").replace("$stage", ".+")
        query(prom, concrete)  # raises unless Prometheus accepts and answers it
    print(f"grafana: {len(exprs)} queries over {len(used)} metric names, every name exposed "
          f"by a stage and every query answered by Prometheus")


def main(argv):
    if len(argv) == 2 and argv[0] == "wait":
        wait(argv[1])
    elif len(argv) == 4 and argv[0] == "check":
        check(*argv[1:])
    elif len(argv) >= 4 and argv[0] == "grafana":
        grafana(argv[1], argv[2], argv[3:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
