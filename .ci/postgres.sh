# Starts a throwaway PostgreSQL on 127.0.0.1 and exports TEST_DATABASE_URL.
# Source it (`. .ci/postgres.sh`); it installs PostgreSQL with apt-get when the machine has none,
# and stops and removes the server when the sourcing shell exits.
# Fails (returns non-zero) when no PostgreSQL can be started.

start_throwaway_postgres() {
  local pgbin
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$pgbin" ]; then
    echo "installing PostgreSQL"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || return 1
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$pgbin" ] || return 1
  fi
  local port=${PGPORT_FOR_TESTS:-55432}
  PG_TEST_DATA=$(mktemp -d /tmp/privint-pg.XXXXXX)
  local run=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$PG_TEST_DATA"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$pgbin/initdb" -D "$PG_TEST_DATA" -U postgres -A trust -E UTF8 --no-sync >/dev/null || return 1
  "${run[@]}" "$pgbin/pg_ctl" -D "$PG_TEST_DATA" -l "$PG_TEST_DATA/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_TEST_DATA -c fsync=off -c max_connections=500" start >/dev/null || return 1
  PG_TEST_STOP="${run[*]} $pgbin/pg_ctl -D $PG_TEST_DATA -m immediate stop"
  trap 'eval "$PG_TEST_STOP" >/dev/null 2>&1; rm -rf "$PG_TEST_DATA"' EXIT
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL is running: TEST_DATABASE_URL=$TEST_DATABASE_URL"
}
