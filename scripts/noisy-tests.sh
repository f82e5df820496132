#!/usr/bin/env bash
# The tests as on a loaded CI machine: busy neighbours (CPU-bound loops, 3 per core unless
# NOISE says how many) share the cores while each test file runs alone, in a fresh
# interpreter. A test that passes only on an idle machine fails here: a timing margin too
# thin, or a limit reached because the event loop ran late. This is how the batcher test
# that turned CI red once (its 101st caller refused as overloaded) was reproduced.
# Not part of scripts/test.sh: the unit tests take ~15 minutes this way.
# Usage: scripts/noisy-tests.sh [test files or folders...]   (default: tests/unit)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null

noise="${NOISE:-$(( 3 * $(nproc) ))}"
pids=()
stop_noise() {
    # Only the loops started here, by PID.
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_noise EXIT
for _ in $(seq 1 "$noise"); do
    .venv/bin/python -c 'while True: pass' &
    pids+=("$!")
done

mapfile -t files < <(find "${@:-tests/unit}" -name 'test_*.py' | sort)
echo "${#files[@]} test files, each alone, beside $noise busy loops"
failed=()
for file in "${files[@]}"; do
    if out=$(.venv/bin/python -m pytest -q -p no:cacheprovider "$file" 2>&1); then
        echo "ok      $file: $(tail -n 1 <<<"$out")"
    else
        echo "FAILED  $file"
        tail -n 30 <<<"$out"
        failed+=("$file")
    fi
done
if (( ${#failed[@]} )); then
    echo "${#failed[@]} of ${#files[@]} files failed beside busy neighbours: ${failed[*]}"
    exit 1
fi
echo "all ${#files[@]} files passed beside busy neighbours"
