#!/usr/bin/env bash
# What `npm test`, `npm run demo` and `npm run bench` need first, each step idempotent: npm
# dependencies, and as root the Debian packages + libvirtd (setup-host.sh), the build, and the
# test guest (cached; rebuilt only when its inputs change). The Debian cloud image is built where
# it is used, on first use (demo --cloud, the cloud tests and bench): the default demo never boots it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
if [ "$(id -u)" = 0 ]; then bash scripts/setup-host.sh; fi
npm run build --silent
if [ "$(id -u)" = 0 ]; then node dist/scripts/build-guest-image.js; fi
