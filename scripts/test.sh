#!/usr/bin/env bash
# One command from a fresh clone to a full test run: set up .venv, then run every test
# (unit tests, and integration tests that start the real TorchServe and KServe servers).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not integration".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest -ra "$@"
