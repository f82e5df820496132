"""check.py: the table, the problem lines, and the settings resolved as the server resolves them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kserve_torchserve.check import HEADERS, Row, render_problems, render_table, resolve
from kserve_torchserve.config.model_config import ModelSpec
from kserve_torchserve.config.settings import load_settings
from kserve_torchserve.model_store.build import ModelStore


def test_the_table_aligns_one_row_per_model_version() -> None:
    rows = [Row("digits", "1.0", "handler.py", 1, 1, 1, 100, 120),
            Row("resnet-18", "2.0", "image_classifier", 2, 4, 8, 5, 60)]
    lines = render_table(rows).splitlines()
    assert len(lines) == 3
    assert lines[0].index("VERSION") == len("resnet-18") + 2  # columns as wide as their longest cell, 2 apart
    starts = [lines[0].index(h) for h in HEADERS]
    for line, row in zip(lines[1:], rows):
        assert [line[s:].split("  ")[0].strip() for s in starts] == list(row.cells())
    assert lines[2].split() == ["resnet-18", "2.0", "image_classifier", "2/4", "8", "5", "ms", "60", "s"]


def test_no_models_is_one_line() -> None:
    assert render_table([]).count("\n") == 1
    assert "run time" in render_table([])


def test_each_problem_is_one_line_whatever_it_holds() -> None:
    text = render_problems(["a: b", "TorchServe said:\n  line one\n  line two"])
    assert text.splitlines() == ["problem: a: b", "problem: TorchServe said: line one line two"]


def _store(tmp_path: Path, specs: tuple[ModelSpec, ...], properties: str | None = None) -> ModelStore:
    user = None
    if properties is not None:
        user = tmp_path / "config.properties"
        user.write_text(properties)
    return ModelStore(tmp_path / "store", specs, user)


def test_settings_resolve_as_the_server_registers_them(tmp_path: Path) -> None:
    settings = load_settings([], env={"TS_BATCH_SIZE": "8", "TS_DEFAULT_WORKERS_PER_MODEL": "2"})
    specs = (ModelSpec("a", "1.0", "a.mar", "handler.py"),
             ModelSpec("b", "2.0", "b.mar", "image_classifier", batch_size=1, max_workers=5, response_timeout=9))
    rows, problems = resolve(settings, _store(tmp_path, specs, "default_response_timeout=30\n"), tmp_path, tmp_path)
    assert problems == []
    # TS_* defaults < the user's config.properties; a model's own settings win over both.
    assert rows == [Row("a", "1.0", "handler.py", 2, 2, 8, 100, 30), Row("b", "2.0", "image_classifier", 2, 5, 1, 100, 9)]


def test_a_bad_config_properties_is_a_problem(tmp_path: Path) -> None:
    settings = load_settings([], env={})
    specs = (ModelSpec("a", "1.0", "a.mar", "handler.py"),)
    rows, problems = resolve(settings, _store(tmp_path, specs, "default_response_timeout=soon\n"), tmp_path, tmp_path)
    assert rows == [] and len(problems) == 1 and "default_response_timeout='soon'" in problems[0]


def test_a_bad_metrics_yaml_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "metrics.yaml").write_text("[not, a, mapping]\n")
    specs = (ModelSpec("a", "1.0", "a.mar", "handler.py"),)
    rows, problems = resolve(load_settings([], env={}), _store(tmp_path, specs), tmp_path, tmp_path)
    assert len(rows) == 1
    assert len(problems) == 1 and "metrics.yaml must be a TorchServe metrics config" in problems[0]
