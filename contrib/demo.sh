#!/usr/bin/env bash
# make demo: the pooler in front of a throwaway PostgreSQL, in the foreground.
#
# PostgreSQL lives in a temp dir on a free port with its own socket dir, so it touches
# no cluster of the machine's; Ctrl-C stops the pooler, then the trap stops PostgreSQL
# and removes the temp dir.
#
# Environment:
#   DEMO_PORT=6432     where the pooler listens (127.0.0.1 and a unix socket in the temp dir)
#   POOLER_BIN=path    a pooler binary other than target/release/pooler (skips cargo build)
#   PG_BINDIR=/usr/lib/postgresql/15/bin   where initdb and pg_ctl live
set -euo pipefail

DEMO_PORT=${DEMO_PORT:-6432}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo_root/target}
pooler_bin=${POOLER_BIN:-$target_dir/release/pooler}

# shellcheck disable=SC2034 # read by contrib/lib.sh
script_name=demo
# shellcheck source=contrib/lib.sh
. "$repo_root/contrib/lib.sh"

for tool in initdb pg_ctl psql; do
    command -v "$tool" >/dev/null || die "$tool not found (install postgresql-15 and postgresql-client-15, or set PG_BINDIR)"
done
if is_root; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run PostgreSQL"
fi
if port_in_use "$DEMO_PORT"; then
    die "port $DEMO_PORT on 127.0.0.1 is in use; choose another with DEMO_PORT=..."
fi

if [ -z "${POOLER_BIN:-}" ]; then
    echo "demo: cargo build --release ..."
    (cd "$repo_root" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$pooler_bin" ] || die "pooler binary not found at $pooler_bin"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pooler-demo.XXXXXX")
# Readable by everyone so that psql run by any user can reach the pooler's unix socket here.
chmod 755 "$tmp"
is_root && chown postgres: "$tmp"
pg_started=""

# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$pg_started" ]; then
        echo "demo: stopping PostgreSQL and removing $tmp"
        as_pg pg_ctl -D "$tmp/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
# The pooler gets Ctrl-C too (same process group) and drains; bash runs this trap only
# after the pooler has exited.
trap 'exit 130' INT
trap 'exit 143' TERM

pg_port=10000
while port_in_use "$pg_port" || [ "$pg_port" = "$DEMO_PORT" ]; do
    pg_port=$((pg_port + 1))
done

echo "demo: starting PostgreSQL in $tmp on 127.0.0.1:$pg_port ..."
start_throwaway_pg "$tmp" "$pg_port" scram-sha-256 "$tmp/pgsock" <<EOF
fsync = off
EOF
pg_started=1

psql -X -q -v ON_ERROR_STOP=1 -h "$tmp/pgsock" -p "$pg_port" -U postgres -d postgres \
    -c "CREATE ROLE demo LOGIN PASSWORD 'demo'" \
    -c "CREATE DATABASE demo OWNER demo"

cat >"$tmp/pooler.conf" <<EOF
# Written by contrib/demo.sh; see pooler.conf.sample for every key.
[pooler]
listen_addr = "127.0.0.1"
listen_port = $DEMO_PORT
unix_socket_dir = "$tmp"
auth_type = "scram-sha-256"
pool_mode = "transaction"
default_pool_size = 5
log_level = "info"

[databases.demo]
host = "127.0.0.1"
port = $pg_port

[users.demo]
password = "demo"
EOF
chmod 644 "$tmp/pooler.conf"

cat <<EOF

  PostgreSQL 15 (throwaway) : 127.0.0.1:$pg_port, data in $tmp/data
  pooler                    : 127.0.0.1:$DEMO_PORT, config $tmp/pooler.conf

  Connect through the pooler, from another terminal:

    PGPASSWORD=demo psql -h 127.0.0.1 -p $DEMO_PORT -U demo demo

  or over its unix socket:

    PGPASSWORD=demo psql -h $tmp -p $DEMO_PORT -U demo demo

  Ctrl-C stops the pooler (clients in a transaction finish first), then PostgreSQL.

EOF

status=0
"$pooler_bin" -c "$tmp/pooler.conf" || status=$?
echo "demo: pooler exited with status $status"
exit "$status"
