#!/usr/bin/env bash
# Make sure Postgres and Redis answer for newsrec. When DATABASE_URL / REDIS_URL are set they are
# used as they are. Otherwise the local standard ports are tried; where a server is installed but not
# running, a private instance is started under var/ (trust auth, nothing shared with the system one).
# Usage: scripts/services.sh [start|stop]
set -euo pipefail
cd "$(dirname "$0")/.."
VAR="$PWD/var"
PG_PORT=${NEWSREC_PG_PORT:-5432}  # the knobs only exist to test this script beside running servers
REDIS_PORT=${NEWSREC_REDIS_PORT:-6379}

say() { echo "services: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

find_pg_bin() {
  local name=$1 found
  found=$(command -v "$name" 2>/dev/null || true)
  [ -n "$found" ] || found=$(ls /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1 || true)
  echo "$found"
}

# initdb and postgres refuse to run as root: run them as the postgres user when we are root.
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u postgres -- "$@")  # from /: it may not enter the checkout
  else
    "$@"
  fi
}

# Where the private cluster lives: var/postgres, unless we are root and the postgres user cannot
# enter the checkout (one inside a private 0700 directory); then a per-checkout folder in /var/tmp.
# Asked of the checkout, not of var/, so that start and stop agree whether var/ exists yet or not.
pg_dir() {
  local checkout=$PWD
  if [ "$(id -u)" = 0 ] && ! (cd / && runuser -u postgres -- test -x "$checkout") 2>/dev/null; then
    echo "/var/tmp/newsrec-postgres-$(echo "$PWD" | md5sum | cut -c1-8)"
  else
    echo "$VAR/postgres"
  fi
}

start_postgres() {
  if port_open $PG_PORT; then return; fi
  local initdb pg_ctl dir
  initdb=$(find_pg_bin initdb); pg_ctl=$(find_pg_bin pg_ctl)
  if [ -z "$initdb" ] || [ -z "$pg_ctl" ]; then
    say "PostgreSQL is not running on port $PG_PORT and not installed: apt-get install postgresql (or set DATABASE_URL)"
    exit 1
  fi
  [ "$(id -u)" = 0 ] && { id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres; }
  dir=$(pg_dir)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg_user "$initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
  fi
  as_pg_user "$pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
    -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
  say "started a private PostgreSQL on 127.0.0.1:$PG_PORT (data in ${dir#"$PWD/"})"
}

start_redis() {
  if port_open $REDIS_PORT; then return; fi
  if ! command -v redis-server >/dev/null; then
    say "Redis is not running on port $REDIS_PORT and not installed: apt-get install redis-server (or set REDIS_URL)"
    exit 1
  fi
  mkdir -p "$VAR/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save "" --appendonly no \
    --dir "$VAR/redis" --pidfile "$VAR/redis/redis.pid" --logfile "$VAR/redis/redis.log"
  for _ in $(seq 50); do port_open $REDIS_PORT && break; sleep 0.1; done
  say "started a private Redis on 127.0.0.1:$REDIS_PORT (var/redis)"
}

# The database named in DATABASE_URL (default: newsrec) must exist; create it through the server.
ensure_database() {
  .venv/bin/python - <<'PY'
import os, sys
import psycopg
from psycopg import sql
url = os.environ.get("DATABASE_URL", "postgres://postgres@localhost:5432/newsrec")
info = psycopg.conninfo.conninfo_to_dict(url.replace("postgres://", "postgresql://", 1))
name = info.get("dbname", "newsrec")
admin = psycopg.conninfo.make_conninfo(**{**info, "dbname": "postgres"})
try:
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"services: created database {name}", file=sys.stderr)
except psycopg.Error as error:
    sys.exit(f"services: cannot reach PostgreSQL at {url}: {error}".strip())
PY
}

stop() {
  local dir
  dir=$(pg_dir)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg_user "$(find_pg_bin pg_ctl)" -D "$dir/data" -m fast stop >/dev/null && say "stopped private PostgreSQL"
  fi
  if [ -f "$VAR/redis/redis.pid" ]; then
    kill "$(cat "$VAR/redis/redis.pid")" 2>/dev/null && say "stopped private Redis"
    rm -f "$VAR/redis/redis.pid"
  fi
}

case "${1:-start}" in
  start)
    [ -n "${DATABASE_URL:-}" ] || start_postgres
    [ -n "${REDIS_URL:-}" ] || start_redis
    ensure_database
    ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
