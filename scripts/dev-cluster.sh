#!/usr/bin/env bash
# Starts a Redis Cluster on this machine for trying Kiln's Redis backend by
# hand: three masters with one replica each, on fixed loopback ports, the
# same shape as the one the tests start (internal/redistest).
#
#   scripts/dev-cluster.sh [start]   start it on ports 7000-7005
#   scripts/dev-cluster.sh status    say whether it runs, and where
#   scripts/dev-cluster.sh stop      stop it and delete its data
#
# KILN_DEV_REDIS_PORT=7100 moves it to ports 7100-7105 (the cluster bus uses
# each port + 10000 too). Its data, configuration and logs live under
# .kiln-dev/redis-cluster/<port>/ (ignored by git). Needs redis-server and
# redis-cli (Debian package redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."

root=.kiln-dev/redis-cluster
nodes=6
# cluster-node-timeout: how long a master may be silent before its replica
# takes over. Redis's default is 15 s; 2 s makes a failover quick to try.
node_timeout_ms=2000

die() {
  echo "scripts/dev-cluster.sh: $*" >&2
  exit 1
}

# port_open PORT: is something listening on 127.0.0.1:PORT?
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_until SECONDS DESCRIPTION COMMAND...: run COMMAND every 0.1 s until it
# succeeds, for at most SECONDS.
wait_until() {
  local limit=$1 what=$2
  shift 2
  local tries=$((limit * 10))
  until "$@" >/dev/null 2>&1; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || die "gave up after ${limit}s waiting for $what (logs: $root/*/redis.log)"
    sleep 0.1
  done
}

ports() {
  local base=$1
  seq "$base" $((base + nodes - 1))
}

# running_base: the first port of the running (or last started) cluster.
running_base() {
  [ -f "$root/base-port" ] && cat "$root/base-port"
}

print_addrs() {
  local base=$1 addrs=() p
  for p in $(ports "$base"); do addrs+=("127.0.0.1:$p"); done
  echo "Redis Cluster (3 masters, 3 replicas) at: ${addrs[*]}"
  local list
  list=$(IFS=,; echo "${addrs[*]}")
  echo "Kiln project file:  online_store: {type: redis, addrs: [${list//,/, }]}"
  echo "Look inside:        redis-cli -c -p $base cluster nodes"
  echo "Stop it:            scripts/dev-cluster.sh stop"
}

cluster_ok() {
  local p
  for p in "$@"; do
    redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

start() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 ||
    die "redis-server and redis-cli are not installed (Debian/Ubuntu: sudo apt-get install redis-server; then sudo service redis-server stop, as the package starts a daemon on 6379)"

  local old
  old=$(running_base || true)
  if [ -n "$old" ] && port_open "$old"; then
    echo "Already running."
    print_addrs "$old"
    return
  fi
  rm -rf "$root" # a stopped cluster's leftovers: start afresh

  local base=${KILN_DEV_REDIS_PORT:-7000}
  case $base in '' | *[!0-9]*) die "KILN_DEV_REDIS_PORT is '$base'; want a port number" ;; esac
  [ "$base" -ge 1024 ] && [ $((base + nodes - 1 + 10000)) -le 65535 ] ||
    die "KILN_DEV_REDIS_PORT is $base; want 1024 to $((65535 - 10000 - nodes + 1)), as each node also uses its port + 10000"
  local p
  for p in $(ports "$base"); do
    port_open "$p" && die "port $p is in use; choose other ports with KILN_DEV_REDIS_PORT"
    port_open $((p + 10000)) && die "port $((p + 10000)) (the cluster bus of $p) is in use; choose other ports with KILN_DEV_REDIS_PORT"
  done

  mkdir -p "$root"
  echo "$base" >"$root/base-port"
  for p in $(ports "$base"); do
    local dir
    dir="$(pwd)/$root/$p"
    mkdir -p "$dir"
    cat >"$dir/redis.conf" <<EOF
port $p
bind 127.0.0.1
protected-mode no
dir $dir
logfile $dir/redis.log
pidfile $dir/redis.pid
daemonize yes
appendonly yes
appendfsync everysec
save ""
repl-diskless-sync-delay 0
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $node_timeout_ms
EOF
    redis-server "$dir/redis.conf"
  done
  for p in $(ports "$base"); do
    wait_until 10 "redis-server on port $p" redis-cli -p "$p" ping
  done

  local addrs=()
  for p in $(ports "$base"); do addrs+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$root/create.log" 2>&1 ||
    die "redis-cli --cluster create failed; see $root/create.log (stop the nodes with: scripts/dev-cluster.sh stop)"
  # shellcheck disable=SC2046
  wait_until 30 "every node to say cluster_state:ok" cluster_ok $(ports "$base")
  print_addrs "$base"
}

stop() {
  local base
  base=$(running_base || true)
  if [ -z "$base" ]; then
    echo "No dev cluster to stop."
    return
  fi
  local p pids=()
  for p in $(ports "$base"); do
    local pidfile=$root/$p/redis.pid
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    # Only signal the process if it still is that node's redis-server.
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "redis-server.*:$p"; then
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  local pid
  for pid in "${pids[@]}"; do
    wait_until 10 "redis-server (pid $pid) to exit" bash -c "! kill -0 $pid"
  done
  rm -rf "$root"
  rmdir .kiln-dev 2>/dev/null || true # if nothing else lives there
  echo "Stopped the dev cluster on ports $base-$((base + nodes - 1)) and deleted its data."
}

status() {
  local base
  base=$(running_base || true)
  if [ -n "$base" ] && port_open "$base"; then
    print_addrs "$base"
  else
    echo "No dev cluster is running."
  fi
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "unknown command '$1'; use start, status or stop" ;;
esac
