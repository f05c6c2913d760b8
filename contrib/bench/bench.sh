#!/usr/bin/env bash
# make bench: pgbench against the pooler, PgBouncer and PostgreSQL directly, in one run.
#
# Everything runs on this machine against a throwaway PostgreSQL in a temp dir; the
# targets are interleaved (round 1: each workload against A B C, round 2: ...) so a
# slow minute of the machine hurts every target alike, and we report medians.
#
# Environment:
#   ROUNDS=3              rounds of every workload against every target
#   DURATION=10           seconds per pgbench run
#   SCALE=10              pgbench -i scale factor
#   POOL_SIZE=20          pool size, the same for the pooler and PgBouncer
#   BENCH_TARGETS="pooler pgbouncer direct"   a subset, to measure fewer targets
#   BENCH_SKIP_PGBOUNCER=1  do not install or run PgBouncer (its columns read n/a)
#   BENCH_POOLER_BIN=path   a pooler binary other than target/release/pooler (skips cargo build)
#   BENCH_KEEP=1          keep the temp dir (logs of every run) instead of removing it
#   IDLE_CLIENTS=10000    idle logged-in clients for the memory line (0 = skip it)
#   BENCH_WORKLOADS="1 4"  run only these workloads (indexes into workload_labels, from 0;
#                         "none" for just the memory line); the table shows n/a for the rest
#   PG_BINDIR=/usr/lib/postgresql/15/bin   where initdb and pg_ctl live
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SCALE=${SCALE:-10}
POOL_SIZE=${POOL_SIZE:-20}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
BENCH_TARGETS=${BENCH_TARGETS:-pooler pgbouncer direct}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo_root/target}
pooler_bin=${BENCH_POOLER_BIN:-$target_dir/release/pooler}

# shellcheck disable=SC2034 # read by contrib/lib.sh
script_name=bench
# shellcheck source=contrib/lib.sh
. "$repo_root/contrib/lib.sh"

# One user and password for every target, md5 everywhere: the poolers challenge clients
# with md5 and PostgreSQL stores md5 (password_encryption below), so direct runs pay the
# same authentication cost as pooled ones in the -C workload.
bench_user=bench
bench_password=bench-secret
bench_db=bench

# Workloads: a label and the pgbench flags that make it.
workload_labels=(
    "-S -M simple   -c 16"
    "-S -M simple   -c 64"
    "-S -M extended -c 16"
    "-S -M extended -c 64"
    "-S -C          -c 16"
    "-S -C -c 16 auth_query"
    "-S -M simple   -c 64 guarded"
    "-S -M extended -c 64 guarded"
    "-S -C          -c 16 guarded"
    "-S -M prepared -c 64"
    "-S -M simple   -c 1"
    "-S -M simple -c 64 workers=1"
    "-S -M simple -c 64 unix-pg"
)
workload_flags=(
    "-S -M simple -c 16"
    "-S -M simple -c 64"
    "-S -M extended -c 16"
    "-S -M extended -c 64"
    "-S -C -M simple -c 16"
    "-S -C -M simple -c 16"
    "-S -M simple -c 64"
    "-S -M extended -c 64"
    "-S -C -M simple -c 16"
    "-S -M prepared -c 64"
    "-S -M simple -c 1"
    "-S -M simple -c 64"
    "-S -M simple -c 64"
)
# The last workload logs in users that only PostgreSQL knows (auth_query, cached
# after the first login, server_user pool): the pooler alone, beside the static-user
# -C row above. PgBouncer's auth_query asks PostgreSQL on every login and direct has
# no such thing, so their cells read n/a.
# The "guarded" rows run against a second pooler with every guardrail configured
# (limits high enough never to act): their cost beside the unguarded rows above.
# "prepared" runs everywhere but in PgBouncer 1.18, which cannot keep prepared statements
# in transaction mode. "workers1" is a third pooler with workers = 1, for the workers = 2
# vs 1 line under the table. The -c 1 row gives the latency line.
# "unix-pg": both poolers reach PostgreSQL over its Unix socket instead of loopback
# TCP (clients still come over TCP), as when the pooler runs on the database host; direct
# pgbench has no server side to change, so its cell reads n/a.
workload_dbs=(bench bench bench bench bench bench_aq guarded guarded guarded prepared bench workers1 unix)
# The workload whose runs the CPU line reports.
cpu_workload=1
aq_user=bench_aq_user

say() { printf '%s\n' "$*"; }

# Sets $port to a free TCP port on 127.0.0.1. Below the kernel's ephemeral range
# (32768+ here), where a client socket of an earlier run could still hold a port, and
# not in a $(subshell), so that taken_ports remembers what this run already handed out.
taken_ports=" "
pick_port() {
    local p tries
    for tries in $(seq 1 200); do
        p=$((10000 + RANDOM % 22000))
        case "$taken_ports" in *" $p "*) continue ;; esac
        if ! port_in_use "$p"; then
            taken_ports="$taken_ports$p "
            port=$p
            return 0
        fi
    done
    die "no free TCP port found after $tries tries"
}

want_target() { case " $BENCH_TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }

drop_target() {
    local t out=""
    for t in $BENCH_TARGETS; do
        [ "$t" = "$1" ] || out="$out $t"
    done
    BENCH_TARGETS=${out# }
}

for t in $BENCH_TARGETS; do
    case "$t" in pooler | pgbouncer | direct) ;; *) die "unknown target '$t' in BENCH_TARGETS" ;; esac
done
[ -n "$BENCH_TARGETS" ] || die "BENCH_TARGETS is empty"

for tool in initdb pg_ctl psql pgbench; do
    command -v "$tool" >/dev/null || die "$tool not found (install postgresql-15 and postgresql-client-15, or set PG_BINDIR)"
done
if is_root; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run PostgreSQL and PgBouncer"
fi

# The memory line holds IDLE_CLIENTS connections open at once; the poolers and the
# client holding them inherit this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$IDLE_CLIENTS" -gt 0 ] && [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CLIENTS + 500)) ]; then
    say "bench: open file limit $(ulimit -n) is too low for IDLE_CLIENTS=$IDLE_CLIENTS; skipping the memory line"
    IDLE_CLIENTS=0
fi

# ---------------------------------------------------------------- PgBouncer
pgbouncer_bin=""
pgbouncer_version="not available"
if [ -n "${BENCH_SKIP_PGBOUNCER:-}" ]; then
    say "pgbouncer: not available (BENCH_SKIP_PGBOUNCER is set)"
    drop_target pgbouncer
elif want_target pgbouncer; then
    pgbouncer_bin=$(command -v pgbouncer || true)
    [ -n "$pgbouncer_bin" ] || [ ! -x /usr/sbin/pgbouncer ] || pgbouncer_bin=/usr/sbin/pgbouncer
    if [ -z "$pgbouncer_bin" ] && is_root && command -v apt-get >/dev/null; then
        say "installing pgbouncer from Debian's packages ..."
        if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; } >/tmp/bench-apt.$$.log 2>&1; then
            pgbouncer_bin=/usr/sbin/pgbouncer
            # The package's own service listens on 6432, where `make demo` puts the pooler;
            # we run our own pgbouncer process below, so keep the system one off.
            if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
                systemctl disable --now pgbouncer >/dev/null 2>&1 || true
            fi
        else
            tail -n 5 /tmp/bench-apt.$$.log >&2 || true
        fi
        rm -f /tmp/bench-apt.$$.log
    fi
    if [ -n "$pgbouncer_bin" ]; then
        pgbouncer_version=$("$pgbouncer_bin" --version 2>&1 | head -n 1)
    else
        say "pgbouncer: not available (not installed, and it could not be installed); measuring without it"
        drop_target pgbouncer
    fi
fi

# ---------------------------------------------------------------- pooler binary
pooler_version="not measured"
if want_target pooler; then
    if [ -z "${BENCH_POOLER_BIN:-}" ]; then
        say "building the pooler (cargo build --release) ..."
        (cd "$repo_root" && cargo build --release --quiet) || die "cargo build --release failed"
    fi
    [ -x "$pooler_bin" ] || die "pooler binary not found at $pooler_bin"
    pooler_version=$("$pooler_bin" --version 2>&1 | head -n 1) || pooler_version="unknown ($pooler_bin --version failed)"
fi

# ---------------------------------------------------------------- temp dir and cleanup
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pooler-bench.XXXXXX")
is_root && chown postgres: "$tmp"
pooler_pid=""
guarded_pid=""
workers1_pid=""
pg_started=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in $pooler_pid $guarded_pid $workers1_pid; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -s "$tmp/pgbouncer.pid" ]; then
        kill -TERM "$(cat "$tmp/pgbouncer.pid")" 2>/dev/null || true
    fi
    if [ -n "$pg_started" ]; then
        as_pg pg_ctl -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "${BENCH_KEEP:-}" ]; then
        say "logs kept in $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- PostgreSQL
pick_port
pg_port=$port
say "starting PostgreSQL on 127.0.0.1:$pg_port ..."
start_throwaway_pg "$tmp" "$pg_port" md5 "$tmp/sock" <<EOF
# direct runs open 64 connections, each pool 20 (the pooler has 5, PgBouncer 2), plus
# psql and headroom
max_connections = 300
shared_buffers = 256MB
password_encryption = md5
# a benchmark of the relay, not of the disk
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
pg_started=1

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h "$tmp/sock" -p "$pg_port" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE ROLE $bench_user LOGIN PASSWORD '$bench_password'" \
    -c "CREATE ROLE $aq_user LOGIN PASSWORD '$bench_password'" \
    -c "CREATE ROLE pooler_auth SUPERUSER LOGIN PASSWORD 'auth-secret'" \
    -c "CREATE DATABASE $bench_db OWNER $bench_user"
export PGPASSWORD=$bench_password
say "pgbench -i -s $SCALE ..."
pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$pg_port" -U "$bench_user" "$bench_db" >"$tmp/pgbench-init.log" 2>&1 ||
    { tail -n 20 "$tmp/pgbench-init.log" >&2; die "pgbench -i failed"; }
pg_version=$(psql_admin -d postgres -At -c "SHOW server_version")

wait_ready() { # name port pid-or-empty log
    local name=$1 port=$2 pid=$3 log=$4 deadline=$((SECONDS + 20))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if psql -X -q -At -h 127.0.0.1 -p "$port" -U "$bench_user" -d "$bench_db" -c "SELECT 1" >/dev/null 2>&1; then
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            local status=0
            wait "$pid" || status=$?
            printf '\nbench: %s exited with status %s before answering on 127.0.0.1:%s\n' "$name" "$status" "$port" >&2
            break
        fi
        sleep 0.2
    done
    say "bench: $name did not start or does not answer on 127.0.0.1:$port; the end of its log:" >&2
    if [ -s "$log" ]; then tail -n 30 "$log" | sed 's/^/  /' >&2; else say "  (empty)" >&2; fi
    psql -X -At -h 127.0.0.1 -p "$port" -U "$bench_user" -d "$bench_db" -c "SELECT 1" 2>&1 | sed 's/^/  psql: /' >&2 || true
    die "$name failed to start"
}

# ---------------------------------------------------------------- PgBouncer process
pgbouncer_port=""
if want_target pgbouncer; then
    pick_port
    pgbouncer_port=$port
    printf '"%s" "%s"\n' "$bench_user" "$bench_password" >"$tmp/userlist.txt"
    cat >"$tmp/pgbouncer.ini" <<EOF
[databases]
$bench_db = host=127.0.0.1 port=$pg_port dbname=$bench_db
bench_unix = host=$tmp/sock port=$pg_port dbname=$bench_db

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgbouncer_port
unix_socket_dir =
auth_type = md5
auth_file = $tmp/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $((IDLE_CLIENTS + 1000))
logfile = $tmp/pgbouncer.log
pidfile = $tmp/pgbouncer.pid
log_connections = 0
log_disconnections = 0
EOF
    chmod 644 "$tmp/userlist.txt" "$tmp/pgbouncer.ini"
    say "starting PgBouncer on 127.0.0.1:$pgbouncer_port ..."
    # runuser's PAM session resets the open file limit; give PgBouncer ours back.
    # shellcheck disable=SC2016 # expanded by the inner sh, from its arguments
    as_pg sh -c 'ulimit -n "$1" 2>/dev/null; shift; exec "$@"' sh "$(ulimit -n)" \
        "$pgbouncer_bin" -d -q "$tmp/pgbouncer.ini" >"$tmp/pgbouncer.out" 2>&1 ||
        { cat "$tmp/pgbouncer.out" "$tmp/pgbouncer.log" >&2 2>/dev/null || true; die "pgbouncer failed to start"; }
    wait_ready pgbouncer "$pgbouncer_port" "" "$tmp/pgbouncer.log"
fi

# ---------------------------------------------------------------- pooler process
# Starts another pooler NAME from pooler.conf with the [pooler] lines EXTRA added, on a
# port of its own; sets $port and $variant_pid.
start_variant() { # name extra-lines
    pick_port
    awk -v port="$port" -v extra="$2" '/^listen_port = / { print "listen_port = " port; next }
        { print } /^log_level = / { print extra }' "$tmp/pooler.conf" >"$tmp/$1.conf"
    say "starting the $1 pooler on 127.0.0.1:$port ..."
    "$pooler_bin" -c "$tmp/$1.conf" >"$tmp/$1.log" 2>&1 &
    variant_pid=$!
    wait_ready pooler "$port" "$variant_pid" "$tmp/$1.log"
}

pooler_port=""
if want_target pooler; then
    pick_port
    pooler_port=$port
    cat >"$tmp/pooler.conf" <<EOF
[pooler]
listen_addr = "127.0.0.1"
listen_port = $pooler_port
unix_socket_dir = ""
auth_type = "md5"
pool_mode = "transaction"
default_pool_size = $POOL_SIZE
max_client_conn = $((IDLE_CLIENTS + 1000))
log_level = "warn"

[databases.$bench_db]
host = "127.0.0.1"
port = $pg_port
pool_size = $POOL_SIZE

[databases.bench_unix]
host = "$tmp/sock"
port = $pg_port
dbname = "$bench_db"
pool_size = $POOL_SIZE

[databases.bench_aq]
host = "127.0.0.1"
port = $pg_port
dbname = "$bench_db"
pool_size = $POOL_SIZE

[databases.bench_aq.auth_query]
user = "pooler_auth"
password = "auth-secret"
server_user = "$bench_user"
server_password = "$bench_password"

[users.$bench_user]
password = "$bench_password"
EOF
    say "starting the pooler on 127.0.0.1:$pooler_port ..."
    "$pooler_bin" -c "$tmp/pooler.conf" >"$tmp/pooler.log" 2>&1 &
    pooler_pid=$!
    wait_ready pooler "$pooler_port" "$pooler_pid" "$tmp/pooler.log"

    # A second pooler with every guardrail configured (limits high enough never to act).
    start_variant guarded 'query_timeout = "30s"
max_result_rows = 100000
max_result_bytes = 104857600
deny_statements = ["ALTER SYSTEM", "DROP DATABASE", "COPY ... PROGRAM", "LOAD"]
read_only = true
max_client_conn_per_addr = 1000
connect_rate_per_addr = 1000000
connect_burst_per_addr = 1000000
trusted_addrs = ["10.255.255.0/24"]'
    guarded_port=$port guarded_pid=$variant_pid
    start_variant workers1 'workers = 1'
    workers1_port=$port workers1_pid=$variant_pid
fi

# ---------------------------------------------------------------- the runs
pid_of() {
    case "$1" in
        pooler) echo "$pooler_pid" ;;
        pgbouncer) cat "$tmp/pgbouncer.pid" 2>/dev/null || true ;;
        direct) echo "" ;;
    esac
}

# "utime+stime stime" of a process in clock ticks (stime: the kernel's share, mostly the
# system calls); "0 0" for none (direct: PostgreSQL's many processes are not one pid).
cpu_ticks() {
    if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
        # The command name in field 2 may hold spaces: count from after its ')'.
        sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13, $13 }'
    else
        echo 0 0
    fi
}

# CPU of PostgreSQL's processes in clock ticks: the postmaster's own and that of its
# children already reaped (a -C run's direct backends), plus every live child's.
pg_cpu_ticks() {
    local pm
    pm=$(head -n 1 "$tmp/data/postmaster.pid" 2>/dev/null) || pm=""
    [ -n "$pm" ] || { echo 0; return; }
    # Processes may end between the glob and the read (cat then fails, which pipefail
    # would make fatal); drop the command name (it may hold spaces) so that the fields
    # count from the pid: ppid $3, utime $13 ...
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | sed 's/^\([0-9]*\) (.*) /\1 /' |
        awk -v pm="$pm" '$1 == pm { s += $13 + $14 + $15 + $16 } $3 == pm { s += $13 + $14 } END { print s + 0 }'
}
# CPU of this shell's reaped children (pgbench, run in the foreground) in clock ticks.
children_cpu_ticks() { sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'; }
# The machine's busy and idle clock ticks over all cores (idle counts iowait and the
# time the hypervisor stole, which no process here could use either).
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 + $9; exit }' /proc/stat; }

port_of() {
    case "$1" in
        pooler) echo "$pooler_port" ;;
        pgbouncer) echo "$pgbouncer_port" ;;
        direct) echo "$pg_port" ;;
    esac
}

mkdir -p "$tmp/runs"
: >"$tmp/results"   # lines: workload-index target tps failed exit-status latency-ms cpu-ticks transactions round
#                         postgres-ticks pgbench-ticks machine-busy-ticks machine-idle-ticks kernel-ticks
want_workload() { [ -z "${BENCH_WORKLOADS:-}" ] || case " $BENCH_WORKLOADS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for round in $(seq 1 "$ROUNDS"); do
    for i in "${!workload_flags[@]}"; do
        want_workload "$i" || continue
        for target in $BENCH_TARGETS; do
            db=${workload_dbs[$i]} user=$bench_user port=$(port_of "$target") pid=$(pid_of "$target")
            case "$db" in
                "$bench_db") ;;
                prepared)
                    [ "$target" != pgbouncer ] || continue
                    db=$bench_db
                    ;;
                guarded)
                    [ "$target" = pooler ] || continue
                    db=$bench_db port=$guarded_port pid=$guarded_pid
                    ;;
                workers1)
                    [ "$target" = pooler ] || continue
                    db=$bench_db port=$workers1_port pid=$workers1_pid
                    ;;
                unix)
                    [ "$target" != direct ] || continue
                    db=bench_unix
                    ;;
                *)
                    [ "$target" = pooler ] || continue
                    user=$aq_user
                    ;;
            esac
            # The readings before pgbench come last and those after it first, so the
            # reaped-children figure holds pgbench and not the readers themselves.
            read -r ticks0 kernel0 < <(cpu_ticks "$pid")
            pg0=$(pg_cpu_ticks)
            read -r busy0 idle0 < <(machine_ticks)
            bench0=$(children_cpu_ticks)
            log="$tmp/runs/r$round-w$i-$target.log"
            rc=0
            # shellcheck disable=SC2086 # the flags are words on purpose
            pgbench -n -j 2 -T "$DURATION" ${workload_flags[$i]} \
                -h 127.0.0.1 -p "$port" -U "$user" "$db" >"$log" 2>&1 || rc=$?
            bench_ticks=$(( $(children_cpu_ticks) - bench0 ))
            read -r busy1 idle1 < <(machine_ticks)
            read -r ticks1 kernel1 < <(cpu_ticks "$pid")
            ticks=$((ticks1 - ticks0)) kernel=$((kernel1 - kernel0))
            pg_ticks=$(( $(pg_cpu_ticks) - pg0 ))
            # PG 15 prints one tps line: "tps = N (without initial connection time)", or with
            # -C "tps = N (including reconnection times)", which counts the connection set-up
            # that -C is meant to measure. Either way it is the one line starting "tps = ".
            tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$log" | tail -n 1)
            failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
            latency=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$log" | tail -n 1)
            xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
            tps=${tps:-0}
            failed=${failed:-0}
            printf 'round %s/%s  %-28s %-10s %8.0f tps' "$round" "$ROUNDS" "${workload_labels[$i]}" "$target" "$tps"
            if [ "$rc" != 0 ] || [ "$failed" != 0 ]; then
                printf '  (pgbench exit %s, %s failed transactions)\n' "$rc" "$failed"
                grep -E 'error|abort|FATAL' "$log" | head -n 5 | sed 's/^/    /' || true
            else
                printf '\n'
            fi
            echo "$i $target $tps $failed $rc ${latency:-0} $ticks ${xacts:-0} $round $pg_ticks $bench_ticks $((busy1 - busy0)) $((idle1 - idle0)) $kernel" >>"$tmp/results"
            if [ "$target" = pooler ] && ! kill -0 "$pooler_pid" 2>/dev/null; then
                say "bench: the pooler exited during this run; the end of its log:" >&2
                tail -n 30 "$tmp/pooler.log" | sed 's/^/  /' >&2
                pooler_pid=""
                die "pooler died"
            fi
        done
    done
done

# ---------------------------------------------------------------- idle memory
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
idle_memory() { # target pid port -> "baseline-kB with-clients-kB logged-in"
    local fifo="$tmp/idle.fifo" out="$tmp/idle-$1.out" before after n
    before=$(rss_kb "$2")
    rm -f "$fifo"
    mkfifo "$fifo"
    python3 "$repo_root/contrib/bench/idle.py" 127.0.0.1 "$3" "$bench_user" "$bench_password" "$bench_db" "$IDLE_CLIENTS" <"$fifo" >"$out" 2>"$tmp/idle-$1.err" &
    local holder=$!
    exec 3>"$fifo"
    for _ in $(seq 1 600); do
        grep -q '^ready' "$out" 2>/dev/null && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.2
    done
    sleep 1
    after=$(rss_kb "$2")
    n=$(sed -n 's/^ready \([0-9]*\)/\1/p' "$out")
    exec 3>&-
    wait "$holder" 2>/dev/null || true
    echo "${before:-0} ${after:-0} ${n:-0}"
}
idle_pooler="" idle_pgbouncer=""
if [ "$IDLE_CLIENTS" -gt 0 ]; then
    say "holding $IDLE_CLIENTS idle clients on each pooler for the memory line ..."
    want_target pooler && idle_pooler=$(idle_memory pooler "$pooler_pid" "$pooler_port")
    want_target pgbouncer && idle_pgbouncer=$(idle_memory pgbouncer "$(pid_of pgbouncer)" "$pgbouncer_port")
fi

# ---------------------------------------------------------------- the table
# A run that pgbench ended with an error does not count towards the median: its TPS
# covers only part of the run.
median() { # workload-index target
    awk -v w="$1" -v t="$2" '$1 == w && $2 == t && $5 == 0 { print $3 }' "$tmp/results" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) printf "%.0f\n", v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
sum_failed() { awk -v w="$1" -v t="$2" '$1 == w && $2 == t { s += $4 } END { print s + 0 }' "$tmp/results"; }
errored_runs() { awk -v w="$1" -v t="$2" '$1 == w && $2 == t && $5 != 0 { n++ } END { print n + 0 }' "$tmp/results"; }
ratio() { if [ -n "$1" ] && [ -n "$2" ] && [ "$2" != 0 ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo n/a; fi; }
# The ratio columns are the median of each round's ratio, not the ratio of the medians:
# this machine's speed drifts by 10-20% over a run, and the runs of one round are
# neighbours in time, so a round's ratio compares like with like.
round_ratio() { # workload-index-a target-a workload-index-b target-b
    awk -v wa="$1" -v a="$2" -v wb="$3" -v b="$4" '$1 == wa && $5 == 0 && $2 == a { x[$9] = $3 } $1 == wb && $5 == 0 && $2 == b { y[$9] = $3 }
        END { for (r in x) if ((r in y) && y[r] > 0) print x[r] / y[r] }' "$tmp/results" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) printf "%.2f\n", v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# Latency one target adds over direct in ms: the median of each round's difference.
round_added() { # workload-index target
    awk -v w="$1" -v a="$2" '$1 == w && $5 == 0 && $2 == a { x[$9] = $6 } $1 == w && $5 == 0 && $2 == "direct" { y[$9] = $6 }
        END { for (r in x) if (r in y) print x[r] - y[r] }' "$tmp/results" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) printf "%+.3f\n", v[(NR + 1) / 2]; else printf "%+.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
cell() { if [ -n "$1" ]; then echo "$1"; else echo n/a; fi; }

say ""
say "pooler:     $pooler_version"
if want_target pgbouncer; then say "pgbouncer:  $pgbouncer_version"; else say "pgbouncer: not available"; fi
say "postgresql: $pg_version (fsync off), pgbench -i -s $SCALE, pool size $POOL_SIZE, transaction mode, md5 auth"
say "runs:       $ROUNDS rounds x ${DURATION}s, pgbench -j 2, $(nproc) cores; median TPS per target"
say ""
printf '| %-28s | %12s | %12s | %12s | %16s | %13s |\n' workload "pooler TPS" "pgbouncer TPS" "direct TPS" pooler/pgbouncer pooler/direct
printf '|%s|%s|%s|%s|%s|%s|\n' "------------------------------" "--------------" "---------------" "--------------" "------------------" "---------------"
failure_notes=""
for i in "${!workload_flags[@]}"; do
    mp=""; mb=""; md=""
    want_target pooler && mp=$(median "$i" pooler)
    want_target pgbouncer && mb=$(median "$i" pgbouncer)
    want_target direct && md=$(median "$i" direct)
    printf '| %-28s | %12s | %13s | %12s | %16s | %13s |\n' "${workload_labels[$i]}" \
        "$(cell "$mp")" "$(cell "$mb")" "$(cell "$md")" "$(round_ratio "$i" pooler "$i" pgbouncer)" "$(round_ratio "$i" pooler "$i" direct)"
    for target in $BENCH_TARGETS; do
        f=$(sum_failed "$i" "$target")
        e=$(errored_runs "$i" "$target")
        if [ "$f" != 0 ] || [ "$e" != 0 ]; then
            failure_notes="$failure_notes  ${workload_labels[$i]} / $target: $f failed transactions, $e runs ended with an error\n"
        fi
    done
done

# Latency at one client (median of the runs' averages), CPU per 100,000 transactions of
# the CPU workload's runs, and workers = 2 vs 1.
median_of() { # workload-index target column
    awk -v w="$1" -v t="$2" -v c="$3" '$1 == w && $2 == t && $5 == 0 { print $c }' "$tmp/results" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
cpu_per_100k() { # workload-index target -> seconds
    awk -v w="$1" -v t="$2" -v hz="$(getconf CLK_TCK)" '$1 == w && $2 == t && $5 == 0 { ticks += $7; n += $8 }
        END { if (n > 0 && ticks > 0) printf "%.2f", ticks / hz / n * 100000 }' "$tmp/results"
}
# A target's CPU per transaction over a workload's runs in µs, split: "user kernel".
cpu_split() { # workload-index target
    awk -v w="$1" -v t="$2" -v hz="$(getconf CLK_TCK)" '$1 == w && $2 == t && $5 == 0 && NF >= 14 { all += $7; k += $14; n += $8 }
        END { if (n > 0 && all > 0) { f = 1e6 / hz / n; printf "%.1f %.1f\n", (all - k) * f, k * f } }' "$tmp/results"
}
# Both poolers' user and kernel time per transaction, and what target 6 asks beside the
# kernel's share alone (the system calls that both poolers make).
say_cpu_split() { # workload-index target-ratio
    local sp sb
    sp=$(cpu_split "$1" pooler)
    sb=$(cpu_split "$1" pgbouncer)
    [ -n "$sp" ] && [ -n "$sb" ] || return 0
    awk -v label="${workload_labels[$1]}" -v want="$2" -v sp="$sp" -v sb="$sb" 'BEGIN {
        split(sp, p, " "); split(sb, b, " ")
        printf "CPU per transaction (%s): pooler %.1f µs = user %.1f + kernel %.1f; PgBouncer %.1f µs = user %.1f + kernel %.1f\n",
            label, p[1] + p[2], p[1], p[2], b[1] + b[2], b[1], b[2]
        printf "  %.2f x PgBouncer'"'"'s CPU is %.1f µs per transaction; the pooler'"'"'s kernel time alone was %.1f\n",
            want, want * (b[1] + b[2]), p[2]
    }'
}
index_of() { # label
    local i
    for i in "${!workload_labels[@]}"; do
        [ "${workload_labels[$i]}" != "$1" ] || { echo "$i"; return; }
    done
}
latency_index=$(index_of "-S -M simple   -c 1")
workers1_index=$(index_of "-S -M simple -c 64 workers=1")
connect_index=$(index_of "-S -C          -c 16")
prepared64=$(index_of "-S -M prepared -c 64")
# Where the machine's time went per transaction over a workload's runs against one
# target, in µs: "pooler postgres pgbench rest idle total", total being cores x wall
# clock. The pooler's CPU is what it costs itself; PostgreSQL's and pgbench's set the
# most a pooler could gain by costing less.
time_split() { # workload-index target
    awk -v w="$1" -v t="$2" -v hz="$(getconf CLK_TCK)" '$1 == w && $2 == t && $5 == 0 && NF >= 13 {
            p += $7; g += $10; b += $11; busy += $12; idle += $13; n += $8 }
        END { if (n > 0) { f = 1e6 / hz / n
            printf "%.0f %.0f %.0f %.0f %.0f %.0f\n", p * f, g * f, b * f, (busy - p - g - b) * f, idle * f, (busy + idle) * f } }' "$tmp/results"
}
# The split of the pooler's runs beside another target's (PgBouncer's, or direct's for
# the target set against PostgreSQL), what a pooler that cost nothing could reach, and
# what the issue's target ratio would ask of the pooler's own CPU, beside the kernel's
# share of what it spent.
say_time_split() { # workload-index other-target target-ratio
    local sp so kp name
    sp=$(time_split "$1" pooler)
    so=$(time_split "$1" "$2")
    kp=$(cpu_split "$1" pooler)
    [ -n "$sp" ] && [ -n "$so" ] || return 0
    case "$2" in pgbouncer) name=PgBouncer ;; *) name=$2 ;; esac
    awk -v label="${workload_labels[$1]}" -v name="$name" -v want="$3" -v cores="$(nproc)" -v sp="$sp" -v so="$so" -v kp="${kp:-0 0}" 'BEGIN {
        split(sp, p, " "); split(so, o, " "); split(kp, k, " ")
        printf "machine time per transaction (%s, %d cores x wall clock, µs): pooler run %d = pooler %d + PostgreSQL %d + pgbench %d + rest %d + idle %d; %s run %d = ",
            label, cores, p[6], p[1], p[2], p[3], p[4], p[5], name, o[6]
        if (name != "direct") printf "%s %d + ", name, o[1]
        printf "PostgreSQL %d + pgbench %d + rest %d + idle %d\n", o[2], o[3], o[4], o[5]
        others = p[2] + p[3] + p[4]
        if (others > 0)
            printf "  a pooler costing no CPU and leaving no core idle would reach at most %.2f x %s'"'"'s TPS here; %.2f x needs the pooler at <= %d µs per transaction (it spent %d, %d of it in the kernel)\n",
                o[6] / others, name, want, o[6] / want - others, p[1], k[2]
    }'
}
say ""
ld=$(median_of "$latency_index" direct 6)
lp=$(round_added "$latency_index" pooler)
lb=$(round_added "$latency_index" pgbouncer)
say "latency at 1 client (${workload_labels[$latency_index]}): direct $(cell "$ld") ms; added by the pooler $(cell "$lp") ms, by PgBouncer $(cell "$lb") ms (medians of each round's difference)"
cp=$(cpu_per_100k "$cpu_workload" pooler)
cb=$(cpu_per_100k "$cpu_workload" pgbouncer)
say "CPU per 100,000 transactions (${workload_labels[$cpu_workload]}, utime+stime): pooler $(cell "$cp") s, PgBouncer $(cell "$cb") s, pooler/PgBouncer $(ratio "$cp" "$cb")"
say_cpu_split "$cpu_workload" 0.80
w2=$(median "$cpu_workload" pooler)
w1=$(median "$workers1_index" pooler)
say_time_split "$cpu_workload" pgbouncer 1.15
[ -z "$connect_index" ] || say_time_split "$connect_index" pgbouncer 1.2
[ -z "$prepared64" ] || say_time_split "$prepared64" direct 0.9
say "workers (${workload_labels[$cpu_workload]}): 2 workers $(cell "$w2") TPS, 1 worker $(cell "$w1") TPS, 2/1 $(round_ratio "$cpu_workload" pooler "$workers1_index" pooler)"
say "-M prepared: PgBouncer 1.18 cannot keep prepared statements in transaction mode, so its cell is n/a"
idle_line() { # name "before after n"
    # shellcheck disable=SC2086 # the three numbers are words on purpose
    set -- "$1" $2
    if [ -n "${4:-}" ] && [ "$4" -gt 0 ]; then
        awk -v name="$1" -v b="$2" -v a="$3" -v n="$4" 'BEGIN { printf "%s %d kB (%.2f kB per client above its %d kB idle baseline, %d clients)", name, a, (a - b) / n, b, n }'
    else
        echo "$1 n/a"
    fi
}
if [ "$IDLE_CLIENTS" -gt 0 ]; then
    say "RSS with $IDLE_CLIENTS idle logged-in clients: $(idle_line pooler "$idle_pooler"); $(idle_line PgBouncer "$idle_pgbouncer")"
fi

# ---------------------------------------------------------------- the targets
# Issue 10's targets beside the figures above. Information only: the exit status says
# whether the bench ran, not whether a target was met.
verdict() { # value op threshold
    if [ -z "$1" ] || [ "$1" = n/a ] || [ -z "$3" ] || [ "$3" = n/a ]; then
        echo "n/a"
    else
        awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0); print ok ? "met" : "not met" }'
    fi
}
target() { # label value op threshold
    printf '  %-58s %8s %s %-8s %s\n' "$1" "$(cell "$2")" "$3" "$4" "$(verdict "$2" "$3" "$4")"
}
rss_after() { echo "$1" | awk '{ print $2 }'; } # "before after n" -> after
extended64=$(index_of "-S -M extended -c 64")
say ""
say "issue 10's targets (figures from above):"
target "1. -S -M simple -c 64: pooler/PgBouncer" "$(round_ratio "$cpu_workload" pooler "$cpu_workload" pgbouncer)" ">=" 1.15
target "2. -S -M extended -c 64: pooler/PgBouncer" "$(round_ratio "$extended64" pooler "$extended64" pgbouncer)" ">=" 1.15
target "3. -S -M prepared -c 64: pooler/direct" "$(round_ratio "$prepared64" pooler "$prepared64" direct)" ">=" 0.90
target "4. -S -C -c 16: pooler/PgBouncer" "$(round_ratio "$connect_index" pooler "$connect_index" pgbouncer)" ">=" 1.20
target "4. -S -C -c 16: pooler/direct" "$(round_ratio "$connect_index" pooler "$connect_index" direct)" ">=" 3.00
target "5. latency added at 1 client, ms: pooler vs PgBouncer" "$lp" "<=" "$lb"
target "6. CPU per transaction: pooler/PgBouncer" "$(ratio "$cp" "$cb")" "<=" 0.80
target "7. RSS with $IDLE_CLIENTS idle clients, kB: pooler vs PgBouncer" "$(rss_after "$idle_pooler")" "<=" "$(rss_after "$idle_pgbouncer")"
say "  8. workers 2/1 is reported above"
say ""
if [ -n "$failure_notes" ]; then
    say "failures:"
    printf '%b' "$failure_notes"
    [ -n "${BENCH_KEEP:-}" ] || say "(rerun with BENCH_KEEP=1 to keep every run's pgbench log)"
    exit 1
fi
say "failed transactions: 0"
