"""Where TorchServe's Java and worker CPU per request comes from, when we feed it and when wrk does.

Issue 14 measured Java at 0.42 ms per request behind us against 0.19-0.27 ms when wrk fed
TorchServe directly, and the worker dearer too. This part puts the suspects side by side on
the issue's workload (the 784-float MLP, batch 8 / 5 ms, c=16), each after the same warm-up,
in interleaved rounds, with CPU per request of Java and the worker and the mean number of
requests per batch (from TorchServe's own log: one "Sending response for jobId" line per
request, one "Backend response time" line per batch):

  ts-json            TorchServe directly, the instance as an application/json body, kept alive
  ts-multipart       the same bytes as one multipart/form-data file part (how the revision
                     before this round sent every row)
  ts-json-close      application/json, a new connection per request (Connection: close)
  ours-v1            our server, v1 REST (the body forwarded as it came, our envelope, kept alive)
  ours-before-v1     the server of git revision --before (multipart rows, stdlib JSON)

  .venv/bin/python benchmarks/run.py --only java_cost
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from benchmarks import load
from benchmarks.before_after import CONCURRENCY, DEFAULT_BEFORE, _model, instance, start_pair, warm_each
from benchmarks.run import Processes, direct_model, interleaved, measure
from benchmarks.sweeps import BATCH_ENV
from tests.helpers import Server

_JOB_LINE = b"Sending response for jobId"
_BATCH_LINE = b"Backend response time"


def _log_counts(server: Server) -> tuple[int, int]:
    """(requests answered, batches run) so far, from TorchServe's log of this server."""
    text = (server.work_dir / "logs" / "ts_log.log").read_bytes()
    return text.count(_JOB_LINE), text.count(_BATCH_LINE)


def _multipart(field: str, value: bytes) -> tuple[str, bytes]:
    boundary = "kserve-torchserve-benchmark-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{field}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + value + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def java_cost(work: Path, seconds: float, repeats: int, warmup_s: float,
              revision: str = DEFAULT_BEFORE) -> dict[str, Any]:
    store = _model(work)
    v1 = json.dumps({"instances": [instance()]}).encode()
    raw = json.dumps(instance()).encode()
    servers: list[Server] = []
    try:
        start_pair(work, store, revision, "jc", servers)
        for server in servers:
            server.wait_ready(timeout=300)
        after, before = servers
        props, key = after.torchserve()
        direct = direct_model(after, "mlp")  # TorchServe batching as configured (run.direct_model)
        ts_url, auth = f"{props['inference_address']}/predictions/{direct}", {"Authorization": f"Bearer {key}"}
        multipart_type, multipart_body = _multipart("data", raw)
        systems: dict[str, tuple[Callable[[int, float], dict[str, Any]], Server]] = {
            "ts-json": (lambda c, s: load.wrk(ts_url, raw, "application/json", auth, c, s), after),
            "ts-multipart": (lambda c, s: load.wrk(ts_url, multipart_body, multipart_type, auth, c, s), after),
            "ts-json-close": (lambda c, s: load.wrk(ts_url, raw, "application/json",
                                                    {**auth, "Connection": "close"}, c, s), after),
            "ours-v1": (lambda c, s: load.wrk(f"{after.url}/v1/models/mlp:predict", v1, "application/json", {}, c, s),
                        after),
            f"ours-before-v1 ({revision})": (lambda c, s: load.wrk(f"{before.url}/v1/models/mlp:predict", v1,
                                                                   "application/json", {}, c, s), before),
        }
        settling = warm_each({name: (run, Processes(server)) for name, (run, server) in systems.items()},
                             warmup_s, CONCURRENCY)

        def counted(name: str, level: int) -> dict[str, Any]:
            run, server = systems[name]
            jobs, batches = _log_counts(server)
            point = measure(lambda: run(level, seconds), Processes(server))
            jobs_after, batches_after = _log_counts(server)
            point["requests_per_batch"] = round((jobs_after - jobs) / max(batches_after - batches, 1), 2)
            return point

        points = {name: by_level[CONCURRENCY]
                  for name, by_level in interleaved([CONCURRENCY], repeats, list(systems), counted).items()}
        for name, p in points.items():
            cpu = p["cpu_ms_per_request"]
            print(f"  {name:28s} {p['rps']:7.0f} req/s  java {cpu['java']:.3f}  workers {cpu['workers']:.3f}  "
                  f"ours {cpu['ours']:.3f} ms/req  {p['requests_per_batch']} requests per batch", flush=True)
        return {"revision_before": revision, "workload": "TorchScript MLP 784-64-10, JSON-parsing handler",
                "env": BATCH_ENV, "concurrency": CONCURRENCY, "warmup_java_ms_per_request": settling,
                "systems": points}
    finally:
        for server in servers:
            server.stop()
