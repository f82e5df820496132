#!/usr/bin/env bash
# Sets up everything on a fresh machine: Java (if missing), a virtualenv in .venv,
# the package with its test extras. Safe to run again: it skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if ! command -v java >/dev/null 2>&1; then
  echo "[setup] java not found: installing Debian's openjdk-17-jre-headless"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q openjdk-17-jre-headless
fi

# The stamp holds a hash of everything that decides what is installed, so an
# edit to setup.cfg or the pins re-runs pip and nothing else does.
stamp="$VENV/.kserve-torchserve-installed"
want=$(cat setup.cfg scripts/constraints-dev.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c scripts/constraints-dev.txt -e '.[test]'
# Compile TorchServe's gRPC stubs now, so the first server start does not pay for it.
"$VENV/bin/python" -c 'import kserve_torchserve.backend.grpc_stubs as p; p.load()'
echo "$want" > "$stamp"
echo "[setup] ready: $VENV"
