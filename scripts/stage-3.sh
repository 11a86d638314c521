#!/usr/bin/env bash
# Stage 3 in one command: a Postgres primary and one streaming read replica
# of it (initdb, then pg_basebackup -R), each a cluster of its own in a
# temporary directory, and a stage-2 process reading from the replica with
# timelines on (--feed-strategy hybrid). Redis is the local one
# (scripts/services.sh starts it). Ctrl-C stops the process and removes
# both clusters.
#
#   scripts/stage-3.sh                       # http://127.0.0.1:8083
#   PRIMARY_PORT=5450 REPLICA_PORT=5451 LISTEN=127.0.0.1:9000 scripts/stage-3.sh -- --celebrity-followers 50
#
# Extra arguments after `--` go to stage-2.
set -euo pipefail
cd "$(dirname "$0")/.."

primary_port=${PRIMARY_PORT:-5440}
replica_port=${REPLICA_PORT:-5441}
listen=${LISTEN:-127.0.0.1:8083}
[ "${1:-}" = "--" ] && shift

say() { printf 'stage-3: %s\n' "$*"; }

pg=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pg/initdb" ] || { say "PostgreSQL's server binaries are missing: run scripts/services.sh (it installs them)" >&2; exit 1; }
command -v redis-cli >/dev/null && redis-cli -p 6379 ping >/dev/null 2>&1 \
    || { say "no Redis on 127.0.0.1:6379: run scripts/services.sh (it starts one)" >&2; exit 1; }

dir=$(mktemp -d /tmp/minigram-stage3-XXXXXX)
# Postgres refuses to run as root: then the clusters belong to `postgres`.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"

stop() {
    for c in replica primary; do
        [ -d "$dir/$c" ] && as_pg "$pg/pg_ctl" -D "$dir/$c" -m fast stop >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
}
trap stop EXIT

say "primary on 127.0.0.1:$primary_port (initdb)"
as_pg "$pg/initdb" -U postgres -A trust -E UTF8 -D "$dir/primary" >/dev/null
as_pg "$pg/pg_ctl" -D "$dir/primary" -w -l "$dir/primary.log" \
    -o "-p $primary_port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
say "replica on 127.0.0.1:$replica_port (pg_basebackup -R: a copy that follows the primary)"
as_pg "$pg/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -R -X stream \
    --checkpoint=fast -D "$dir/replica"
as_pg "$pg/pg_ctl" -D "$dir/replica" -w -l "$dir/replica.log" \
    -o "-p $replica_port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null

say "stage 2 with a read replica and hybrid timelines on http://$listen"
cargo run --release -p stage-2 -- \
    --listen "$listen" \
    --data-dir "$dir/data" \
    --database-url "postgres://postgres@127.0.0.1:$primary_port/minigram" \
    --read-replica "postgres://postgres@127.0.0.1:$replica_port/minigram" \
    --redis-prefix minigram-stage3 \
    --feed-strategy hybrid \
    "$@"
