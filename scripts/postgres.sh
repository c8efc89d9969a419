#!/usr/bin/env bash
# A throw-away PostgreSQL server for the lifecycle store's tests and benchmarks.
#
#   source <(bash scripts/postgres.sh start)   # starts it (if needed) and exports
#                                              # DRIFTLINE_TEST_POSTGRES_URL
#   bash scripts/postgres.sh stop
#   bash scripts/postgres.sh url               # prints the export line of a running server
#
# The cluster lives in .postgres/ at the repository root (gitignored) — or, when run as root
# from a checkout the 'postgres' user cannot reach (e.g. under a mktemp -d directory), in
# ${TMPDIR:-/tmp}/driftline-postgres-<checksum of the checkout path> —, listens on 127.0.0.1
# only, on port ${PGPORT:-55432}. PostgreSQL is installed with apt-get when missing. When
# DRIFTLINE_TEST_POSTGRES_URL is already set, `start` starts nothing and repeats it.
# Only the export line goes to stdout; progress and errors go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${PGPORT:-55432}"
DB_USER="driftline"
DB_NAME="driftline_test"

say() { echo "postgres.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# Where the cluster lives. As root the server runs as user 'postgres', which must be able to
# reach that directory; a checkout it cannot traverse gets a directory under /tmp instead.
set_state() {
    STATE="${DRIFTLINE_POSTGRES_DIR:-$ROOT/.postgres}"
    if [[ -z "${DRIFTLINE_POSTGRES_DIR:-}" && "$(id -u)" == 0 ]] && id postgres >/dev/null 2>&1 &&
        ! runuser -u postgres -- test -x "$ROOT"; then
        STATE="${TMPDIR:-/tmp}/driftline-postgres-$(printf %s "$ROOT" | cksum | cut -d' ' -f1)"
    fi
    DATA="$STATE/data"
    SOCK="$STATE/sock"
    LOG="$STATE/server.log"
    PWFILE="$STATE/password"
}

pg_bin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$dir" && -x "$dir/pg_ctl" ]]; then
        echo "$dir"
    elif command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
    fi
}

install_postgres() {
    [[ -n "$(pg_bin)" ]] && return 0
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and we are not root; run: sudo apt-get install -y postgresql"
    say "installing PostgreSQL with apt-get (once)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq postgresql >&2 || die "apt-get install postgresql failed"
    [[ -n "$(pg_bin)" ]] || die "postgresql installed but pg_ctl not found under /usr/lib/postgresql"
}

# Run a server binary as the cluster's owner: PostgreSQL refuses to run as root.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

url() {
    echo "postgresql+psycopg://$DB_USER:$(cat "$PWFILE")@127.0.0.1:$PORT/$DB_NAME"
}

running() {
    [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

init_cluster() {
    mkdir -p "$STATE" "$SOCK"
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "user 'postgres' is missing; reinstall the postgresql package"
        chown postgres "$STATE" "$SOCK"
        runuser -u postgres -- test -w "$STATE" ||
            die "user 'postgres' cannot write $STATE (a parent directory is not traversable); set DRIFTLINE_POSTGRES_DIR to a directory it can use, e.g. /tmp/driftline-postgres"
    fi
    if [[ ! -s "$PWFILE" ]]; then
        (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$PWFILE")
        [[ "$(id -u)" == 0 ]] && chown postgres "$PWFILE"
    fi
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        say "creating cluster in $DATA"
        as_owner "$BIN/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$PWFILE" \
            --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-locale >&2 ||
            die "initdb failed"
    fi
}

start() {
    if [[ -n "${DRIFTLINE_TEST_POSTGRES_URL:-}" ]]; then
        say "DRIFTLINE_TEST_POSTGRES_URL is set; starting nothing"
        echo "export DRIFTLINE_TEST_POSTGRES_URL='$DRIFTLINE_TEST_POSTGRES_URL'"
        return 0
    fi
    install_postgres
    BIN="$(pg_bin)"
    set_state
    init_cluster
    if ! running; then
        say "starting PostgreSQL on 127.0.0.1:$PORT"
        as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c fsync=off -c synchronous_commit=off -c max_connections=100" \
            start >&2 || { tail -n 20 "$LOG" >&2 || true; die "pg_ctl start failed (is port $PORT taken? set PGPORT)"; }
    fi
    export PGPASSWORD
    PGPASSWORD="$(cat "$PWFILE")"
    local exists
    exists="$("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ||
        die "cannot connect to 127.0.0.1:$PORT as $DB_USER; is another server on that port? set PGPORT"
    if [[ "$exists" != "1" ]]; then
        "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" "$DB_NAME" || die "createdb failed"
    fi
    echo "export DRIFTLINE_TEST_POSTGRES_URL='$(url)'"
}

stop() {
    BIN="$(pg_bin)"
    [[ -n "$BIN" ]] || { say "PostgreSQL is not installed; nothing to stop"; return 0; }
    set_state
    if running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || die "pg_ctl stop failed"
    else
        say "not running"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url)
        BIN="$(pg_bin)"
        set_state
        [[ -n "$BIN" ]] && running || die "not running; use: source <(bash scripts/postgres.sh start)"
        echo "export DRIFTLINE_TEST_POSTGRES_URL='$(url)'"
        ;;
    *) die "usage: bash scripts/postgres.sh start|stop|url" ;;
esac
