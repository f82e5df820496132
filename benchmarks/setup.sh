#!/usr/bin/env bash
# Everything the benchmark needs beyond the test set-up: wrk (Debian) for REST load, py-spy for cpu_profile.py.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q wrk
fi
# py-spy samples our process for benchmarks/cpu_profile.py --spy.
[ -x .venv/bin/py-spy ] || .venv/bin/python -m pip install -q py-spy
echo "[bench] ready: .venv/bin/python benchmarks/run.py"
