# shellcheck shell=bash
# Shell helpers shared by contrib/demo.sh and contrib/bench/bench.sh (sourced, not run).
# The sourcing script sets $script_name (for messages) first.

# Debian keeps initdb and pg_ctl out of PATH.
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
if [ -d "$PG_BINDIR" ]; then
    PATH="$PG_BINDIR:$PATH"
fi

die() { printf '%s: %s\n' "${script_name:-contrib}" "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# initdb, pg_ctl and pgbouncer refuse to run as root.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
