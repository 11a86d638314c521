#!/usr/bin/env bash
# Finds or starts what the tests use besides Rust: Chromium, the Python
# prometheus-client (metrics tests), the Prometheus server (smoke.sh), and the local PostgreSQL and Redis
# that stage 2's tests use
# (127.0.0.1:5432, user postgres, no password; 127.0.0.1:6379). Installs
# them with apt-get when they are missing and we are root on Debian/Ubuntu.
# Anything it cannot do, it says, and exits non-zero: the tests never skip.
#
# Set TEST_DATABASE_URL / TEST_REDIS_URL to use other servers instead.
set -euo pipefail

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port what
    for _ in $(seq 1 60); do listening "$1" && return 0; sleep 0.5; done
    die "$2 did not start listening on 127.0.0.1:$1"
}

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        die "$* not installed: install it (Debian/Ubuntu: apt-get install -y $*), or set TEST_DATABASE_URL / TEST_REDIS_URL"
    fi
    say "installing $* with apt-get"
    if [ -z "${APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
    # initdb and pg_ctl are needed by the fault tests even when a server runs.
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        apt_install postgresql
        fresh_install=1
    fi
    if listening 5432; then
        say "PostgreSQL is listening on 127.0.0.1:5432"
    else
        command -v pg_ctlcluster >/dev/null || apt_install postgresql
        version=$(ls /etc/postgresql | sort -V | tail -1)
        [ -n "$version" ] || die "no PostgreSQL cluster under /etc/postgresql"
        say "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        wait_for 5432 PostgreSQL
    fi
    if [ -n "${fresh_install:-}" ]; then
        # A cluster we just installed: let local test connections in
        # without a password, as on the lab's machines.
        version=$(ls /etc/postgresql | sort -V | tail -1)
        hba=/etc/postgresql/$version/main/pg_hba.conf
        sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(local\s+all\s+postgres\s+)\S+/\1trust/' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
}

ensure_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
    if listening 6379; then
        say "Redis is listening on 127.0.0.1:6379"
    else
        say "starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
        wait_for 6379 Redis
    fi
}

ensure_browser_and_parser() {
    # The metrics tests load the live page in a real browser and parse
    # /metrics with the Prometheus client's own parser; the API conformance
    # run (smoke.sh) uses schemathesis, and the Prometheus check (smoke.sh)
    # the real Prometheus server.
    command -v chromium >/dev/null || apt_install chromium
    command -v prometheus >/dev/null || apt_install prometheus
    pip_install prometheus_client prometheus-client
    pip_install schemathesis "schemathesis==$SCHEMATHESIS_VERSION"
    python3 -m schemathesis.cli --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION" \
        || pip_install_now "schemathesis==$SCHEMATHESIS_VERSION"
    say "chromium, prometheus, prometheus-client and schemathesis $SCHEMATHESIS_VERSION are available"
}

SCHEMATHESIS_VERSION=4.32.5

# pip_install MODULE REQUIREMENT: installs REQUIREMENT unless MODULE imports.
pip_install() {
    python3 -c "import $1" 2>/dev/null || pip_install_now "$2"
}

pip_install_now() {
    say "installing $1 (pip)"
    python3 -m pip install --quiet --disable-pip-version-check "$1" 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages "$1" \
        || die "cannot install $1: python3 -m pip install '$1'"
}

ensure_browser_and_parser
if [ -z "${TEST_DATABASE_URL:-}" ]; then ensure_postgres; else say "using TEST_DATABASE_URL"; fi
if [ -z "${TEST_REDIS_URL:-}" ]; then ensure_redis; else say "using TEST_REDIS_URL"; fi
