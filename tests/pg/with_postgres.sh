#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL 15, for the PostgreSQL instances of the record
# store tests (tests/cluster/record_store_test.cpp), which skip without one:
#   tests/pg/with_postgres.sh CMD [ARGS...]
# The server listens on 127.0.0.1 only, on a free port below 32768 (the kernel's ephemeral range
# is for outgoing connections' local ends) or on $VIADUCT_PG_PORT; its data and unix-socket
# directories lie in a fresh mktemp -d. Trust authentication, for this loopback-only test cluster
# only. It creates the database viaduct_test and runs CMD with
#   VIADUCT_TEST_POSTGRES_URI=postgresql://USER@127.0.0.1:PORT/viaduct_test
# The server is stopped and the directory removed however CMD ends. Exit status: CMD's, or 1 when
# the server could not start (loudly: a test stage must not silently skip PostgreSQL).
# PostgreSQL refuses to run as root: as root, the server tools run as the user postgres.
set -euo pipefail
[ $# -gt 0 ] || {
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
}
PG_BIN=${VIADUCT_PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$PG_BIN/initdb" ] || {
  echo "with_postgres: no PostgreSQL 15 at $PG_BIN (apt-get install postgresql)" >&2
  exit 1
}

DIR=$(mktemp -d /tmp/viaduct-pg.XXXXXX)
AS=()
PG_USER=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  AS=(runuser -u postgres --)
  PG_USER=postgres
  chown postgres: "$DIR"
fi
started=0
# shellcheck disable=SC2317  # run by the trap
cleanup() {
  if [ "$started" = 1 ]; then
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() {  # port: nothing listens on 127.0.0.1:port
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
PORT=${VIADUCT_PG_PORT:-}
if [ -z "$PORT" ]; then
  # From a place chosen by the process id, so that two runs side by side do not race for one.
  for i in $(seq 0 199); do
    candidate=$((25000 + ($$ * 7 + i * 13) % 7000))
    if port_free "$candidate"; then
      PORT=$candidate
      break
    fi
  done
  [ -n "$PORT" ] || {
    echo "with_postgres: no free port found" >&2
    exit 1
  }
fi

echo "with_postgres: PostgreSQL 15 on 127.0.0.1:$PORT in $DIR" >&2
"${AS[@]}" "$PG_BIN/initdb" -D "$DIR/data" --auth=trust --username="$PG_USER" -E UTF8 \
  --no-locale >"$DIR/initdb.log" 2>&1 || {
  cat "$DIR/initdb.log" >&2
  echo "with_postgres: initdb failed" >&2
  exit 1
}
started=1
# fsync off: a throwaway cluster; durability across a power loss is not what the tests measure.
if ! "${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off" start >/dev/null; then
  cat "$DIR/server.log" >&2 || true
  echo "with_postgres: the server did not start (its log above; pg_ctl waits 30 s at most)" >&2
  exit 1
fi
"${AS[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$PG_USER" viaduct_test || {
  echo "with_postgres: createdb failed" >&2
  exit 1
}
export VIADUCT_TEST_POSTGRES_URI="postgresql://$PG_USER@127.0.0.1:$PORT/viaduct_test"
set +e
"$@"
rc=$?
set -e
exit "$rc"
