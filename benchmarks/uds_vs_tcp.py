"""Our client to TorchServe over loopback TCP against a unix socket: is the socket worth having?

TorchServe's Netty frontend can listen on a unix domain socket (``inference_address=unix:/path``,
with ``use_native_io``, the default on Linux). Our process calls TorchServe once per request, so
a cheaper socket would be CPU saved in our process and in Java. This script measures it with
nothing else in the way: one TorchServe at a time, W1 (the digits MLP, batch 8 / 5 ms, one
worker, the worker environment our runtime sets), our HTTP client (backend/http_pool.py) in a
closed loop at 16 requests in flight, then the same over the other socket, alternating; after the
same warm-up each time, the CPU per request of this process (the client) and of TorchServe
(Java and its worker), from /proc.

  .venv/bin/python benchmarks/uds_vs_tcp.py [--rounds 2] [--seconds 6] [--warmup 10]
Writes benchmarks/results/<date>-uds_vs_tcp.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import RESULTS, add_tag_option, cpu_of, w1_workload  # noqa: E402
from kserve_torchserve.backend import http_pool  # noqa: E402
from kserve_torchserve.backend.ports import free_ports  # noqa: E402
from tests.helpers import Server  # noqa: E402

CONCURRENCY = 16


class UnixPool(http_pool.Pool):
    """http_pool.Pool over a unix socket: the same connections, protocol, parser and idle reuse."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", 0)
        self.path = path

    async def _connect(self) -> http_pool._Connection:
        _, protocol = await asyncio.get_running_loop().create_unix_connection(http_pool._Connection, self.path)
        return protocol


def model_store(work: Path) -> Path:
    """The digits .mar as our runtime builds it (one short start of our server)."""
    workload = w1_workload()
    (work / "ours").mkdir()
    server = Server(workload["storage"], work / "ours", model_name=workload["model"])
    try:
        server.wait_ready(300)
        store = work / "model-store"
        shutil.copytree(server.work_dir / "model-store", store)
        return store
    finally:
        server.stop()


def start_torchserve(store: Path, base: Path, socket_kind: str) -> tuple[subprocess.Popen[bytes], http_pool.Pool]:
    (base / "tmp").mkdir(parents=True)
    inference, management, metrics, grpc_inference, grpc_management = free_ports(5)
    address = f"unix:{base / 'ts.sock'}" if socket_kind == "unix" else f"http://127.0.0.1:{inference}"
    (base / "config.properties").write_text("\n".join([
        f"inference_address={address}", f"management_address=http://127.0.0.1:{management}",
        f"metrics_address=http://127.0.0.1:{metrics}", f"grpc_inference_port={grpc_inference}",
        f"grpc_management_port={grpc_management}", "disable_token_authorization=true",
        "default_workers_per_model=1", "enable_model_api=true", f"model_store={store}", ""]))
    venv_bin = str(Path(sys.executable).parent)
    # The worker environment our runtime gives TorchServe on 2 CPUs (config/cpus.py).
    env = {**os.environ, "TMPDIR": str(base / "tmp"), "OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "10000",
           "PATH": venv_bin + os.pathsep + os.environ["PATH"]}
    with open(base / "torchserve.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([str(Path(venv_bin) / "torchserve"), "--start", "--foreground", "--ncs",
                                 "--ts-config", str(base / "config.properties"), "--model-store", str(store)],
                                env=env, cwd=base, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    register = (f"http://127.0.0.1:{management}/models?url=digits.mar&batch_size=8"
                "&max_batch_delay=5&initial_workers=1&synchronous=true")
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(register, method="POST"), timeout=120)
            break
        except urllib.error.HTTPError as exc:  # TorchServe is up and refused: no point in waiting
            stop(proc)
            raise SystemExit(f"TorchServe refused the model: {exc}: {exc.read()[:300]!r}") from None
        except OSError:  # not listening yet
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise SystemExit(f"TorchServe did not start: {(base / 'torchserve.log').read_text()[-2000:]}") from None
            time.sleep(0.5)
    pool = UnixPool(str(base / "ts.sock")) if socket_kind == "unix" else http_pool.Pool("127.0.0.1", inference)
    return proc, pool


def torchserve_cpu(proc: subprocess.Popen[bytes]) -> float:
    """CPU seconds of everything in TorchServe's session."""
    return cpu_of(session(proc))


async def closed_loop(pool: http_pool.Pool, body: bytes, seconds: float) -> int:
    done = 0
    stop = time.monotonic() + seconds

    async def one() -> None:
        nonlocal done
        while time.monotonic() < stop:
            status, _ = await pool.request("POST", "/predictions/digits", body,
                                           {"Content-Type": "application/json"}, 30)
            if status != 200:
                raise SystemExit(f"TorchServe answered {status}")
            done += 1

    await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    return done


def measure(store: Path, base: Path, socket_kind: str, seconds: float, warmup: float) -> dict[str, Any]:
    proc, pool = start_torchserve(store, base, socket_kind)
    body = w1_workload()["ts_body"]
    async def run() -> dict[str, Any]:
        try:
            await closed_loop(pool, body, warmup)  # the same warm-up (Java's JIT) for both sockets
            client0, server0, started = time.process_time(), torchserve_cpu(proc), time.monotonic()
            requests = await closed_loop(pool, body, seconds)
            took = time.monotonic() - started
            return {"rps": round(requests / took, 1),
                    "client_ms": round(1000 * (time.process_time() - client0) / requests, 3),
                    "torchserve_ms": round(1000 * (torchserve_cpu(proc) - server0) / requests, 3)}
        finally:
            pool.close()

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # our server's loop
            return runner.run(run())
    finally:
        stop(proc)


def session(proc: subprocess.Popen[bytes]) -> list[int]:
    """The processes of TorchServe's session: the launcher, Java, the worker."""
    listed = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in listed]


def stop(proc: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """TorchServe's whole session, not only the launcher (Java outlives it for a moment): SIGTERM, then
    SIGKILL to whatever is left after a grace, and wait until none is left, so that the next one starts alone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while session(proc) and time.monotonic() < deadline:
        proc.poll()  # reap the launcher, which would otherwise stay listed as a zombie
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    add_tag_option(parser)
    args = parser.parse_args()
    points: dict[str, list[dict[str, Any]]] = {"tcp": [], "unix": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = model_store(work)
        for index in range(args.rounds):
            for kind in points:  # alternating, so that a slow phase of the VM hits both
                point = measure(store, work / f"{kind}-{index}", kind, args.seconds, args.warmup)
                points[kind].append(point)
                print(f"{kind:4}: {point['rps']:.0f} req/s, CPU ms per request: client {point['client_ms']}, "
                      f"TorchServe {point['torchserve_ms']}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{datetime.date.today().isoformat()}-uds_vs_tcp{args.tag}.json"
    out.write_text(json.dumps({"concurrency": CONCURRENCY, "batch": 8, "seconds": args.seconds,
                               "warmup": args.warmup, "points": points}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
