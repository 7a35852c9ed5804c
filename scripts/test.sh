#!/usr/bin/env bash
# Run the whole test suite: unit, integration (real processes) and CLI tests.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m pytest -q "$@"
