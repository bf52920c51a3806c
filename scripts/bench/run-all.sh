#!/usr/bin/env bash
# `npm run bench`: every benchmark under scripts/bench/, each printing its table (ours vs a
# baseline measured in the same run, and the ratio). Sets up what it needs first.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/prepare.sh
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(libvirt plan state host-plane security-groups overlapping-tenants create-vm create-loop create-many cloud-vm)
if [ "$(id -u)" != 0 ]; then
  for b in host-plane security-groups overlapping-tenants create-vm create-loop create-many cloud-vm; do benches=("${benches[@]/$b/}"); done
  echo "bench: host-plane, security-groups, overlapping-tenants, create-vm, create-loop, create-many and cloud-vm need root; skipped"
fi
for b in "${benches[@]}"; do
  [ -n "$b" ] || continue
  node "dist/scripts/bench/$b.js"
done
