#!/usr/bin/env bash
# One command from a fresh clone to a served model: set up .venv, build the digits
# example (an MLP trained on scikit-learn's digits), serve it on http://localhost:8080
# (v1/v2 REST) and localhost:8081 (v2 gRPC). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
BUILD=examples/digits/build
if [ ! -f "$BUILD/model-store/digits.mar" ] || [ examples/digits/handler.py -nt "$BUILD/model-store/digits.mar" ] \
   || [ scripts/build_digits_example.py -nt "$BUILD/model-store/digits.mar" ]; then
  .venv/bin/python scripts/build_digits_example.py --out "$BUILD"
fi
exec .venv/bin/python -m kserve_torchserve \
  --storage_uri "$BUILD/model-store" --model_name digits \
  --http_port "${HTTP_PORT:-8080}" --grpc_port "${GRPC_PORT:-8081}" "$@"
