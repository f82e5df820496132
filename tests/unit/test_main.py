"""__main__: the dispatch, KServe's stock TorchServe argv translated, and KServe's injected variables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest

from kserve_torchserve.__main__ import _log_kserve_inputs, main, translate_torchserve_argv
from kserve_torchserve.config.settings import load_settings
from kserve_torchserve.errors import ConfigError


def _kserve_layout(root: Path) -> Path:
    """What KServe's storage initializer leaves at /mnt/models for its TorchServe runtime."""
    (root / "config").mkdir(parents=True)
    (root / "model-store").mkdir()
    (root / "config" / "config.properties").write_text("job_queue_size=10\n")
    return root


def _stock(root: Path) -> list[str]:
    """config/runtimes/kserve-torchserve.yaml's args, with /mnt/models at ``root``."""
    return ["torchserve", "--start", f"--model-store={root}/model-store", f"--ts-config={root}/config/config.properties"]


def test_the_stock_argv_serves_the_directory_holding_model_store(tmp_path: Path) -> None:
    root = _kserve_layout(tmp_path / "models")
    stock = translate_torchserve_argv(_stock(root), {})
    assert stock.argv == ["--storage_uri", str(root)]
    assert stock.env == {}  # the builder reads <storage>/config/config.properties itself, model_snapshot and all
    settings = load_settings(stock.argv, env={})
    assert (settings.storage_uri, settings.http_port, settings.grpc_port) == (str(root), 8080, 8081)
    assert settings.model_name is None and settings.ts.config_file is None
    assert any("--start: no effect" in note for note in stock.notes)


def test_our_flags_may_follow_the_stock_argv(tmp_path: Path) -> None:
    root = _kserve_layout(tmp_path / "models")
    stock = translate_torchserve_argv([*_stock(root), "--http_port", "9000", "--foreground", "--grpc_port=9001"], {})
    settings = load_settings(stock.argv, env={})
    assert (settings.storage_uri, settings.http_port, settings.grpc_port) == (str(root), 9000, 9001)


def test_a_ts_config_elsewhere_is_merged_like_ts_config_file(tmp_path: Path) -> None:
    root = _kserve_layout(tmp_path / "models")
    other = tmp_path / "other.properties"
    other.write_text("model_snapshot={}\n")
    stock = translate_torchserve_argv(["torchserve", "--start", f"--model-store={root}/model-store",
                                       f"--ts-config={other}"], {})
    assert stock.env == {"TS_CONFIG_FILE": str(other)}
    assert any("model_snapshot is not read" in note for note in stock.notes)
    assert load_settings(stock.argv, env=stock.env).ts.config_file == other
    # TorchServe's own rule: TS_CONFIG_FILE beats --ts-config.
    assert translate_torchserve_argv(_stock(root), {"TS_CONFIG_FILE": str(other)}).env == {}


def test_a_model_store_not_named_model_store_is_the_storage(tmp_path: Path) -> None:
    assert translate_torchserve_argv(["torchserve", "--start", f"--model-store={tmp_path}"], {}).argv == [
        "--storage_uri", str(tmp_path)]


def test_models_and_token_flags_become_their_variables(tmp_path: Path) -> None:
    root = _kserve_layout(tmp_path / "models")
    stock = translate_torchserve_argv([*_stock(root), "--models", "a.mar", "b=b.mar", "--dt"], {})
    assert stock.env == {"TS_LOAD_MODELS": "a.mar,b=b.mar", "TS_DISABLE_TOKEN_AUTHORIZATION": "true"}
    assert translate_torchserve_argv([*_stock(root), "--models", "all"], {"TS_LOAD_MODELS": "x.mar"}).env == {}


@pytest.mark.parametrize("argv, message", [
    (["torchserve", "--stop"], "torchserve --stop has no meaning here"),
    (["torchserve", "--start", "--ts-config=/nonexistent/config.properties"], "--ts-config=/nonexistent"),
    (["torchserve", "--model-store=/m/model-store", "--storage_uri", "/x"], "give one of them"),
])
def test_what_cannot_mean_anything_here_is_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("-", r"\-")) as info:
        translate_torchserve_argv(argv, {})
    assert "\n" not in str(info.value)


def test_main_dispatches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["torchserve", "--version"]) == 0
    assert "TorchServe Version is 0.12" in capsys.readouterr().out
    assert main(["torchserve", "--stop"]) == 2
    assert "--stop" in capsys.readouterr().err
    assert main(["serve", "--max_restarts", "-1"]) == 2  # `serve` is today's form with a name
    assert "--max_restarts=-1 is invalid" in capsys.readouterr().err
    assert main(["check", "--max_restarts", "-1"]) == 2  # the check parses the same flags the same way
    assert "kserve-torchserve check: --max_restarts=-1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "check [STORAGE_URI]" in capsys.readouterr().out


# -- PROTOCOL_VERSION and TS_SERVICE_ENVELOPE, as KServe's controller sets them ----------------

@pytest.mark.parametrize("value", ["v1", "v2", "grpc-v2", " V2 "])
def test_every_protocol_kserve_sets_is_accepted(value: str) -> None:
    assert load_settings([], env={"PROTOCOL_VERSION": value}).protocol_version == value.strip().lower()


def test_an_unknown_protocol_is_one_line() -> None:
    with pytest.raises(ConfigError, match="PROTOCOL_VERSION='grpc-v1' is invalid: expected one of v1, v2, grpc-v2"):
        load_settings([], env={"PROTOCOL_VERSION": "grpc-v1"})
    with pytest.raises(ConfigError, match="needs gRPC"):
        load_settings(["--enable_grpc", "false"], env={"PROTOCOL_VERSION": "grpc-v2"})


@pytest.mark.parametrize("value", ["kserve", "kservev2", ""])
def test_the_service_envelope_is_accepted_and_never_reaches_torchserve(value: str) -> None:
    settings = load_settings([], env={"TS_SERVICE_ENVELOPE": value, "TS_TOKEN_EXPIRATION_MIN": "60"})
    assert settings.service_envelope == (value or None)
    assert settings.ts.passthrough == (("token_expiration_min", "60"),)  # and no service_envelope


def test_another_envelope_is_refused() -> None:
    with pytest.raises(ConfigError, match="TS_SERVICE_ENVELOPE='json' is not supported: .* remove the variable"):
        load_settings([], env={"TS_SERVICE_ENVELOPE": "json"})


def test_what_was_understood_is_logged(tmp_path: Path) -> None:
    root = _kserve_layout(tmp_path / "models")
    stock = translate_torchserve_argv(_stock(root), {})
    settings = load_settings(stock.argv, env={"PROTOCOL_VERSION": "grpc-v2", "TS_SERVICE_ENVELOPE": "kservev2"})
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("kserve_torchserve")
    logger.addHandler(handler)
    old_level, logger.level = logger.level, logging.INFO
    try:
        _log_kserve_inputs(settings, stock, _stock(root))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [r.getMessage() for r in records]
    assert len(lines) == 3 and all(r.levelno == logging.INFO for r in records)
    assert lines[0].startswith("KServe's TorchServe command line understood: torchserve --start")
    assert f"storage {root}" in lines[0] and "http port 8080, grpc port 8081" in lines[0]
    assert lines[1].startswith("PROTOCOL_VERSION=grpc-v2 accepted")
    assert lines[2].startswith("TS_SERVICE_ENVELOPE=kservev2 ignored")


@pytest.fixture
def saved_loggers() -> Iterator[None]:
    names = ("kserve_torchserve", "torchserve", "kserve", "kserve.trace", "uvicorn", "uvicorn.access")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    yield
    for name, (handlers, level, propagate) in saved.items():
        log = logging.getLogger(name)
        log.handlers[:], log.level, log.propagate = handlers, level, propagate


def _uvicorn_logs_access() -> bool:
    """Whether uvicorn's HTTP protocol, made now, would build and log an access line per request."""
    import asyncio

    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    async def app(scope: object, receive: object, send: object) -> None:
        pass

    loop = asyncio.new_event_loop()
    try:
        protocol = HttpToolsProtocol(uvicorn.Config(app, log_config=None), ServerState(), {}, _loop=loop)
        return bool(protocol.access_log)
    finally:
        loop.close()


@pytest.mark.usefixtures("saved_loggers")
@pytest.mark.parametrize(("level", "logs_access"), [("INFO", False), ("WARN", False), ("DEBUG", True), ("TRACE", True)])
def test_uvicorn_builds_access_lines_only_at_debug(level: str, logs_access: bool) -> None:
    from kserve_torchserve.__main__ import _configure_logging

    _configure_logging(level)
    assert _uvicorn_logs_access() is logs_access
    assert logging.getLogger("kserve_torchserve").handlers  # our own lines still go out
