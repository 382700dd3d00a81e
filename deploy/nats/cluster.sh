#!/usr/bin/env bash
# A three-node NATS cluster (JetStream, full-mesh routes) on loopback, for local runs and tests.
#
#   deploy/nats/cluster.sh render [DIR]   write n1.conf, n2.conf, n3.conf into DIR from node.conf.template
#   deploy/nats/cluster.sh start  [DIR]   render, start the three nodes, wait until they accept clients
#   deploy/nats/cluster.sh status [DIR]   which nodes run, and the JetStream meta leader
#   deploy/nats/cluster.sh stop   [DIR]   stop the nodes started from DIR (SIGTERM, SIGKILL after 5 s)
#
# DIR defaults to .tmp/nats-cluster in the checkout; it holds configs, logs, pid files and the
# JetStream stores. Ports come from NATS_CLIENT_PORTS, NATS_CLUSTER_PORTS and NATS_HTTP_PORTS
# (three numbers each; defaults 4222-4224, 6222-6224, 8222-8224). nats-server is found on PATH or
# in /usr/sbin, or given as NATS_SERVER.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"
dir="${2:-$here/../../.tmp/nats-cluster}"
read -r -a client_ports <<<"${NATS_CLIENT_PORTS:-4222 4223 4224}"
read -r -a cluster_ports <<<"${NATS_CLUSTER_PORTS:-6222 6223 6224}"
read -r -a http_ports <<<"${NATS_HTTP_PORTS:-8222 8223 8224}"
nodes=(n1 n2 n3)

say() { printf 'nats cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

check_ports() {
  local name list
  for name in client_ports cluster_ports http_ports; do
    local -n list="$name"
    ((${#list[@]} == 3)) || die "need three ${name/_/ } (got '${list[*]}')"
    for p in "${list[@]}"; do
      [[ "$p" =~ ^[0-9]+$ ]] && ((p >= 1 && p <= 65535)) || die "'$p' in ${name/_/ } is not a port number"
    done
  done
}

render() {
  check_ports
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  for i in 0 1 2; do
    sed -e "s|@NODE@|${nodes[$i]}|g" \
      -e "s|@CLIENT_PORT@|${client_ports[$i]}|g" \
      -e "s|@CLUSTER_PORT@|${cluster_ports[$i]}|g" \
      -e "s|@HTTP_PORT@|${http_ports[$i]}|g" \
      -e "s|@ROUTE_PORT_1@|${cluster_ports[0]}|g" \
      -e "s|@ROUTE_PORT_2@|${cluster_ports[1]}|g" \
      -e "s|@ROUTE_PORT_3@|${cluster_ports[2]}|g" \
      -e "s|@RUN_DIR@|$dir|g" \
      "$here/node.conf.template" >"$dir/${nodes[$i]}.conf"
  done
}

server_bin() {
  if [[ -n "${NATS_SERVER:-}" ]]; then echo "$NATS_SERVER"; return; fi
  command -v nats-server 2>/dev/null || { [[ -x /usr/sbin/nats-server ]] && echo /usr/sbin/nats-server; } ||
    die "nats-server not found: install it (apt-get install nats-server) or set NATS_SERVER"
}

running_pid() { # prints the pid of a node started from $dir, if it still runs
  local f="$dir/$1.pid"
  [[ -f "$f" ]] || return 1
  local pid
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  render
  local bin
  bin="$(server_bin)"
  for i in 0 1 2; do
    local n="${nodes[$i]}"
    if running_pid "$n" >/dev/null; then die "$n already runs from $dir; stop it first"; fi
    # setsid: the nodes outlive this script and do not get the terminal's Ctrl-C.
    setsid "$bin" -c "$dir/$n.conf" >>"$dir/$n.log" 2>&1 </dev/null &
  done
  for i in 0 1 2; do
    local n="${nodes[$i]}" ok=0
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/${client_ports[$i]}") 2>/dev/null && running_pid "$n" >/dev/null; then
        ok=1
        break
      fi
      sleep 0.1
    done
    ((ok)) || { stop; die "$n did not start within 10 s; see $dir/$n.log"; }
  done
  say "started n1 n2 n3 from $dir"
  echo "nats://127.0.0.1:${client_ports[0]},nats://127.0.0.1:${client_ports[1]},nats://127.0.0.1:${client_ports[2]}"
}

stop() {
  local pids=()
  for n in "${nodes[@]}"; do
    local pid
    if pid="$(running_pid "$n")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -f "$dir"/n[123].pid
  say "stopped ${#pids[@]} node(s) started from $dir"
}

status() {
  local up=0
  for i in 0 1 2; do
    local n="${nodes[$i]}" pid
    if pid="$(running_pid "$n")"; then
      up=$((up + 1))
      local leader
      leader="$(curl -fsS --max-time 2 "http://127.0.0.1:${http_ports[$i]}/jsz" 2>/dev/null |
        sed -n 's/.*"leader": *"\([^"]*\)".*/\1/p' | head -n1)"
      echo "$n pid $pid client 127.0.0.1:${client_ports[$i]} meta-leader ${leader:-none}"
    else
      echo "$n down"
    fi
  done
  ((up == 3))
}

case "$cmd" in
  render) render; say "wrote $dir/n1.conf n2.conf n3.conf" ;;
  start) start ;;
  stop) dir="$(cd "$dir" 2>/dev/null && pwd)" || die "no cluster directory $dir"; stop ;;
  status) status ;;
  *) say "usage: cluster.sh render|start|status|stop [DIR]"; exit 2 ;;
esac
