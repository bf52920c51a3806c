#!/usr/bin/env bash
# A private PostgreSQL cluster for the suite and the state bench (issue: state in PostgreSQL), run
# by hand (no systemd): Debian's server package installed where missing, a cluster of its own in
# $VIRTWIRE_PG_DIR (default /var/lib/virtwire-pg) owned by the postgres user, listening on
# 127.0.0.1:$VIRTWIRE_PG_PORT (default 55432) and a socket in that directory only, trust for local
# connections (loopback only: nothing else can reach it). Idempotent: a running cluster is left as
# it is. Prints the URL tests connect with. The machine's own clusters are never touched.
set -euo pipefail
DIR="${VIRTWIRE_PG_DIR:-/var/lib/virtwire-pg}"
PORT="${VIRTWIRE_PG_PORT:-55432}"

if [ "$(id -u)" != 0 ]; then
  echo "postgres: must run as root" >&2
  exit 1
fi
bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(bin_dir)" ]; then
  echo "postgres: installing postgresql (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -q --no-install-recommends postgresql >/dev/null
fi
BIN="$(bin_dir)"
as_pg() { runuser -u postgres -- "$@"; }

mkdir -p "$DIR"
chown postgres:postgres "$DIR"
chmod 0700 "$DIR"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
  as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
fi
if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
  # client_connection_check_interval: a backend whose client vanished (kill -9, a partition)
  # notices within seconds even mid-query, so its advisory locks go with it; keepalives do the
  # same for an idle session
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start -o "\
 -c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR\
 -c max_connections=200 -c fsync=on -c client_connection_check_interval=2s\
 -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3" >/dev/null
fi
echo "postgresql://postgres@127.0.0.1:$PORT/postgres"
