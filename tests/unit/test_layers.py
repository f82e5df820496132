"""The layer contract of DESIGN.md ("Layout"), checked by import-linter from setup.cfg."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "setup.cfg"), "--no-cache"], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(cwd)})


def test_imports_follow_the_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_import_against_the_flow_breaks_the_contract(tmp_path: Path) -> None:
    """The contract is not vacuous: config importing the server (a layer far above) fails it."""
    shutil.copytree(ROOT / "kserve_torchserve", tmp_path / "kserve_torchserve",
                    ignore=shutil.ignore_patterns("__pycache__"))
    settings = tmp_path / "kserve_torchserve" / "config" / "settings.py"
    settings.write_text(settings.read_text() + "\nfrom ..server import Server  # against the flow\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "kserve_torchserve.config.settings -> kserve_torchserve.server" in result.stdout


def test_modules_stay_small_and_every_package_says_what_it_owns() -> None:
    """DESIGN.md's size rule (issue 11): a module over 300 lines is doing two jobs; split it."""
    package = ROOT / "kserve_torchserve"
    long = {str(p.relative_to(package)): n for p in package.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long
    for init in package.rglob("__init__.py"):
        if "handlers" in init.parts or "worker_site" in init.parts:
            continue  # files TorchServe's workers load, not layers of ours
        assert init.read_text().lstrip().startswith('"""'), init
