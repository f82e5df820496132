"""python -m kserve_torchserve: dispatch to serve (the default) or check, and exit with its code.

Three command lines arrive here:

- ``[serve] --storage_uri ... [flags]``: serve; ``serve`` may be left out;
- ``check [STORAGE_URI] [flags]``: check.py, start-up short of serving;
- ``torchserve --start --model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties``:
  the ``args`` of KServe's stock ClusterServingRuntime ``kserve-torchserve``
  (config/runtimes/kserve-torchserve.yaml in kserve/kserve), which its image's entrypoint
  runs as a shell command. It is translated to the first form, so an InferenceService
  that only swaps the image keeps working. Our own flags may follow it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from .config.properties import parse_properties
from .config.settings import Settings, build_parser, load_settings
from .errors import ConfigError, StartupError

logger = logging.getLogger("kserve_torchserve")


def _configure_logging(level: str) -> None:
    """Our lines and TorchServe's at TS_LOG_LEVEL; kserve's and uvicorn's per-request INFO lines
    (latency, access log, every gRPC call) only at DEBUG, because they cost every request."""
    python_level = {"TRACE": "DEBUG", "WARN": "WARNING"}.get(level, level)
    quiet_level = python_level if python_level == "DEBUG" else "WARNING"
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    levels = {"kserve_torchserve": python_level, "torchserve": python_level, "kserve": quiet_level,
              "kserve.trace": quiet_level, "uvicorn": quiet_level, "uvicorn.access": quiet_level}
    # uvicorn builds each access line's arguments (client address, the path re-quoted) for every
    # request whenever "uvicorn.access" has a handler (HttpToolsProtocol: access_log = hasHandlers()),
    # before logging checks the level: 2% of our CPU under load. It gets one only when its lines are written.
    silent = set() if quiet_level == "DEBUG" else {"uvicorn.access"}
    for name, log_level in levels.items():
        log = logging.getLogger(name)
        log.handlers[:] = [] if name in silent else [handler]
        log.setLevel(log_level)
        log.propagate = False


def _loop_factory() -> "asyncio.AbstractEventLoop":
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


# -- KServe's stock runtime arguments -------------------------------------------------------

@dataclass
class StockArgs:
    """TorchServe's command line, as our flags and TS_* variables (lower than the user's own)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # how each part was understood, for the INFO line
    version: bool = False  # `torchserve --version`: print it and exit


def _torchserve_parser() -> argparse.ArgumentParser:
    """TorchServe 0.12's own options (ts/arg_parser.py); whatever else follows is ours."""
    parser = argparse.ArgumentParser(prog="torchserve", add_help=False, allow_abbrev=False)
    for flag in ("--start", "--stop", "--foreground", "--no-config-snapshots", "--disable-token-auth",
                 "--enable-model-api", "--version"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("-v", dest="version", action="store_true")
    parser.add_argument("--ncs", dest="no_config_snapshots", action="store_true")
    parser.add_argument("--dt", dest="disable_token_auth", action="store_true")
    for flag in ("--model-store", "--ts-config", "--log-config", "--cpp-log-config", "--workflow-store",
                 "--plugins-path"):
        parser.add_argument(flag)
    parser.add_argument("--ppath", dest="plugins_path")
    parser.add_argument("--models", nargs="+")
    return parser


def translate_torchserve_argv(argv: Sequence[str], env: Mapping[str, str]) -> StockArgs:
    """``torchserve --start --model-store=... --ts-config=... [our flags]`` -> our flags; ConfigError when
    it cannot mean anything here."""
    from .model_store.build import KSERVE_CONFIG, KSERVE_STORE_DIR  # here: model_archiver is slow to import

    ts, ours = _torchserve_parser().parse_known_args(list(argv[1:]))
    if ts.version:
        return StockArgs([], version=True)
    if ts.stop:
        raise ConfigError("torchserve --stop has no meaning here: the server stops on SIGTERM; drop the flag")
    if any(arg.split("=")[0] == "--storage_uri" for arg in ours) and ts.model_store:
        raise ConfigError("--model-store and --storage_uri both say where the models are: give one of them")
    result = StockArgs(list(ours))
    storage: Path | None = None
    if ts.model_store:
        store = Path(ts.model_store)
        # KServe's layout: <storage>/model-store/*.mar beside <storage>/config/config.properties.
        storage = store.parent if store.name == KSERVE_STORE_DIR else store
        result.argv[:0] = ["--storage_uri", str(storage)]
        result.notes.append(f"storage {storage}")
    if ts.ts_config and "TS_CONFIG_FILE" in env:
        result.notes.append("--ts-config ignored: TS_CONFIG_FILE is set, and wins as in TorchServe")
    elif ts.ts_config:
        config = Path(ts.ts_config)
        if not config.is_file():
            raise ConfigError(f"--ts-config={ts.ts_config} is not a file: put config.properties there "
                              f"(KServe's layout: <storage>/{KSERVE_CONFIG}) or drop the flag")
        if storage is not None and config.resolve() == (storage / KSERVE_CONFIG).resolve():
            result.notes.append(f"config.properties {config} (with its model_snapshot, if any)")
        else:
            result.env["TS_CONFIG_FILE"] = str(config)
            result.notes.append(f"config.properties {config} merged as TS_CONFIG_FILE")
            if "model_snapshot" in parse_properties(config.read_text()):
                result.notes.append(f"its model_snapshot is not read (only <storage>/{KSERVE_CONFIG}'s is): "
                                    "name models with TS_LOAD_MODELS=name=file.mar,...")
    if ts.models and "TS_LOAD_MODELS" not in env:
        result.env["TS_LOAD_MODELS"] = ",".join(ts.models)
        result.notes.append(f"--models as TS_LOAD_MODELS={result.env['TS_LOAD_MODELS']}")
    if ts.disable_token_auth and "TS_DISABLE_TOKEN_AUTHORIZATION" not in env:
        result.env["TS_DISABLE_TOKEN_AUTHORIZATION"] = "true"
        result.notes.append("--disable-token-auth as TS_DISABLE_TOKEN_AUTHORIZATION=true")
    ignored = [flag for flag, on in (("--start", ts.start), ("--foreground", ts.foreground),
                                     ("--ncs", ts.no_config_snapshots), ("--log-config", ts.log_config),
                                     ("--cpp-log-config", ts.cpp_log_config), ("--plugins-path", ts.plugins_path),
                                     ("--workflow-store", ts.workflow_store)) if on]
    if ignored:
        result.notes.append(f"{', '.join(ignored)}: no effect (TorchServe runs as our child, configured by us)")
    if ts.enable_model_api:
        result.notes.append("--enable-model-api: no effect (the /models writes need --enable_model_api and a key)")
    return result


def _log_kserve_inputs(settings: Settings, stock: StockArgs | None, command: Sequence[str]) -> None:
    """Say what KServe's arguments and variables were taken to mean, once, at start-up."""
    if stock is not None:
        logger.info("KServe's TorchServe command line understood: %s -> %s; models named by their archives and "
                    "model_snapshot; http port %d, grpc port %d", " ".join(command),
                    "; ".join(stock.notes) or "defaults", settings.http_port, settings.grpc_port)
    if settings.protocol_version is not None:
        logger.info("PROTOCOL_VERSION=%s accepted: v1 and v2 over REST and v2 over gRPC are all served at once",
                    settings.protocol_version)
    if settings.service_envelope is not None:
        logger.info("TS_SERVICE_ENVELOPE=%s ignored: KServe's protocols are served natively, so TorchServe's "
                    "own KServe envelope is not used", settings.service_envelope)


def _serve_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    parser.epilog = ("Other forms: `python -m kserve_torchserve check [STORAGE_URI] [flags]` checks a model "
                     "without serving it (see its --help); `torchserve --start --model-store=DIR "
                     "--ts-config=FILE` (the arguments of KServe's stock TorchServe runtime) is understood too.")
    return parser


def serve(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    argv = list(argv)
    stock: StockArgs | None = None
    try:
        if argv[:1] == ["torchserve"]:
            stock = translate_torchserve_argv(argv, env)
            if stock.version:
                import ts.version

                print(f"TorchServe Version is {ts.version.__version__} (behind kserve-torchserve)")
                return 0
            env = {**stock.env, **env}
        settings = load_settings(stock.argv if stock else argv, env, parser_factory=_serve_parser)
    except StartupError as exc:
        print(f"kserve-torchserve: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.ts.log_level)
    _log_kserve_inputs(settings, stock, argv)
    # kserve 0.21 answers with FastAPI's ORJSONResponse, which FastAPI now warns about on
    # the first request: kserve's to change, and noise in every pod's log until then.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    from .server import serve as run_server  # imports kserve's app; after settings so --help stays fast

    try:
        with asyncio.Runner(loop_factory=_loop_factory) as runner:
            return runner.run(run_server(settings))
    except StartupError as exc:
        logger.error("start-up failed: %s", exc)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["check"]:
        from .check import main as check  # imported only when asked for: serve's start and --help stay lean

        return check(args[1:])
    return serve(args[1:] if args[:1] == ["serve"] else args)


if __name__ == "__main__":
    sys.exit(main())
