"""``python -m kserve_torchserve check``: the real command on real storage, without starting TorchServe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import ROOT, build_mar

pytestmark = pytest.mark.integration

BROKEN_HANDLER = """\
from ts.torch_handler.base_handler import BaseHandler


class Broken(BaseHandler)  # the colon is missing
    pass
"""


def _check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "kserve_torchserve", "check", *args], capture_output=True,
                            text=True, timeout=180, cwd=str(ROOT), env={**os.environ, **(env or {})})
    assert time.monotonic() - started < 120, "the check took as long as a TorchServe start"
    assert "org.pytorch.serve" not in result.stdout + result.stderr  # TorchServe's Java never ran
    return result


def test_the_digits_example_would_be_served(digits: dict[str, Any]) -> None:
    result = _check(str(digits["store"]), env={"TS_BATCH_SIZE": "8", "TS_MAX_BATCH_DELAY": "25"})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["MODEL", "VERSION", "HANDLER", "WORKERS", "(MIN/MAX)", "BATCH", "SIZE", "MAX",
                                "BATCH", "DELAY", "RESPONSE", "TIMEOUT"]
    assert lines[1].split() == ["digits", "1.0", "handler.py", "1/1", "8", "25", "ms", "120", "s"]
    assert len(lines) == 2  # stdout holds the table only; log lines went to stderr


def test_model_name_and_workers_as_serve_would_resolve_them(digits: dict[str, Any]) -> None:
    result = _check("--model_name", "mnist", env={"STORAGE_URI": str(digits["store"]),
                                                  "TS_DEFAULT_WORKERS_PER_MODEL": "2", "TS_MAX_WORKERS_COUNT": "3"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[1].split()[:4] == ["mnist", "1.0", "handler.py", "2/3"]


def test_a_broken_handler_and_an_eager_model_that_does_not_fit(tmp_path: Path, digits: dict[str, Any]) -> None:
    storage = tmp_path / "models"
    storage.mkdir()
    (storage / "digits.mar").symlink_to(digits["store"] / "digits.mar")  # a good one beside them: no line
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "handler.py").write_text(BROKEN_HANDLER)
    build_mar(tmp_path / "src" / "handler.py", "broken", storage)
    eager = storage / "eager"
    eager.mkdir()
    (eager / "model.py").write_text((ROOT / "examples" / "eager" / "model.py").read_text())
    torch.save({"linear.weight": torch.zeros(5, 784), "linear.bias": torch.zeros(5)}, eager / "model.pth")

    result = _check(str(storage))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert any(line.startswith("problem: ") and "model.pth does not fit MyModel" in line for line in lines), lines
    broken = next(line for line in lines if "broken.mar" in line)
    assert "model broken v1.0" in broken and "handler.py line 4: SyntaxError" in broken
    assert "fix the handler and rebuild the archive" in broken


def test_a_missing_dependency_names_the_module(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "handler.py").write_text("import kserve_torchserve_no_such_package\n\ndef handle(data, "
                                                 "context):\n    return data\n")
    build_mar(tmp_path / "src" / "handler.py", "needy", tmp_path / "models")
    result = _check(str(tmp_path / "models"))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "problem: model needy v1.0 (needy.mar): handler.py line 1: ModuleNotFoundError: No module named "
        "'kserve_torchserve_no_such_package': install it in the image (or list it in the archive's requirements "
        "file, with install_py_dep_per_model=true)"
    ]


@pytest.mark.parametrize("env, named", [({"TS_BATCH_SIZE": "0"}, "TS_BATCH_SIZE='0' is invalid"),
                                        ({"TS_SERVICE_ENVELOPE": "json"}, "TS_SERVICE_ENVELOPE='json'"),
                                        ({"PROTOCOL_VERSION": "v3"}, "PROTOCOL_VERSION='v3' is invalid")])
def test_bad_settings_exit_2_with_one_line(env: dict[str, str], named: str, digits: dict[str, Any]) -> None:
    result = _check(str(digits["store"]), env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert named in result.stderr


def test_storage_that_is_not_there(tmp_path: Path) -> None:
    result = _check(str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1 and "does not exist" in result.stdout
