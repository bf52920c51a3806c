#!/usr/bin/env bash
# `npm run demo`: sets up what it needs (idempotently), builds, runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "demo: needs root (libvirtd, bridges, taps); run as root on Debian 12" >&2; exit 1; fi
bash scripts/prepare.sh
exec node dist/scripts/demo.js "$@"
