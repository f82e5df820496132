"""The TorchServe child process: start it in its own process group, forward its log, stop it.

Our launcher (``launcher.py``, around TorchServe's ``ts.model_server --foreground``) starts
the Java frontend and waits for it; Java starts the Python workers. All of them share the
process group we create. Stopping is: TERM the launcher (it stops the workers, then the
JVM, and says how in one line), wait, KILL the group if anything is left. The launcher
exits as Java did, so an exit is reported as it happened (``describe_exit``).
Each instance gets its own TMPDIR because TorchServe keeps a pid file there and
refuses to start a second instance beside it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..config.cpus import torch_thread_env
from . import launcher

logger = logging.getLogger(__name__)
ts_logger = logging.getLogger("torchserve")

_GROUP_POLL_S = 0.02
_KILL_WAIT_S = 10.0
_LAUNCHER_MARGIN_S = 2.0  # past the grace the launcher itself gives the workers
# Lines kept for error reports; only those from the last seconds before an exit are reported:
# older ones were forwarded to our log when they were written, and belong to other events.
DYING_WORDS_S = 2.0


def describe_exit(code: int | None) -> str:
    """A process's exit as a person reads it: "exit code 1", "killed by SIGKILL (signal 9)"."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by {name} (signal {-code})"
    return f"exit code {code}"


@dataclass(frozen=True)
class Layout:
    """Where one TorchServe instance keeps its files; ``root`` is its working directory."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.properties"

    @property
    def log_config(self) -> Path:
        return self.root / "log4j2.xml"

    @property
    def model_store(self) -> Path:
        return self.root / "model-store"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def key_file(self) -> Path:
        return self.root / "key_file.json"  # TorchServe writes it into its working directory

    @property
    def pid_file(self) -> Path:
        return self.tmp_dir / ".model_server.pid"  # holds the Java frontend's pid

    def create(self) -> None:
        for path in (self.root, self.model_store, self.log_dir, self.tmp_dir):
            path.mkdir(parents=True, exist_ok=True)


# Put first on the PYTHONPATH of TorchServe's processes: its sitecustomize makes our request
# envelope importable where TorchServe's workers look for envelopes.
WORKER_SITE = Path(__file__).with_name("worker_site")


def child_env(
    layout: Layout, base: Mapping[str, str], torch_threads: int | None = None, grace_s: float = 30.0,
    envelope: bool = True,
) -> dict[str, str]:
    env = dict(base)
    if envelope:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(WORKER_SITE), env.get("PYTHONPATH", "")) if p)
    env[launcher.GRACE_ENV] = str(grace_s)  # for the launcher's own clean-up
    env[launcher.PARENT_ENV] = str(os.getpid())  # so it can tell it was orphaned, also when we are PID 1
    if torch_threads is not None:
        env.update(torch_thread_env(torch_threads, env))  # torch threads and how they wait (see cpus.py)
    # The launcher would read TS_CONFIG_FILE instead of our config.properties.
    env.pop("TS_CONFIG_FILE", None)
    env.update(
        {
            "TMPDIR": str(layout.tmp_dir),
            "TEMP": str(layout.tmp_dir),  # the launcher passes it to Java as java.io.tmpdir
            "LOG_LOCATION": str(layout.log_dir),
            "METRICS_LOCATION": str(layout.log_dir),
        }
    )
    return env


class TorchServeProcess:
    def __init__(
        self, layout: Layout, env: Mapping[str, str] | None = None, tail_lines: int = 60,
        torch_threads: int | None = None, grace_s: float = 30.0, envelope: bool = True,
    ) -> None:
        self.layout = layout
        self._env = child_env(layout, os.environ if env is None else env, torch_threads, grace_s, envelope)
        self._tail: collections.deque[tuple[float, str]] = collections.deque(maxlen=tail_lines)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.exited_at: float | None = None  # time.monotonic() when the launcher's exit was seen
        self.on_line: Callable[[str], None] | None = None  # sees every line TorchServe writes

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    def last_lines(self, within_s: float | None = None) -> str:
        """TorchServe's last lines; ``within_s``: only those written that long before the exit
        (or now), so that an error report does not replay old, unrelated tracebacks."""
        end = self.exited_at if self.exited_at is not None else time.monotonic()
        lines = [text for at, text in self._tail if within_s is None or at >= end - within_s]
        if lines:
            return "\n".join(lines)
        return "(no output)" if within_s is None else f"(no output in the {within_s:.0f}s before)"

    async def start(self) -> None:
        self.layout.create()
        self.layout.pid_file.unlink(missing_ok=True)  # a stale one from a killed instance blocks start
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", launcher.__name__, "--start", "--foreground",
            "--ts-config", str(self.layout.config_file),
            *(("--log-config", str(self.layout.log_config)) if self.layout.log_config.is_file() else ()),
            "--model-store", str(self.layout.model_store),
            "--ncs",  # no config snapshots: our config.properties is the only source
            cwd=str(self.layout.root),
            env=self._env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() reaches Java and workers too
        )
        logger.info("started TorchServe (launcher pid %d, group %d)", self._proc.pid, self._proc.pid)
        self._reader = asyncio.create_task(self._forward_output(self._proc))

    async def _forward_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            self._tail.append((time.monotonic(), text))
            if self.on_line is not None:
                self.on_line(text)
            ts_logger.info("%s", text)

    async def wait(self) -> int:
        """Wait for the launcher to exit (it exits when Java does) and the log to drain."""
        assert self._proc is not None, "not started"
        code = await self._proc.wait()
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        if self._reader is not None:
            await self._reader
        return code

    def _group_alive(self) -> bool:
        """A live process in the group. Zombies do not count: a killed JVM's parent (the launcher) is
        gone, so init reaps it, in its own time (a second and more, seen in containers)."""
        if self._proc is None:
            return False
        try:
            os.killpg(self._proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return launcher.group_members(self._proc.pid, exclude=None) != []

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # already gone

    async def _group_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._group_alive():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(_GROUP_POLL_S)
        return True

    async def kill_leftovers(self) -> None:
        """After an exit we did not ask for: nothing of that TorchServe may outlive it (the launcher
        stops the workers of a JVM that died; this covers a launcher that was killed itself)."""
        if self._proc is None or not self._group_alive():
            return
        logger.warning("processes of the TorchServe that exited are still running (group %d); killing them",
                       self._proc.pid)
        self._signal_group(signal.SIGKILL)
        if not await self._group_gone(_KILL_WAIT_S):
            logger.error("processes of TorchServe's group %d survive SIGKILL", self._proc.pid)

    async def stop(self, grace_s: float) -> None:
        """TERM the launcher (it stops workers and JVM within ``grace_s``), then KILL what is left."""
        if self._proc is None:
            return
        started = time.monotonic()
        if self._proc.returncode is None:
            try:
                self._proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), grace_s + _LAUNCHER_MARGIN_S)
        except asyncio.TimeoutError:
            pass
        if self._proc.returncode is None or not await self._group_gone(_LAUNCHER_MARGIN_S):
            logger.warning("TorchServe did not stop within %.0fs; killing its process group", grace_s)
            self._signal_group(signal.SIGKILL)
        await self.wait()
        if not await self._group_gone(_KILL_WAIT_S):  # KILL is not instant; orphans must not outlive us
            logger.error("processes of TorchServe's group %d survive SIGKILL", self._proc.pid)
        logger.info("TorchServe stopped in %.1fs (launcher %s)", time.monotonic() - started,
                    describe_exit(self._proc.returncode))
