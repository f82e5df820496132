"""Soak (issue #16 row 19): one server, its top speed, then N minutes of mixed traffic at 70% of it.

    .venv/bin/python -m tests.soak.soak --minutes 10

Not part of the test suite. On loopback only:
1. starts one server with the digits example (built into examples/digits/build when missing,
   as scripts/serve-example.sh does);
2. measures the top throughput of good requests (v1, v2 REST and gRPC in turn, a closed loop
   of ``--concurrency`` callers, ``--probe_seconds``);
3. sends ``--load`` (70%) of that rate for ``--minutes``, an open loop (requests start on a
   schedule, whatever the answers do), 89% good and 11% bad of eleven kinds (traffic.py),
   while sampling RSS and open fds of every process (ours, TorchServe's Java, each worker).
   The client keeps at most ``--concurrency`` REST and as many gRPC requests in flight, and
   opens every connection it may need before the soak (``traffic.Client`` says why).
Checks: no unexpected status (every kind has one expected answer; a timeout is unexpected);
the schedule was kept (no request shed because too many were in flight); RSS and fds of
every process flat after the warm-up (``--max_growth``, 5%, median of the last third of the
samples against the first third), and the same processes throughout; p99 latency stable
(the last third of the soak's requests within ``--p99_factor`` x the first third's, plus
``--p99_slack_ms`` for timer noise on a shared machine). Writes the result as JSON
(``benchmarks/results/<date>-soak-<minutes>m.json``) and exits 1 when a check failed, 2 when
the whole run overran its hard deadline (then everything it started is killed).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, Server, digits_example
from tests.soak.processes import JvmHeap, Sampler, flatness
from tests.soak.traffic import Client, Kind, chooser, kinds

MODEL = "digits"
MAX_IN_FLIGHT = 512  # past this the server (or this client) cannot keep up: the rest is shed, a failure


def digits_store() -> tuple[Path, list[float]]:
    """The example's model store and one held-out instance, built as scripts/serve-example.sh builds them."""
    build = digits_example()
    instance = json.loads((build / "heldout.json").read_text())["instances"][0]
    return build / "model-store", [float(v) for v in instance]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def probe(client: Client, good: list[Kind], seconds: float, concurrency: int) -> dict[str, Any]:
    """Top rate of good requests: ``concurrency`` callers, each sending the next as soon as one answers."""
    done: list[float] = []
    bad: Counter[str] = Counter()

    async def caller(index: int, end: float, record: bool) -> None:
        turn = index
        while time.monotonic() < end:
            kind = good[turn % len(good)]
            turn += 1
            outcome, took = await client.send(kind)
            if record:
                done.append(took)
                if outcome != kind.expected:
                    bad[f"{kind.name}: {outcome}"] += 1

    warm = time.monotonic() + min(3.0, seconds / 3)
    await asyncio.gather(*(caller(i, warm, False) for i in range(concurrency)))
    started = time.monotonic()
    await asyncio.gather(*(caller(i, started + seconds, True) for i in range(concurrency)))
    took = time.monotonic() - started
    return {"rps": len(done) / took, "requests": len(done), "p50_ms": 1000 * percentile(done, 0.5),
            "p99_ms": 1000 * percentile(done, 0.99), "unexpected": dict(bad)}


async def soak(client: Client, all_kinds: list[Kind], rate: float, seconds: float, sampler: Sampler,
               sample_every_s: float, seed: int) -> dict[str, Any]:
    """``rate`` requests a second for ``seconds``, on a fixed schedule; process samples on the side."""
    draw = chooser(all_kinds, seed)
    records: list[tuple[float, str, str, float]] = []  # (start, kind, outcome, seconds)
    tasks: set[asyncio.Task[None]] = set()
    shed = 0
    lag: list[float] = []

    async def one(kind: Kind, at: float) -> None:
        outcome, took = await client.send(kind)
        records.append((at, kind.name, outcome, took))

    async def sampling(started: float, end: float) -> None:
        while time.monotonic() < end:
            sampler.sample(time.monotonic() - started)
            await asyncio.sleep(sample_every_s)
        sampler.sample(time.monotonic() - started)

    started = time.monotonic()
    end = started + seconds
    monitor = asyncio.ensure_future(sampling(started, end))
    heap = JvmHeap(sampler.java_pid, sample_every_s, started)
    sent = 0
    while (due := started + sent / rate) < end:
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        lag.append(time.monotonic() - due)
        kind = draw()
        sent += 1
        if len(tasks) >= MAX_IN_FLIGHT:
            shed += 1
            continue
        task = asyncio.ensure_future(one(kind, due - started))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    await monitor
    return {"records": records, "shed": shed, "scheduled": sent, "seconds": time.monotonic() - started,
            "schedule_lag_p99_ms": 1000 * percentile(lag, 0.99), "java_heap": heap.stop()}


def evaluate(run: dict[str, Any], all_kinds: list[Kind], seconds: float, args: argparse.Namespace,
             processes: dict[str, Any]) -> dict[str, Any]:
    expected = {k.name: k.expected for k in all_kinds}
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for _, name, outcome, _ in run["records"]:
        by_kind[name][outcome] += 1
    unexpected = {name: {o: n for o, n in outcomes.items() if o != expected[name]}
                  for name, outcomes in by_kind.items()}
    unexpected = {name: bad for name, bad in unexpected.items() if bad}
    thirds = [[took for at, _, _, took in run["records"] if i * seconds / 3 <= at < (i + 1) * seconds / 3]
              for i in range(3)]
    p99 = [1000 * percentile(t, 0.99) for t in thirds]
    p99_limit = p99[0] * args.p99_factor + args.p99_slack_ms
    checks = {
        "no unexpected status": {"ok": not unexpected, "detail": unexpected},
        "schedule kept": {"ok": run["shed"] == 0, "detail": f"{run['shed']} requests shed at {MAX_IN_FLIGHT} in flight"},
        "processes flat": {"ok": processes["ok"], "detail": processes["problems"]},
        "p99 stable": {"ok": p99[2] <= p99_limit,
                       "detail": f"p99 by third {[round(p, 2) for p in p99]} ms; the last may be at most "
                                 f"{p99_limit:.2f} ms"},
    }
    latencies = [took for *_, took in run["records"]]
    return {
        "checks": checks,
        "passed": all(c["ok"] for c in checks.values()),
        "requests": len(run["records"]),
        "achieved_rps": len(run["records"]) / run["seconds"],
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "p99_ms_by_third": p99,
        "schedule_lag_p99_ms": run["schedule_lag_p99_ms"],
        "by_kind": {name: dict(outcomes) for name, outcomes in sorted(by_kind.items())},
        "java_heap": run["java_heap"],  # jstat -gc, where installed (processes.JvmHeap says why)
        "processes": processes,
    }


async def drive(srv: Server, instance: list[float], args: argparse.Namespace) -> dict[str, Any]:
    all_kinds = kinds(MODEL, instance)
    client = Client(srv.http_port, srv.grpc_port, args.concurrency)
    good = [k for k in all_kinds if k.good]
    try:
        top = await probe(client, good, args.probe_seconds, args.concurrency)
        await client.prewarm(good)
        rate = args.load * top["rps"]
        seconds = 60 * args.minutes
        print(f"[soak] top rate {top['rps']:.0f}/s; soaking at {rate:.0f}/s for {seconds:.0f} s", flush=True)
        sampler = Sampler(srv.proc.pid, srv.java_pid())
        every = min(5.0, max(0.5, seconds / 60))
        run = await soak(client, all_kinds, rate, seconds, sampler, every, args.seed)
    finally:
        await client.close()
    warmup = max(args.warmup_min_s, args.warmup_fraction * seconds)
    result = evaluate(run, all_kinds, seconds, args, flatness(sampler.samples, warmup, args.max_growth))
    return {"probe": top, "rate": rate, "warmup_s": warmup, "sample_every_s": every, **result}


def watchdog(deadline_s: float, srv_holder: list[Server]) -> threading.Timer:
    """Past the hard deadline: kill what we started and exit 2, whatever the soak is doing."""
    def expire() -> None:
        print(f"[soak] hard deadline of {deadline_s:.0f} s passed: stopping", file=sys.stderr, flush=True)
        for srv in srv_holder:
            srv.stop()
        os._exit(2)

    timer = threading.Timer(deadline_s, expire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.7, help="fraction of the top rate to soak at")
    parser.add_argument("--probe_seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup_fraction", type=float, default=0.2)
    parser.add_argument("--warmup_min_s", type=float, default=20.0)
    parser.add_argument("--max_growth", type=float, default=0.05)
    parser.add_argument("--p99_factor", type=float, default=1.5)
    parser.add_argument("--p99_slack_ms", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    # Start-up (a build of the example, TorchServe) + probe + soak + evaluation, with room to spare.
    deadline_s = 600 + 3 * args.probe_seconds + 60 * args.minutes * 1.2
    store, instance = digits_store()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    holder: list[Server] = []
    timer = watchdog(deadline_s, holder)
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        srv = Server(store, tmp, model_name=MODEL)
        holder.append(srv)
        srv.wait_ready()
        result = asyncio.run(drive(srv, instance, args))
        # What the server logged (at INFO a client's mistake logs at most one line): kept, as tmp goes.
        lines = srv.log().splitlines()
        result["server_log"] = {"lines": len(lines), "last": lines[-40:]}
    finally:
        for srv in holder:
            srv.stop()
        timer.cancel()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"started": started.isoformat(timespec="seconds"), "minutes": args.minutes, "load": args.load,
              "cpus": os.cpu_count(), "args": {k: str(v) for k, v in vars(args).items()}, **result}
    out = args.out or ROOT / "benchmarks" / "results" / f"{started:%Y-%m-%d}-soak-{args.minutes:g}m.json"
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for name, check in result["checks"].items():
        print(f"[soak] {'ok  ' if check['ok'] else 'FAIL'} {name}: {check['detail']}")
    print(f"[soak] {result['requests']} requests at {result['achieved_rps']:.0f}/s, p99 {result['p99_ms']:.1f} ms; "
          f"written to {out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
