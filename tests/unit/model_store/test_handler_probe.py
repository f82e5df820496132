"""handler_probe: a handler imported in a child the way TorchServe's worker imports it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kserve_torchserve.model_store.handler_probe import _unpack, probe_handler
from tests.helpers import ROOT, build_mar

GOOD_CLASS = "from ts.torch_handler.base_handler import BaseHandler\n\nclass H(BaseHandler):\n    pass\n"

# handler file text (None: no file, a built-in name), manifest handler -> the problem (None: fine)
CASES: dict[str, tuple[str | None, str, str | None]] = {
    "class": (GOOD_CLASS, "handler.py", None),
    "function": ("def handle(data, context):\n    return data\n", "handler.py", None),
    "named function": ("def infer(data, context):\n    return data\n", "handler.py:infer", None),
    "built-in": (None, "image_classifier", None),
    "syntax error": ("def handle(data, context)\n    return data\n", "handler.py",
                     "handler.py line 1: SyntaxError: expected ':': fix the handler and rebuild the archive"),
    "missing dependency": ("import json\nimport no_such_module_anywhere\n", "handler.py",
                           "handler.py line 2: ModuleNotFoundError: No module named 'no_such_module_anywhere': "
                           "install it in the image"),
    "error at import": ("x = 1\nraise RuntimeError('boom')\n", "handler.py",
                        "handler.py line 2: RuntimeError: boom: fix the handler"),
    "two classes": ("class A:\n    pass\n\nclass B:\n    pass\n", "handler.py",
                    "handler: TorchServe needs a handle() function or exactly one class, found A, B"),
    "no handle": ("class A:\n    def initialize(self, ctx):\n        pass\n", "handler.py",
                  "A has no handle method"),
    "arguments": ("class A:\n    def __init__(self, x):\n        pass\n", "handler.py",
                  "A() fails: TypeError"),
    "unknown built-in": (None, "no_such_handler", "handler 'no_such_handler' is neither a .py file in the archive "
                                                  "nor one of TorchServe's built-in handlers"),
}


def _model_dir(root: Path, text: str | None, handler: str) -> Path:
    """A no-archive model directory (torch-model-archiver --archive-format no-archive)."""
    (root / "MAR-INF").mkdir(parents=True)
    (root / "MAR-INF" / "MANIFEST.json").write_text(json.dumps({"model": {"modelName": root.name, "handler": handler}}))
    if text is not None:
        (root / "handler.py").write_text(text)
    return root


async def test_each_handler_is_judged_as_torchserve_would(tmp_path: Path) -> None:
    dirs = {case: _model_dir(tmp_path / f"m{i}", text, handler) for i, (case, (text, handler, _)) in
            enumerate(CASES.items())}
    found = await asyncio.gather(*(probe_handler(d, tmp_path / "work" / d.name) for d in dirs.values()))
    for (case, (_, _, expected)), problem in zip(CASES.items(), found):
        if expected is None:
            assert problem is None, f"{case}: {problem}"
        else:
            assert problem is not None and problem.startswith(expected), f"{case}: {problem}"
            assert "\n" not in problem
    assert not list(tmp_path.rglob("__pycache__"))  # a no-archive model directory is the user's: left as it was


def test_a_mar_is_unpacked_without_its_weights(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"\0" * 4096)
    mar = build_mar(ROOT / "tests" / "assets" / "version_handler.py", "w", tmp_path / "store", serialized=weights)
    model_dir, handler = _unpack(mar, tmp_path / "out")
    assert handler == "version_handler.py"
    assert (model_dir / "version_handler.py").is_file() and (model_dir / "MAR-INF" / "MANIFEST.json").is_file()
    assert not (model_dir / "weights.pt").exists()


def test_a_tgz_model_dir_is_the_one_holding_the_manifest(tmp_path: Path) -> None:
    tgz = build_mar(ROOT / "tests" / "assets" / "version_handler.py", "t", tmp_path / "store", archive_format="tgz")
    model_dir, handler = _unpack(tgz, tmp_path / "out")
    assert (model_dir / "MAR-INF" / "MANIFEST.json").is_file() and (model_dir / handler).is_file()


async def test_an_archive_that_is_not_a_zip_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "digits.mar").write_bytes(b"not a zip")
    problem = await probe_handler(tmp_path / "digits.mar", tmp_path / "work")
    assert problem is not None and "is not a valid zip archive" in problem
