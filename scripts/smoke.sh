#!/usr/bin/env bash
# Smoke load (part of the test command): the Goose journeys against a fresh
# stage 1 and a fresh stage 2 for a few seconds. Every request name must be
# exercised and none may fail. Needs the release binaries (cargo build
# --release --workspace) and, for stage 2, Postgres and Redis (services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${db:-}" ]; then
        psql "${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
        redis-cli -u "${TEST_REDIS_URL:-redis://127.0.0.1:6379}" --scan --pattern "smoke:$db:*" 2>/dev/null | xargs -r redis-cli -u "${TEST_REDIS_URL:-redis://127.0.0.1:6379}" del >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# start NAME ARGS...: runs a stage on a free port, prints its URL.
start() {
    local name=$1; shift
    "$bin/$name" --listen 127.0.0.1:0 "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^Minigram stage [12] on \(http:[^ ]*\).*/\1/p' "$work/$name.log")
        [ -n "$url" ] && { echo "$url"; return 0; }
        sleep 0.2
    done
    echo "smoke: $name did not start:" >&2
    cat "$work/$name.log" >&2
    return 1
}

url1=$(start stage-1 --data-dir "$work/s1")
echo "smoke: stage 1 at $url1"
"$bin/loadtests" smoke --host "$url1" --users 10 --duration 8 --json-out "$work/smoke-stage-1.json"

db="minigram_smoke_$$_$RANDOM"
url2=$(start stage-2 --data-dir "$work/s2" \
    --database-url "${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}/$db" \
    --redis-url "${TEST_REDIS_URL:-redis://127.0.0.1:6379}" --redis-prefix "smoke:$db")
echo "smoke: stage 2 at $url2"
"$bin/loadtests" smoke --host "$url2" --users 10 --duration 8 --json-out "$work/smoke-stage-2.json"
echo "smoke: both stages passed"
