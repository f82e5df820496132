"""``python -m kserve_torchserve check [STORAGE_URI] [flags]``: start-up short of serving, for CI and initContainers.

It runs what the server's start-up runs before TorchServe starts, with the same code: the
settings and TS_* variables (``load_settings``), the download (``fetch_in_child``), artifact
detection and the model store (``build_model_store``, which probes eager models in a child),
TorchServe's configuration (``effective_properties``) and each model's resolved settings
(``model_entry``), the user's metrics.yaml, traffic splits; then it imports every model's
handler in a fresh interpreter the way TorchServe's worker will (model_store/handler_probe.py).

Output: one table of what would be served (exit 0), or one line per problem with its fix
(exit 1). Bad flags or variables exit 2, as ``serve`` does. Nothing is started, and nothing
is written outside a temporary directory. The table and the problems go to stdout; log
lines (downloads, warnings) go to stderr, so a pipeline can keep the two apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .config.metrics_yaml import merged_metrics_config, torchserve_default, user_metrics_file
from .config.model_config import ModelSpec
from .config.properties import Ports, effective_properties, model_entry
from .config.settings import Settings, build_parser, load_settings
from .errors import StartupError
from .management.traffic import startup_splits
from .model_store.artifacts import Archive
from .model_store.build import ModelStore, build_model_store, discover
from .model_store.fetch_child import fetch_in_child
from .model_store.handler_probe import probe_handler

logger = logging.getLogger("kserve_torchserve")

# TorchServe's ports are owned keys that effective_properties() overwrites; the check opens none.
_NO_PORTS = Ports(0, 0, 0, 0, 0)
HEADERS = ("MODEL", "VERSION", "HANDLER", "WORKERS (MIN/MAX)", "BATCH SIZE", "MAX BATCH DELAY", "RESPONSE TIMEOUT")


@dataclass(frozen=True)
class Row:
    """One model version as it would be served, with the settings TorchServe would register it with."""

    name: str
    version: str
    handler: str
    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay_ms: int
    response_timeout_s: int

    @staticmethod
    def of(spec: ModelSpec, entry: Mapping[str, Any]) -> "Row":
        return Row(spec.name, spec.version, spec.handler or "?", int(entry["minWorkers"]), int(entry["maxWorkers"]),
                   int(entry["batchSize"]), int(entry["maxBatchDelay"]), int(entry["responseTimeout"]))

    def cells(self) -> tuple[str, ...]:
        return (self.name, self.version, self.handler, f"{self.min_workers}/{self.max_workers}", str(self.batch_size),
                f"{self.max_batch_delay_ms} ms", f"{self.response_timeout_s} s")


def render_table(rows: Sequence[Row]) -> str:
    """Aligned columns, one row per model version; a line saying so when there is none."""
    if not rows:
        return "no models: they would come at run time (POST /models or the v2 repository extension)\n"
    table = [HEADERS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() + "\n" for line in table)


def render_problems(problems: Sequence[str]) -> str:
    """One line per problem: a message that spans lines (a traceback, a Java error) is joined."""
    return "".join(f"problem: {' '.join(p.split())}\n" for p in problems)


def resolve(settings: Settings, store: ModelStore, storage: Path, work: Path) -> tuple[list[Row], list[str]]:
    """Each model's settings as the server would register it, and the configuration problems."""
    user_text = "".join(p.read_text() + "\n" for p in (store.user_properties, settings.ts.config_file) if p)
    try:
        props = effective_properties(settings.ts, _NO_PORTS, str(store.path), user_text)
    except StartupError as exc:
        return [], [str(exc)]
    timeout = int(props["default_response_timeout"])
    rows = [Row.of(spec, model_entry(spec, settings.ts, timeout)) for spec in store.specs]
    problems = startup_splits(store.specs, settings.model_api.traffic)[1]
    user_metrics = user_metrics_file(storage)
    if user_metrics is not None and "metrics_config" not in props:
        try:
            merged_metrics_config(torchserve_default(), user_metrics, work / "metrics.yaml")
        except Exception as exc:  # a YAML syntax error too: the server would stop on it
            problems.append(f"{user_metrics}: {exc}")
    return rows, problems


def _archives_in(storage: Path) -> list[tuple[str, Path]]:
    """The archives in storage when the model store could not be built: their handlers are still worth checking."""
    try:
        found = discover(storage)
    except StartupError:
        return []
    return [(f"model {c.name} v{c.version}", c.source.path) for c in found if isinstance(c.source, Archive)]


async def inspect(settings: Settings, work: Path) -> tuple[list[Row], list[str]]:
    """What would be served and every problem found on the way, in start-up's order."""
    try:
        storage = await fetch_in_child(settings.storage_uri, work / "download", settings.max_unpacked_bytes,
                                       settings.ts.log_level)
    except StartupError as exc:
        return [], [str(exc)]
    rows: list[Row] = []
    problems: list[str] = []
    try:
        store = await asyncio.to_thread(build_model_store, storage, work / "model-store", settings.model_name,
                                        settings.ts.load_models, settings.allow_no_models)
    except StartupError as exc:
        problems.append(str(exc))
        targets = _archives_in(storage)
    else:
        rows, problems = resolve(settings, store, storage, work)
        targets = [(f"model {s.name} v{s.version}", store.path / s.mar_name) for s in store.specs]
    found = await asyncio.gather(*(probe_handler(archive, work / "handlers" / str(i))
                                   for i, (_, archive) in enumerate(targets)))
    problems += [f"{label} ({archive.name}): {problem}"
                 for (label, archive), problem in zip(targets, found) if problem is not None]
    return rows, problems


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Children (the download, model-archiver) write log lines to file descriptor 1: send them to stderr
    while the check runs, so stdout holds only the answer."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def build_check_parser() -> argparse.ArgumentParser:
    """serve's parser (the same flags mean the same), introduced as the check."""
    parser = build_parser()
    parser.prog = "python -m kserve_torchserve check"
    parser.usage = "%(prog)s [STORAGE_URI] [flags]"
    parser.description = (
        "Do everything start-up does short of serving (download, model detection, model store, eager-model and "
        "handler checks in child processes, config.properties and TS_* validation), then print what would be "
        "served (exit 0) or one line per problem with its fix (exit 1). Bad flags or variables exit 2. "
        "STORAGE_URI defaults to --storage_uri, $STORAGE_URI, else /mnt/models."
    )
    return parser


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    args = list(argv)
    if args and not args[0].startswith("-"):  # the storage URI, positional
        args = ["--storage_uri", args[0], *args[1:]]
    try:
        settings = load_settings(args, env, parser_factory=build_check_parser)
    except StartupError as exc:
        print(f"kserve-torchserve check: {exc}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel({"TRACE": "DEBUG", "WARN": "WARNING"}.get(settings.ts.log_level, settings.ts.log_level))
    logger.propagate = False
    with tempfile.TemporaryDirectory(prefix="kserve-torchserve-check-") as tmp, _stdout_to_stderr():
        rows, problems = asyncio.run(inspect(settings, Path(tmp)))
    sys.stdout.write(render_problems(problems) if problems else render_table(rows))
    sys.stdout.flush()
    return 1 if problems else 0
