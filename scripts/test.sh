#!/usr/bin/env bash
# The one test command (see README): finds or starts PostgreSQL and Redis,
# then formatting, lints, a quick run of the benchmark (it must work, its
# numbers are not checked here), and every test.
# Everything builds in the release profile, once, for tests and benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says how long the one before it took, so a slow CI run shows
# where its minutes went.
began=$SECONDS
last=  # when the step under way began; empty before the first
step() {
    if [ -n "$last" ]; then printf '    (%d s)\n' $((SECONDS - last)); fi
    last=$SECONDS
    printf '\n==> %s\n' "$*"
}

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust from https://rustup.rs, then run this again" >&2
    exit 1
fi

step "services: PostgreSQL and Redis for stage 2"
scripts/services.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (release, all targets, warnings are errors)"
cargo clippy --release --workspace --all-targets -- -D warnings

step "cargo build --release (the binaries the benchmarks and tests run)"
cargo build --release --workspace

step "benchmark smoke: cargo bench -p stage-1 / -p stage-2 (process and storage benches) -- --quick"
cargo bench -p stage-1 --bench stage1 -- --quick --out "${TMPDIR:-/tmp}/minigram-bench1-smoke.json"
cargo bench -p stage-1 --bench storage -- --quick --out "${TMPDIR:-/tmp}/minigram-storage1-smoke.json"
cargo bench -p stage-2 --bench stage2 -- --quick --out "${TMPDIR:-/tmp}/minigram-bench2-smoke.json"
cargo bench -p stage-2 --bench storage -- --quick --out "${TMPDIR:-/tmp}/minigram-storage2-smoke.json"

step "smoke load: loadtests smoke against stage 1 and stage 2"
scripts/smoke.sh

step "cargo test (release)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for people and CI: the totals over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
printf '    (%d s)\ntest command: %d s in all\n' $((SECONDS - last)) $((SECONDS - began))
exit "$status"
