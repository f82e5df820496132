"""Archive checks: entry count, zip and tar bombs, caps, and how entries are named in refusals.

Slipping entries (``..``, absolute paths, links) are tested through the whole builder in
test_artifacts.py; the integration test tests/integration/test_reliability_payloads.py sends
every hostile archive through start-up and registration.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from kserve_torchserve.errors import StartupError
from kserve_torchserve.model_store import archive_checks


# -- archive limits: entry count, zip bombs, tar bombs (archive_checks.check_zip / check_tar) ---------

def _manifest_zip(path: Path, entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": path.stem, "handler": "h.py"}}))
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_a_zip_bomb_entry_is_refused_by_name(tmp_path: Path) -> None:
    _manifest_zip(tmp_path / "x.mar", {"weights/zeros.bin": bytes(archive_checks.RATIO_FLOOR + 1)})
    with pytest.raises(StartupError, match=r"entry 'weights/zeros.bin' expands \d{3,4}-fold .* zip bomb"):
        archive_checks.check_zip(tmp_path / "x.mar")


def test_packed_entries_under_the_floor_or_stored_are_fine(tmp_path: Path) -> None:
    _manifest_zip(tmp_path / "a.mar", {"vocab.txt": b"the " * 2**20})  # 4 MiB at ~1000:1: under the floor
    _manifest_zip(tmp_path / "b.mar", {"zeros.bin": bytes(archive_checks.RATIO_FLOOR + 1)}, zipfile.ZIP_STORED)
    for name in ("a.mar", "b.mar"):
        archive_checks.check_zip(tmp_path / name).close()


def test_too_many_entries_are_refused_naming_the_first_extra_one(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_checks, "MAX_ENTRIES", 3)
    _manifest_zip(tmp_path / "ok.mar", {"a": b"", "b": b""})  # 3 entries with the manifest
    archive_checks.check_zip(tmp_path / "ok.mar").close()
    _manifest_zip(tmp_path / "x.mar", {"a": b"", "b": b"", "c\n": b""})
    with pytest.raises(StartupError, match=r"more than 3 entries \(entry 'c\\n' is one too many\)"):
        archive_checks.check_zip(tmp_path / "x.mar")
    with tarfile.open(tmp_path / "x.tar.gz", "w:gz") as tf:
        for name in "abcd":
            tf.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    with pytest.raises(StartupError, match=r"more than 3 entries \(entry 'd' is one too many\)"):
        archive_checks.check_tar(tmp_path / "x.tar.gz")


def test_zip_total_over_the_cap_is_refused(tmp_path: Path) -> None:
    _manifest_zip(tmp_path / "x.zip", {"a.bin": os.urandom(4096)})
    with pytest.raises(StartupError, match="would expand to .* bytes, over the cap of 1000 "):
        archive_checks.check_zip(tmp_path / "x.zip", max_bytes=1000)


def _tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_a_tar_bomb_is_refused_before_its_data_is_read(tmp_path: Path) -> None:
    bomb = _tar_with(tmp_path / "x.tar.gz", (tarfile.TarInfo("ok.txt"), b"fine"),
                     (tarfile.TarInfo("zeros.bin"), bytes(archive_checks.RATIO_FLOOR + 2**20)))
    with pytest.raises(StartupError, match=r"entry 'zeros.bin' expands \d+-fold"):
        archive_checks.check_tar(bomb)


def test_a_huge_tar_header_is_refused_unread(tmp_path: Path) -> None:
    """tarfile reads a pax header whole: one claiming 17 MiB (here, a long path) is refused, not read."""
    info = tarfile.TarInfo("x")
    info.pax_headers = {"comment": "z" * (archive_checks.RATIO_FLOOR + 2**20)}
    bomb = _tar_with(tmp_path / "x.tar.gz", (tarfile.TarInfo("first"), b""), (info, b""))
    with pytest.raises(StartupError, match="the header after entry 'first' would expand the archive past"):
        archive_checks.check_tar(bomb)


def test_tar_total_over_the_cap_names_the_entry(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "x.tar.gz", (tarfile.TarInfo("a"), os.urandom(600)),
                        (tarfile.TarInfo("b"), os.urandom(600)))
    assert archive_checks.check_tar(archive) == 1200
    with pytest.raises(StartupError, match=r"more than 1000 bytes \(at entry 'b'\), over the cap"):
        archive_checks.check_tar(archive, max_bytes=1000)


def test_a_corrupt_tar_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.tar.gz").write_bytes(b"\x1f\x8b" + os.urandom(100))
    with pytest.raises(StartupError, match="is not a valid .tar.gz archive: rebuild it"):
        archive_checks.check_tar(tmp_path / "x.tar.gz")


def test_entry_names_are_shown_escaped_and_short() -> None:
    assert archive_checks.shown("a\x1b[1mb\n") == "'a\\x1b[1mb\\n'"
    assert archive_checks.shown("x" * 500) == repr("x" * 120 + "...")


# -- a zip read two ways: Python's directory vs TorchServe's local headers (ZipInputStream) -------

def test_an_ordinary_zip_with_data_descriptors_agrees(tmp_path: Path) -> None:
    """What streaming writers (and Java's jar) produce: sizes after the data, not in the header."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(_Unseekable(buffer), "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("MAR-INF/MANIFEST.json", "{}")
        with zf.open("model.py", "w") as entry:
            entry.write(b"x = 1\n" * 1000)
    path = tmp_path / "streamed.mar"
    path.write_bytes(buffer.getvalue())
    with zipfile.ZipFile(path) as zf:
        assert any(info.flag_bits & 0x08 for info in zf.infolist())
    archive_checks.check_zip(path).close()


class _Unseekable(io.RawIOBase):
    def __init__(self, target: io.BytesIO) -> None:
        self.target = target

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.target.write(data)

    def flush(self) -> None:
        pass


def test_a_renamed_local_header_is_refused_naming_the_entry(tmp_path: Path) -> None:
    path = _manifest_zip(tmp_path / "renamed.mar", {"harmless.py": b"x = 1\n"})
    data = path.read_bytes()
    local = data.index(b"harmless.py")  # the first occurrence is the local header's name
    path.write_bytes(data[:local] + b"../evil.py" + data[local + len("../evil.py"):])  # same length
    with zipfile.ZipFile(path) as zf:  # the directory still says harmless.py
        assert "harmless.py" in zf.namelist()
    with pytest.raises(StartupError, match="entry 'harmless.py' is stored differently"):
        archive_checks.check_zip(path)


def test_a_local_entry_the_directory_does_not_list_is_refused(tmp_path: Path) -> None:
    """Prepended entries: Python skips them (it adjusts offsets), a streaming reader unpacks them."""
    hidden = _manifest_zip(tmp_path / "hidden.zip", {"handler.py": b"import os\n"}).read_bytes()
    with zipfile.ZipFile(io.BytesIO(hidden)) as zf:
        local_section = hidden[:zf.start_dir]  # type: ignore[attr-defined]
    visible = _manifest_zip(tmp_path / "visible.zip", {"model.py": b"x = 1\n"}).read_bytes()
    path = tmp_path / "two-stories.mar"
    path.write_bytes(local_section + visible)
    with zipfile.ZipFile(path) as zf:
        assert "handler.py" not in zf.namelist()  # Python does not see it
    with pytest.raises(StartupError, match="is stored differently"):
        archive_checks.check_zip(path)


def test_bytes_between_the_last_entry_and_the_directory_are_refused(tmp_path: Path) -> None:
    path = _manifest_zip(tmp_path / "gap.mar", {"model.py": b"x = 1\n"})
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        start = zf.start_dir  # type: ignore[attr-defined]
    # A whole local entry slipped in before the directory; zipfile finds the directory from the end.
    extra = _manifest_zip(tmp_path / "extra.zip", {"evil.py": b"import os\n"}).read_bytes()
    with zipfile.ZipFile(io.BytesIO(extra)) as zf:
        slipped = extra[:zf.start_dir]  # type: ignore[attr-defined]
    moved = data[start:-22] + data[-22:-6] + (start + len(slipped)).to_bytes(4, "little") + data[-2:]
    path.write_bytes(data[:start] + slipped + moved)  # the directory's offset now points past it
    with pytest.raises(StartupError, match="data between its last entry and its directory"):
        archive_checks.check_zip(path)
