#!/usr/bin/env bash
# Brings a fresh Debian/Ubuntu machine to a working state for hotpatch, and is safe to run again.
#
#   scripts/setup.sh system   system packages only (called by `npm ci` before the native build)
#   scripts/setup.sh          system packages, npm dependencies, native addon and TypeScript build
#   scripts/setup.sh docker   the above, then start the Docker engine if it is not running
#   scripts/setup.sh test     as docker, but an engine that cannot be started is only reported
#                             (`npm test` runs this; the container suite then says why it skips)
#
# As root it installs what is missing with apt-get; otherwise it prints the one command to run.
set -euo pipefail
mode="${1:-all}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf 'hotpatch setup: %s\n' "$*" >&2; }

# Debian package -> a file whose presence proves it is installed (cheaper and surer than dpkg -s).
declare -A probe=(
  [g++]=/usr/bin/g++
  [make]=/usr/bin/make
  [python3]=/usr/bin/python3
  [libelf-dev]=/usr/include/libelf.h
  [libdw-dev]=/usr/include/elfutils/libdw.h
  [elfutils]=/usr/bin/eu-readelf
  [binutils]=/usr/bin/objcopy
  [nats-server]=/usr/sbin/nats-server
  [docker.io]=/usr/sbin/dockerd
  [iproute2]=/usr/sbin/ip
  [openssl]=/usr/bin/openssl
  [systemd]=/usr/bin/systemd-analyze
)

install_system() {
  local missing=()
  for pkg in "${!probe[@]}"; do
    [[ -e "${probe[$pkg]}" ]] || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ "$(id -u)" != 0 ]]; then
    say "missing system packages: ${missing[*]}"
    say "run this once, then try again:  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_node() {
  cd "$root"
  # npm ci is needed when node_modules is missing or older than the lock file.
  if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
    say "installing npm dependencies (npm ci)"
    npm ci --no-audit --no-fund
  fi
  # Incremental rebuilds: both are quick no-ops when nothing changed.
  if [[ ! -f native/build/Release/hotpatch_native.node ]]; then
    npx --no-install node-gyp rebuild --directory=native >/dev/null
  else
    npx --no-install node-gyp build --directory=native >/dev/null
  fi
  npx --no-install tsc -p tsconfig.build.json
}

start_docker() {
  if docker info >/dev/null 2>&1; then return 0; fi
  if [[ "$(id -u)" != 0 ]]; then
    say "the Docker engine is not running; start it with:  sudo systemctl start docker"
    exit 1
  fi
  say "starting the Docker engine"
  mkdir -p /var/log
  (setsid dockerd >/var/log/hotpatch-dockerd.log 2>&1 &)
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  say "dockerd did not come up within 60 s; see /var/log/hotpatch-dockerd.log"
  exit 1
}

case "$mode" in
  system) install_system ;;
  all) install_system; install_node ;;
  docker) install_system; install_node; start_docker ;;
  test) install_system; install_node; (start_docker) || say "no Docker engine: the container suite will be skipped" ;;
  *) say "unknown mode '$mode' (expected: system, all, docker, test)"; exit 2 ;;
esac
