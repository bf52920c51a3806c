#!/usr/bin/env bash
# `npm test`: the whole suite, every tier this machine can run. Prepares what it needs first
# (npm deps; as root also the Debian packages, libvirtd and the test guest image).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
if [ "$(id -u)" = 0 ]; then
  bash scripts/setup-host.sh
else
  echo "virtwire: not root — the integration tier will report itself skipped (it needs root, libvirtd and namespaces)"
fi
npm run build --silent
# the test guest (cached; rebuilt only when its inputs change)
if [ "$(id -u)" = 0 ]; then node dist/scripts/build-guest-image.js; fi
export NODE_OPTIONS="--experimental-vm-modules --expose-gc --no-warnings=ExperimentalWarning"
exec npx jest "$@"
