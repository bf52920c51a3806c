#!/usr/bin/env bash
# `npm run demo`: sets up what it needs (idempotently), builds, runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
if [ "$(id -u)" = 0 ]; then bash scripts/setup-host.sh; fi
npm run build --silent
# the test guest (cached; rebuilt only when its inputs change)
if [ "$(id -u)" = 0 ]; then node dist/scripts/build-guest-image.js; fi
if [ "$(id -u)" != 0 ]; then echo "demo: needs root (libvirtd, bridges, taps); run as root on Debian 12" >&2; exit 1; fi
exec node dist/scripts/demo.js "$@"
