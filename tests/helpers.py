"""Run the real server (python -m kserve_torchserve) as a child process, and clean up after it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import psutil
from model_archiver.model_archiver_config import ModelArchiverConfig
from model_archiver.model_packaging import generate_model_archive

from kserve_torchserve.backend.ports import free_ports

ROOT = Path(__file__).resolve().parents[1]
DIGITS_BUILD = ROOT / "examples" / "digits" / "build"


def digits_example() -> Path:
    """examples/digits/build, (re)built when missing or older than its handler or build script:
    scripts/serve-example.sh's rule, so the soak and the benchmarks never serve a stale archive."""
    mar = DIGITS_BUILD / "model-store" / "digits.mar"
    sources = (ROOT / "examples" / "digits" / "handler.py", ROOT / "scripts" / "build_digits_example.py")
    if not mar.is_file() or any(source.stat().st_mtime > mar.stat().st_mtime for source in sources):
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_digits_example.py"), "--out", str(DIGITS_BUILD)],
                       check=True, capture_output=True)
    return DIGITS_BUILD
ASSETS = Path(__file__).resolve().parent / "assets"


def build_mar(handler: Path, name: str, store: Path, serialized: Path | None = None, version: str = "1.0",
              archive_format: str = "default") -> Path:
    """A TorchServe archive in ``store``: .mar, or archive_format "tgz" / "no-archive"."""
    store.mkdir(parents=True, exist_ok=True)
    generate_model_archive(
        ModelArchiverConfig(
            model_name=name, version=version, handler=str(handler),
            serialized_file=str(serialized) if serialized else None, export_path=str(store), force=True,
            archive_format=archive_format,  # type: ignore[arg-type]
        )
    )
    return store / (name + {"default": ".mar", "tgz": ".tar.gz", "no-archive": ""}[archive_format])


def http(method: str, url: str, body: Any = None, timeout: float = 60, raw: bytes | None = None,
         headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode("utf-8", "replace")


def processes_under(path: Path) -> list[psutil.Process]:
    """Every live process whose command line mentions ``path`` (TorchServe's java and workers do)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(str(path) in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


class Server:
    """One real server: its own ports, work dir and TMPDIR; stopped by PID in stop()."""

    def __init__(self, storage: Path | str, tmp: Path, model_name: str | None = None,
                 env: Mapping[str, str] | None = None, args: Sequence[str] = ()) -> None:
        self.http_port, self.grpc_port = free_ports(2)
        self.work_dir = tmp / "work"
        self.log_path = tmp / "server.log"
        command = [sys.executable, "-m", "kserve_torchserve", "--storage_uri", str(storage),
                   "--http_port", str(self.http_port), "--grpc_port", str(self.grpc_port),
                   "--work_dir", str(self.work_dir), *args]
        if model_name:
            command += ["--model_name", model_name]
        (tmp / "tmp").mkdir(exist_ok=True)
        child_env = {**os.environ, "TMPDIR": str(tmp / "tmp"), **(env or {})}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=child_env,
                                     start_new_session=True, cwd=str(tmp))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if http("GET", f"{self.url}/v2/health/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log()[-4000:]}")

    def torchserve(self, api: str = "inference") -> tuple[dict[str, str], str]:
        """TorchServe's properties as this server wrote them (addresses, ports) and its key for ``api``,
        for calling the same TorchServe directly."""
        from kserve_torchserve.config.properties import parse_properties

        props = parse_properties((self.work_dir / "config.properties").read_text())
        return props, str(json.loads((self.work_dir / "key_file.json").read_text())[api]["key"])

    def java_pid(self) -> int:
        return int((self.work_dir / "tmp" / ".model_server.pid").read_text().strip())

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, then KILL whatever is left (ours and TorchServe's) by PID."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
        finally:
            for leftover in processes_under(self.work_dir):
                try:
                    leftover.kill()
                except psutil.Error:
                    pass
            self._log.close()


# Prometheus text format: what each metric type's samples may be named (name plus suffix).
_SUFFIXES = {"counter": ("",), "gauge": ("",), "untyped": ("",), "histogram": ("_bucket", "_count", "_sum"),
             "summary": ("", "_count", "_sum")}


def undeclared(text: str) -> list[str]:
    """Sample lines not named as the # TYPE line above them declares (name plus its type's suffixes)."""
    problems, declared = [], None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            declared = (name, kind)
        elif line and not line.startswith("#"):
            sample = re.match(r"[^{\s]+", line).group(0)  # type: ignore[union-attr]
            if declared is None or sample not in {declared[0] + s for s in _SUFFIXES[declared[1]]}:
                problems.append(line)
    return problems


@contextlib.contextmanager
def running(srv: "Server", timeout: float = 180) -> Iterator["Server"]:
    """``srv`` once ready, stopped (by PID, with everything it started) however the block ends."""
    try:
        srv.wait_ready(timeout=timeout)
        yield srv
    finally:
        srv.stop()
