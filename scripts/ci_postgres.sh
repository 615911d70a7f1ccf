#!/usr/bin/env bash
# A throwaway PostgreSQL server for the outcome-store tests (tests/test_outcomes*.py).
#
#   eval "$(bash scripts/ci_postgres.sh)"      start it (installing PostgreSQL if missing) and export
#                                              ROUTER_ML_TEST_PG_URL; prints nothing else on stdout
#   bash scripts/ci_postgres.sh stop           stop it and delete its data
#
# The cluster lives in $ROUTER_ML_PG_DIR (default /tmp/router-ml-pg-$PORT), listens on 127.0.0.1 only, port
# $ROUTER_ML_PG_PORT (default 5433), trusts loopback connections, runs with fsync off (it is for tests only) and
# has a database router_ml_test. Running it again while the server is up just prints the URL; when nothing
# answers on the port, it makes a fresh cluster. The export line is also written to $DIR/env. As root the server
# runs as the `postgres` user (initdb refuses root).
set -euo pipefail

PORT="${ROUTER_ML_PG_PORT:-5433}"
DIR="${ROUTER_ML_PG_DIR:-/tmp/router-ml-pg-$PORT}"
DB=router_ml_test
URL="postgresql://postgres@127.0.0.1:$PORT/$DB"

log() { echo "ci_postgres: $*" >&2; }

find_bin() {  # the directory holding initdb and pg_ctl: PATH first, else the newest /usr/lib/postgresql/*/bin
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return
    fi
    local found
    found="$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    [[ -n "$found" && -x "$found/initdb" && -x "$found/pg_ctl" ]] && echo "$found"
}

BIN="$(find_bin || true)"
if [[ -z "$BIN" ]]; then
    if [[ "${1:-}" == stop ]]; then exit 0; fi
    [[ $EUID -eq 0 ]] || { log "PostgreSQL is not installed and installing it needs root"; exit 1; }
    log "installing PostgreSQL (apt-get)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    BIN="$(find_bin)" || { log "apt-get installed postgresql but no initdb/pg_ctl was found"; exit 1; }
fi

as_owner() {  # run a command as the cluster owner: postgres when we are root, else ourselves
    if [[ $EUID -eq 0 ]]; then
        if command -v runuser >/dev/null; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

pg_ctl_() { as_owner "$BIN/pg_ctl" -D "$DIR/data" "$@"; }

if [[ "${1:-}" == stop ]]; then
    if [[ -f "$DIR/data/postmaster.pid" ]]; then
        pg_ctl_ stop -m fast -w >&2 || log "pg_ctl stop failed; the server in $DIR may still be running"
    fi
    rm -rf "$DIR"
    exit 0
fi

ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; }

if ! ready; then  # no server: a fresh cluster (the data is throwaway, so a crashed one is simply replaced)
    if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    if [[ -f "$DIR/data/postmaster.pid" ]]; then
        pg_ctl_ stop -m immediate -w >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$DIR"; fi
    chmod 700 "$DIR"
    log "initdb in $DIR/data"
    as_owner "$BIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
    cat >"$DIR/data/pg_hba.conf" <<EOF
# Throwaway test server: loopback only, no passwords.
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
local all all trust
EOF
    log "starting PostgreSQL on 127.0.0.1:$PORT"
    pg_ctl_ start -w -t 60 -l "$DIR/server.log" -o "-c listen_addresses=127.0.0.1 -p $PORT \
        -c unix_socket_directories=$DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c max_connections=200" >&2 || { log "the server did not start; its log:"; cat "$DIR/server.log" >&2; exit 1; }
fi

exists="$("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB'")"
if [[ "$exists" != 1 ]]; then
    "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
fi
if [[ -d "$DIR" ]]; then echo "export ROUTER_ML_TEST_PG_URL=$URL" >"$DIR/env"; fi
echo "export ROUTER_ML_TEST_PG_URL=$URL"
