#!/usr/bin/env bash
# Assembles the agent image's root filesystem into DIR (which must not exist yet or be empty):
#   /usr/local/bin/node                         this machine's node
#   /opt/hotpatch/{package.json,bin,dist}       the built project (npm run build first)
#   /opt/hotpatch/native/build/Release/*.node   the native addon
#   /opt/hotpatch/node_modules                  production dependencies only (npm ls --omit=dev)
#   /bin/sh                                     for promote/demote hooks written as `sh -c ...`
#   the shared libraries ldd lists for node, the addon(s) and sh, at the paths ldd names
#   /etc/{passwd,group,nsswitch.conf}, /tmp
#
#   deploy/container/build-rootfs.sh DIR
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:?usage: build-rootfs.sh DIR}"

say() { printf 'build-rootfs: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[[ -f "$root/dist/cli/main.js" ]] || die "the project is not built: run 'npm run build' in $root"
addons=()
while IFS= read -r f; do addons+=("$f"); done < <(find "$root/native/build/Release" -maxdepth 1 -name '*.node' 2>/dev/null)
((${#addons[@]} > 0)) || die "the native addon is not built: run 'npm run build' in $root"
if [[ -e "$out" ]] && [[ -n "$(ls -A "$out")" ]]; then die "$out exists and is not empty"; fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
node_bin="$(readlink -f "$(command -v node)")"
sh_bin="$(readlink -f /bin/sh)"

app="$out/opt/hotpatch"
mkdir -p "$app/native/build/Release" "$out/usr/local/bin" "$out/bin" "$out/etc" "$out/tmp"
chmod 1777 "$out/tmp"
cp "$node_bin" "$out/usr/local/bin/node"
cp "$sh_bin" "$out/bin/sh"
cp "$root/package.json" "$app/"
cp -r "$root/bin" "$root/dist" "$app/"
find "$app/dist" -name '*.map' -delete
cp "${addons[@]}" "$app/native/build/Release/"

# Production dependencies: each package directory without its own node_modules (nested
# dependencies are listed and copied on their own), so no development package slips in.
count=0
while IFS= read -r pkg; do
  [[ "$pkg" == "$root/node_modules/"* ]] || continue
  rel="${pkg#"$root/"}"
  mkdir -p "$app/$rel"
  (cd "$pkg" && tar --exclude=./node_modules -cf - .) | (cd "$app/$rel" && tar -xf -)
  count=$((count + 1))
done < <(cd "$root" && npm ls --omit=dev --all --parseable 2>/dev/null || true)
((count > 0)) || die "npm ls found no production dependency in $root/node_modules (run npm ci)"

# Shared libraries, at the path ldd names (the loader's own path included).
libs="$(for f in "$node_bin" "$sh_bin" "${addons[@]}"; do ldd "$f"; done |
  awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(0x/ { print $1 }' | sort -u)"
for lib in $libs; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done

cat >"$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
PASSWD
cat >"$out/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo "hosts: files dns" >"$out/etc/nsswitch.conf"
say "wrote $out: node $("$node_bin" --version), $count npm packages, $(wc -w <<<"$libs") shared libraries"
