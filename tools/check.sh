#!/usr/bin/env bash
# What to run before a commit: the CI checks, in the current environment (no reinstall).
#   tools/check.sh            lint, types, every test
#   tools/check.sh tests/core only some tests (lint and types still cover everything)
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check async_etl tests benchmarks tools
ruff format --check async_etl tests benchmarks tools
mypy
pytest -q -p no:cacheprovider "${@:-tests}"
duplicates --change 2>/dev/null || true   # the workplace's duplicate finder, where installed
