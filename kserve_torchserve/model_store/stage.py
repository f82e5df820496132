"""A model added at run time -> one entry in TorchServe's model store, under a name of its own.

The same builder as start-up (``build.build_model_store``) turns whatever was fetched
(.mar, .tar.gz, no-archive dir, TorchScript, eager model.py + state dict, with their
config files) into an archive in a private directory; the archive is then linked into
the model store under a unique name (``<name>-<version>-<random>.mar``), so run-time
registrations never collide with start-up files or with each other, and the whole
directory is deleted when the model is unregistered.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..config.model_config import ModelSpec
from ..errors import StartupError
from .archiver import with_version
from .artifacts import TGZ_SUFFIXES, read_archive
from .build import build_model_store


@dataclass(frozen=True)
class Staged:
    spec: ModelSpec  # version: the served version; mar_name: the entry in the model store
    ts_version: str  # the version in the archive's manifest, which TorchServe registers
    link: Path  # model store entry (a symlink into ``files``)
    files: Path  # everything this registration owns on disk


def _suffix(name: str) -> str:
    for suffix in (*TGZ_SUFFIXES, ".mar"):
        if name.endswith(suffix):
            return suffix
    return ""  # a no-archive directory


def stage(
    source: Path, work: Path, store_root: Path, name: str | None, version: str | None,
    ts_version: Callable[[str], str] = lambda served: served,
) -> Staged:
    """Build the one model under ``source`` into ``work`` and link it into ``store_root``.

    ``version`` overrides the artifact's own version; ``ts_version(served version)`` is
    what the archive's manifest will say. StartupError names what is wrong.
    """
    store = build_model_store(source, work / "store", name)
    if len(store.specs) != 1:
        found = ", ".join(f"{s.name} {s.version}" for s in store.specs)
        raise StartupError(f"the url holds {len(store.specs)} models ({found}): register them one at a time")
    spec = store.specs[0]
    archive = (work / "store" / spec.mar_name).resolve()
    served = version or spec.version
    manifest_version = ts_version(served)
    if read_archive(archive).version != manifest_version:
        archive = with_version(archive, manifest_version, work / "versioned")
    entry = f"{spec.name}-{manifest_version}-{secrets.token_hex(4)}{_suffix(archive.name)}"
    link = store_root / entry
    link.symlink_to(archive)
    return Staged(replace(spec, version=served, mar_name=entry), manifest_version, link, work)


def discard(staged: Staged) -> None:
    """Remove a staged model's store entry and files (after TorchServe let go of it)."""
    staged.link.unlink(missing_ok=True)
    shutil.rmtree(staged.files, ignore_errors=True)
