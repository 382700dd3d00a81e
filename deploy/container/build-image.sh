#!/usr/bin/env bash
# Builds the agent image locally from deploy/container/Dockerfile (FROM scratch, no registry):
#
#   deploy/container/build-image.sh [TAG]     default tag hotpatch-agent:<package version>
#
# Needs a running Docker engine (`bash scripts/setup.sh docker` starts one as root) and a built
# project (`npm run build`). Prints the tag on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version="$(node -p "require('$root/package.json').version")"
tag="${1:-hotpatch-agent:$version}"

docker info >/dev/null 2>&1 || {
  echo "build-image: the Docker engine is not running (as root: bash scripts/setup.sh docker)" >&2
  exit 1
}
ctx="$(mktemp -d "${TMPDIR:-/tmp}/hotpatch-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
"$here/build-rootfs.sh" "$ctx/rootfs"
cp "$here/Dockerfile" "$ctx/Dockerfile"
if ! docker build --tag "$tag" "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  echo "build-image: docker build failed" >&2
  exit 1
fi
echo "$tag"
