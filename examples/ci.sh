#!/usr/bin/env bash
# What a CI job does with virtwire, as it would with Terraform: validate the spec file, plan to a
# file, show that plan, apply exactly it, read the VMs' addresses, and (unless KEEP=1) destroy.
#
#   examples/ci.sh tenants.yaml [STATE_DIR]
#
# Needs bash, jq and virtwire (VIRTWIRE=/path/to/virtwire.js to use another build). Exit status:
# that of the first step that failed.
set -euo pipefail

spec=${1:?usage: ci.sh SPEC_FILE [STATE_DIR]}
state=${2:-/var/lib/virtwire}
vw() { ${VIRTWIRE:-virtwire} --state-dir "$state" -no-color "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== validate"
if ! vw validate -f "$spec" -json | jq -e '.valid' >/dev/null; then
  vw validate -f "$spec" -json | jq -r '.diagnostics[] | "\(.range.filename):\(.range.start.line): \(.detail)"' >&2
  exit 1
fi
vw fmt -check "$spec" >/dev/null || echo "note: $spec is not in canonical form (run: virtwire fmt $spec)" >&2

echo "== plan"
rc=0
vw plan -f "$spec" -out "$work/plan.json" -detailed-exitcode >/dev/null || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 2 ] || exit "$rc"
vw show -json "$work/plan.json" | jq -r '.resource_changes[] | "  \(.change.actions | join("+")) \(.address)"'

if [ "$rc" = 2 ]; then
  echo "== apply"
  # one JSON object per event; the last one is the outcome
  vw apply -json "$work/plan.json" >"$work/apply.jsonl"
  jq -r 'select(.type == "apply_complete" or .operation == "apply") | "  \(.["@message"])"' "$work/apply.jsonl"
fi

echo "== output"
vw output -json | jq -r '.vms | to_entries[] | "  \(.key) \(.value.ip) \(.value.nics | map(.mac) | join(","))"'

if [ "${KEEP:-0}" != 1 ]; then
  echo "== destroy"
  vw destroy -f "$spec" -auto-approve >/dev/null
  [ "$(vw output -json | jq '.vms | length')" = 0 ]
  echo "  done"
fi
