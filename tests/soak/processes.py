"""RSS and open file descriptors of every process of one server: ours, TorchServe's Java, each worker."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil


def role(proc: psutil.Process, server_pid: int, java_pid: int) -> str:
    if proc.pid == server_pid:
        return "server"
    if proc.pid == java_pid:
        return "java"
    try:
        if any("model_service_worker" in part for part in proc.cmdline()):
            return "worker"
        return str(proc.name())  # e.g. the launcher's watcher of our PID
    except psutil.Error:
        return "gone"


@dataclass
class Sampler:
    server_pid: int
    java_pid: int
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"t": s, "procs": {pid: {...}}}

    def sample(self, t: float) -> None:
        procs: dict[int, dict[str, Any]] = {}
        try:
            server = psutil.Process(self.server_pid)
            family = [server, *server.children(recursive=True)]
        except psutil.Error:
            family = []
        for proc in family:
            try:
                with proc.oneshot():
                    procs[proc.pid] = {"role": role(proc, self.server_pid, self.java_pid),
                                       "rss": proc.memory_info().rss, "fds": proc.num_fds()}
            except psutil.Error:
                continue  # gone between listing and reading: shows as a changed process set
        self.samples.append({"t": t, "procs": procs})


def _thirds(values: list[float]) -> tuple[list[float], list[float]]:
    third = max(1, len(values) // 3)
    return values[:third], values[-third:]


def flatness(samples: list[dict[str, Any]], warmup_s: float, max_growth: float) -> dict[str, Any]:
    """Per process, after the warm-up: median RSS and median fds of the last third against the first
    third (medians: one sample caught mid-allocation or mid-accept does not decide). Also whether the
    set of processes stayed the same (a worker that died and came back is a failure of its own)."""
    after = [s for s in samples if s["t"] >= warmup_s]
    result: dict[str, Any] = {"samples": len(after), "processes": {}, "ok": True, "problems": []}
    if len(after) < 3:
        result["ok"] = False
        result["problems"].append(f"only {len(after)} samples after the warm-up: run longer")
        return result
    pid_sets = {tuple(sorted(s["procs"])) for s in after}
    if len(pid_sets) != 1:
        result["ok"] = False
        result["problems"].append(f"the processes changed during the soak: {sorted(pid_sets)}")
    for pid in sorted(set().union(*(s["procs"] for s in after))):
        series = [s["procs"][pid] for s in after if pid in s["procs"]]
        entry: dict[str, Any] = {"role": series[0]["role"],
                                 "series": [[round(s["t"], 1), s["procs"][pid]["rss"], s["procs"][pid]["fds"]]
                                            for s in samples if pid in s["procs"]]}
        for metric in ("rss", "fds"):
            first, last = _thirds([float(x[metric]) for x in series])
            start, end = statistics.median(first), statistics.median(last)
            growth = (end - start) / start if start else 0.0
            entry[metric] = {"first_third_median": start, "last_third_median": end, "growth": round(growth, 4),
                             "max": max(x[metric] for x in series)}
            if growth >= max_growth:
                result["ok"] = False
                result["problems"].append(f"{entry['role']} pid {pid}: {metric} grew {100 * growth:.1f}% "
                                          f"({start:.0f} -> {end:.0f})")
        result["processes"][str(pid)] = entry
    return result



class JvmHeap:
    """``jstat -gc`` on TorchServe's Java every interval, where the JDK's jstat is installed (one jstat
    process for the whole run: starting a JVM per sample would cost more CPU than the soak can spare).

    Why: with no ``-Xmx`` the JVM may use a quarter of the machine's memory for its heap and grows it
    for a while under load, so Java's RSS can grow without a leak. The heap it has committed and what
    its old generation holds tell the two apart: a leak grows the old generation's use, GC after GC.
    """

    def __init__(self, pid: int, interval_s: float, started: float) -> None:
        self.rows: list[dict[str, float]] = []
        self._started = started
        jstat = shutil.which("jstat")
        self._proc = None if jstat is None else subprocess.Popen(
            [jstat, "-gc", str(pid), str(max(1, int(interval_s * 1000)))],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self._proc is not None:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        header: list[str] = []
        for line in self._proc.stdout:
            fields = line.split()
            if fields and fields[0] == "S0C":
                header = fields
                continue
            try:
                values = dict(zip(header, (float(f) for f in fields)))
            except ValueError:
                continue
            if values:
                self.rows.append({
                    "t": round(time.monotonic() - self._started, 1),
                    "committed_mb": sum(values.get(k, 0) for k in ("S0C", "S1C", "EC", "OC")) / 1024,
                    "used_mb": sum(values.get(k, 0) for k in ("S0U", "S1U", "EU", "OU")) / 1024,
                    "old_used_mb": values.get("OU", 0) / 1024,
                    "gcs": sum(values.get(k, 0) for k in ("YGC", "FGC", "CGC")),
                })

    def stop(self) -> list[dict[str, float]]:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        return self.rows
