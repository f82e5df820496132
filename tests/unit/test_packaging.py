"""The installed package (a wheel, not the editable checkout) holds every module and runs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import ROOT


def test_wheel_holds_every_module_and_serves_help(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packed = {name for name in zf.namelist() if name.startswith("kserve_torchserve/")}
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "kserve_torchserve").rglob("*")
              if p.suffix == ".py" or p.name == "py.typed"}
    assert source <= packed, sorted(source - packed)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    # Outside the checkout, with the wheel first on the path: the installed copy answers.
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    where = subprocess.run([sys.executable, "-c", "import kserve_torchserve.server as s; print(s.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.strip().startswith(str(tmp_path / "site")), where.stdout + where.stderr
    usage = subprocess.run([sys.executable, "-m", "kserve_torchserve", "--help"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0 and "--storage_uri" in usage.stdout, usage.stderr
