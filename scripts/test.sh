#!/usr/bin/env bash
# `npm test`: the whole suite, every tier this machine can run. Prepares what it needs first
# (scripts/prepare.sh: npm deps; as root also the Debian packages, libvirtd and the test guest).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "virtwire: not root — the integration tier will report itself skipped (it needs root, libvirtd and namespaces)"
fi
bash scripts/prepare.sh
# lint before the suites: typescript-eslint (promises, unused code, 120-character lines),
# prettier's formatting, and knip (no unused files, exports or dependencies)
npm run lint --silent
export NODE_OPTIONS="--experimental-vm-modules --expose-gc --no-warnings=ExperimentalWarning"
exec npx jest "$@"
