#!/usr/bin/env bash
# Run the storage tests (kit.db, kit.registry, kit.ledger) against a throwaway PostgreSQL server.
#
#   bash scripts/postgres_test.sh [pytest arguments; default: the four test files below]
#
# Uses Debian's PostgreSQL server binaries (installs the `postgresql` package with apt-get when they
# are missing and we are root), creates a cluster in a temporary folder (initdb, trust
# authentication, a Unix socket in that folder, no TCP port), starts it with pg_ctl, runs
#   KIT_DB_URL=postgresql+psycopg://kit@/postgres?host=<socket dir> pytest tests/test_db.py tests/test_registry.py tests/test_ledger.py
#   tests/test_search.py (the last: a search whose trials share one study in the database)
# (each test gets its own schema), then stops the server and removes the folder, also on failure.
# As root the server runs as the `postgres` system user (PostgreSQL refuses to run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.venv/numba_cache}" PYTHONHASHSEED="${PYTHONHASHSEED:-0}"

find_bindir() {
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

BINDIR="$(find_bindir)"
if [ -z "$BINDIR" ] || [ ! -x "$BINDIR/initdb" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "postgres_test: installing Debian's postgresql package" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        BINDIR="$(find_bindir)"
    fi
fi
if [ -z "$BINDIR" ] || [ ! -x "$BINDIR/initdb" ]; then
    echo "postgres_test: no PostgreSQL server binaries (initdb, pg_ctl) found; install Debian's postgresql package" >&2
    exit 2
fi
"$PY" -c "import psycopg" 2>/dev/null || "$PY" -m pip install --quiet "psycopg[binary]==3.3.9"

TMP="$(mktemp -d /tmp/kit-pg.XXXXXX)"
AS=()
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$TMP"
    AS=(runuser -u postgres --)
fi
stop() {
    "${AS[@]}" "$BINDIR/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap stop EXIT

start=$(date +%s)
"${AS[@]}" "$BINDIR/initdb" -D "$TMP/data" -U kit --auth=trust -E UTF8 --no-locale >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log" >&2; exit 1; }
"${AS[@]}" "$BINDIR/pg_ctl" -D "$TMP/data" -l "$TMP/server.log" -w -t 60 \
    -o "-c listen_addresses='' -c unix_socket_directories=$TMP -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50" \
    start >/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
echo "postgres_test: server $("$BINDIR/postgres" --version) up in $(( $(date +%s) - start )) s, socket in $TMP" >&2

export KIT_DB_URL="postgresql+psycopg://kit@/postgres?host=$TMP"
status=0
if [ $# -eq 0 ]; then set -- tests/test_db.py tests/test_registry.py tests/test_ledger.py tests/test_search.py; fi
"$PY" -m pytest -q "$@" || status=$?
echo "postgres_test: finished in $(( $(date +%s) - start )) s (pytest exit $status)" >&2
exit $status
