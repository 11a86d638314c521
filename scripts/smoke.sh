#!/usr/bin/env bash
# Smoke load and API conformance (part of the test command), against a
# fresh stage 1 and a fresh stage 2:
# - the Goose journeys for a few seconds, in the closed model (users) and
#   in the open model (visits started per second): every request name must
#   be exercised and none may fail;
# - schemathesis against the stage's own /api/openapi.json, signed in:
#   generated and mutated requests to every operation; zero server errors
#   and zero answers that differ from the document (status, content type,
#   headers, body schema), and invalid data must be refused;
# - a real Prometheus (the Debian package) with the repo's scrape
#   configuration (deploy/prometheus/) scrapes both stages during the
#   loads; scripts/prometheus_check.py then asks it for the p95 by route of
#   each stage, the request totals and the pool and hash figures, and checks
#   that every metric the Grafana dashboard (deploy/grafana/) queries exists.
# Needs the release binaries (cargo build --release --workspace), Python
# with schemathesis, prometheus and, for stage 2, Postgres and Redis
# (services.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
cleanup() {
    # start() runs in a command substitution (a subshell): it records the
    # servers' pids in a file, not in a variable.
    if [ -f "$work/pids" ]; then
        while read -r p; do kill "$p" 2>/dev/null || true; done <"$work/pids"
    fi
    wait 2>/dev/null || true
    if [ -n "${db:-}" ]; then
        "$bin/stage-2" drop-data --database-url "$pg/$db" --redis-url "$redis" \
            --redis-prefix "smoke:$db" --yes || echo "smoke: could not remove $db" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# start NAME ARGS...: runs a stage on a free port, prints its URL.
start() {
    local name=$1; shift
    "$bin/$name" --listen 127.0.0.1:0 "$@" >"$work/$name.log" 2>&1 &
    echo $! >>"$work/pids"
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^Minigram stage [12] on \(http:[^ ]*\).*/\1/p' "$work/$name.log")
        [ -n "$url" ] && { echo "$url"; return 0; }
        sleep 0.2
    done
    echo "smoke: $name did not start:" >&2
    cat "$work/$name.log" >&2
    return 1
}

# conformance NAME URL: schemathesis against URL's OpenAPI document.
conformance() {
    local name=$1 url=$2
    local token
    token=$(python3 - "$url" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/api/register",
    data=json.dumps({"username": "schemathesis", "password": "schemathesis-pw"}).encode(),
    headers={"content-type": "application/json"})
print(json.load(urllib.request.urlopen(req))["token"])
PY
)
    # Logout is left out: it would revoke the token the run signs in with
    # (the contract suite covers it). It runs in the temporary directory,
    # where it keeps its .schemathesis cache, not in the checkout.
    (cd "$work" && python3 -m schemathesis.cli run "$url/api/openapi.json" \
        -H "Authorization: Bearer $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
        --exclude-path /api/logout \
        --max-examples "${SCHEMATHESIS_EXAMPLES:-40}" --seed 20261122 \
        --no-color --warnings off \
        --report junit --report-junit-path "$work/schemathesis-$name.xml") \
        >"$work/schemathesis-$name.log" 2>&1 || {
        cat "$work/schemathesis-$name.log" >&2
        echo "conformance: $name FAILED (schemathesis above)" >&2
        return 1
    }
    local cases
    cases=$(sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p' "$work/schemathesis-$name.log" | tail -1)
    echo "conformance: $name: schemathesis generated ${cases:-?} cases, 0 failures"
}

pg="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
redis="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
url1=$(start stage-1 --data-dir "$work/s1")
echo "smoke: stage 1 at $url1"
db="minigram_smoke_$$_$RANDOM"
url2=$(start stage-2 --data-dir "$work/s2" --database-url "$pg/$db" \
    --redis-url "$redis" --redis-prefix "smoke:$db")
echo "smoke: stage 2 at $url2"

# Prometheus with the repo's configuration; only the targets file is ours.
mkdir -p "$work/prometheus/targets"
cp deploy/prometheus/prometheus.yml "$work/prometheus/"
cat >"$work/prometheus/targets/smoke.json" <<JSON
[{"targets": ["${url1#http://}"], "labels": {"stage": "1"}},
 {"targets": ["${url2#http://}"], "labels": {"stage": "2"}}]
JSON
prom_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prom="http://127.0.0.1:$prom_port"
prometheus --config.file="$work/prometheus/prometheus.yml" \
    --web.listen-address="127.0.0.1:$prom_port" \
    --storage.tsdb.path="$work/prometheus/data" >"$work/prometheus.log" 2>&1 &
echo $! >>"$work/pids"
scripts/prometheus_check.py wait "$prom" || { cat "$work/prometheus.log" >&2; exit 1; }

"$bin/loadtests" smoke --host "$url1" --users 10 --duration 8 --json-out "$work/smoke-stage-1.json"
"$bin/loadtests" smoke --host "$url1" --arrival-rate 10 --duration 8 --json-out "$work/smoke-open-stage-1.json"
"$bin/loadtests" smoke --host "$url2" --users 10 --duration 8 --json-out "$work/smoke-stage-2.json"
# The open-model run's generator runs in a simulated host of its own (a
# cgroup quota, `--generator-cpus`): its steps must record what it used,
# inside its budget.
"$bin/loadtests" smoke --host "$url2" --arrival-rate 10 --duration 8 --generator-cpus 0.5 --json-out "$work/smoke-open-stage-2.json"
python3 - "$work/smoke-open-stage-2.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
assert run["topology"]["hosts"] == [{"name": "generator", "cpus": 0.5, "memoryMib": None}], run["topology"]
for step in run["steps"]:
    (gen,) = step["hostCpu"]
    assert gen["name"] == "generator" and 0 < gen["budgetShare"] <= 1.05, gen
print("smoke: the generator ran in its host: %.3f of 0.5 cores" % run["steps"][0]["hostCpu"][0]["cores"])
PY

# Two scrapes after the last request, so the totals are in.
sleep 4
scripts/prometheus_check.py check "$prom" \
    "$work/smoke-stage-1.json,$work/smoke-open-stage-1.json" \
    "$work/smoke-stage-2.json,$work/smoke-open-stage-2.json"
scripts/prometheus_check.py grafana deploy/grafana/dashboards/minigram.json "$prom" "$url1" "$url2"

conformance stage-1 "$url1"
conformance stage-2 "$url2"
echo "smoke and conformance: both stages passed"
