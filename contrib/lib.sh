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

# Starts a throwaway PostgreSQL cluster in DIR/data on 127.0.0.1:PORT with its Unix
# socket in SOCKDIR, TCP clients authenticated by HOST_AUTH; further postgresql.conf
# lines come on stdin. Logs go to DIR/initdb.log and DIR/postgres.log.
start_throwaway_pg() { # dir port host-auth sockdir
    local dir=$1 port=$2 auth=$3 sock=$4
    as_pg initdb -D "$dir/data" -U postgres --auth-local=trust --auth-host="$auth" -E UTF8 --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    as_pg mkdir -p "$sock"
    {
        printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" "$port" "$sock"
        cat
    } >>"$dir/data/postgresql.conf"
    as_pg pg_ctl -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null ||
        { tail -n 20 "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
}
