#!/usr/bin/env bash
# Proves the README's promise that a clone works wherever it lives: clones this repository into a
# fresh 0700 folder under root's home (as `git clone` into /root or `mktemp -d` gives a new user),
# then runs, from there, `npm test` on the tests that drop privileges, and `npm run demo`.
#
#   scripts/check_private_clone.sh [PATTERN ...]   test files to run (default: those that drop privileges)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf 'private clone check: %s\n' "$*" >&2; }

home="${HOME:-/root}"
[[ -d "$home" ]] || home=/root
parent="$(mktemp -d "$home/hotpatch-clone.XXXXXX")"
trap 'rm -rf "$parent"' EXIT
chmod 0700 "$parent"
clone="$parent/hotpatch"
git clone --quiet --no-hardlinks "$root" "$clone"
say "cloned into $clone (folder mode $(stat -c %a "$parent"))"

cd "$clone"
if (($# == 0)); then
  # Every test that runs something with fewer privileges than the test itself.
  mapfile -t files < <(grep -rlE 'helpers/privileges|uid: 65534|setpriv' test --include='*.test.ts' | sort)
  set -- "${files[@]#test/}"
fi
say "npm test -- $*"
npm test -- "$@"
say "npm run demo"
npm run demo
