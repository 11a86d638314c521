#!/usr/bin/env bash
# The outside-generator cross-check (crosscheck/README.md): installs Locust
# into a virtualenv of its own (so its pinned dependencies never meet the
# test tools'), builds the binaries, and runs crosscheck/run.py, which
# writes results/crosscheck-locust-<time>.json. Arguments go to run.py
# (--repeat N, --step-secs S, --bisect N).
set -euo pipefail
cd "$(dirname "$0")/.."

LOCUST_VERSION=2.47.0
venv="${MINIGRAM_LOCUST_VENV:-$HOME/.cache/minigram-locust}"
if ! "$venv/bin/python" -c "import locust, sys; sys.exit(locust.__version__ != '$LOCUST_VERSION')" 2>/dev/null; then
    echo "crosscheck: installing locust $LOCUST_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "locust==$LOCUST_VERSION"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/minigram-target}"
# The whole workspace, as scripts/test.sh builds it: building two packages
# alone unifies features differently and rebuilds half the tree.
cargo build --release --workspace
exec "$venv/bin/python" crosscheck/run.py --python "$venv/bin/python" \
    --command "scripts/crosscheck.sh $*" "$@"
