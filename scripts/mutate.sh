#!/usr/bin/env bash
# Mutation testing on demand (not in CI): see scripts/mutate.py and docs/testing.md.
# Run it niced on a shared machine: nice -n 19 scripts/mutate.sh [--only NAME] [--unit-only]
set -euo pipefail
exec python3 "$(dirname "$0")/mutate.py" "$@"
