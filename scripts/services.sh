#!/usr/bin/env bash
# Makes sure the local PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379,
# maxmemory-policy noeviction, AOF on) that Stockflow uses by default are running: starts them from the
# installed binaries when they are not reachable, installing them with apt-get when they are
# missing and this is a Debian-like machine we may administer.
#   --with-browser     also make sure Debian's chromium is installed (the browser tests need it)
#   --with-prometheus  also make sure Debian's prometheus is installed (its promtool checks the
#                      metrics, the alert rules and their tests)
set -euo pipefail

with_browser=false
with_prometheus=false
for arg in "$@"; do
  case "$arg" in
    --with-browser) with_browser=true ;;
    --with-prometheus) with_prometheus=true ;;
    *) echo "usage: $0 [--with-browser] [--with-prometheus]" >&2; exit 2 ;;
  esac
done

say() { echo "services: $*"; }

apt_install() {
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    say "cannot install $* here (needs apt-get as root); install it and run this again" >&2
    exit 1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  say "$2 did not come up on 127.0.0.1:$1" >&2
  exit 1
}

# PostgreSQL ------------------------------------------------------------------------------------
if port_open 5432; then
  say "PostgreSQL is up on 127.0.0.1:5432"
else
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_install postgresql
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  if [ ! -d "/etc/postgresql/$version/main" ]; then
    pg_createcluster "$version" main >/dev/null
  fi
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  # A local development server: trust loopback connections so the default DATABASE_URL
  # (postgres://postgres@127.0.0.1:5432/stockflow) needs no password.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '/^#\? *host .*127.0.0.1\/32/d; /^#\? *host .*::1\/128/d' "$hba"
    printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' >>"$hba"
  fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for_port 5432 PostgreSQL
fi

# Redis -----------------------------------------------------------------------------------------
if port_open 6379; then
  say "Redis is up on 127.0.0.1:6379"
else
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  say "starting Redis (AOF on, fsync every second)"
  # A 202 is only as durable as Redis's log: AOF on, so a Redis restart keeps the queued jobs
  # (everysec: a crash of the machine loses at most about a second of them; see docs/events.md).
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly yes --appendfsync everysec --appendfilename stockflow.aof \
    --maxmemory-policy noeviction --dir /var/lib/redis --logfile /var/log/redis/stockflow.log
  wait_for_port 6379 Redis
fi
# A Redis this script did not start (the machine's own, a container) is left as it is, but told of.
if command -v redis-cli >/dev/null; then
  aof=$(redis-cli -h 127.0.0.1 -p 6379 config get appendonly | tail -n 1)
  [ "$aof" = yes ] || say "warning: Redis runs without AOF (appendonly $aof): a Redis restart loses queued jobs"
fi
# BullMQ loses jobs if Redis may evict keys.
if command -v redis-cli >/dev/null; then
  policy=$(redis-cli -h 127.0.0.1 -p 6379 config get maxmemory-policy | tail -n 1)
  if [ "$policy" != noeviction ]; then
    redis-cli -h 127.0.0.1 -p 6379 config set maxmemory-policy noeviction >/dev/null
    say "set Redis maxmemory-policy to noeviction (was $policy)"
  fi
fi

# Chromium for the browser tests ---------------------------------------------------------------
if $with_browser; then
  if [ -x /usr/bin/chromium ]; then
    say "chromium is installed"
  else
    apt_install chromium
  fi
fi

# promtool for the metrics and alert-rule checks ------------------------------------------------
if $with_prometheus; then
  if command -v promtool >/dev/null; then
    say "promtool is installed"
  else
    apt_install prometheus
    # Only promtool is wanted: the package's own server must not hold port 9090 on a test machine.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
      systemctl stop prometheus || true
    fi
  fi
fi
