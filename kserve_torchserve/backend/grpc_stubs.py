"""gRPC stubs for TorchServe, compiled from the .proto files inside the installed jar.

TorchServe ships its API definitions only inside ``ts/frontend/model-server.jar``.
Copying them into this repository would let them drift from the TorchServe that is
actually installed, so we extract and compile them with grpc_tools on first use and
cache the generated modules under a key made of the jar's size and mtime.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import StartupError

_PACKAGE = "torchserve_grpc"  # a package name of our own so the modules cannot clash
_PROTOS = ("inference.proto", "management.proto")


@dataclass(frozen=True)
class Stubs:
    inference_pb2: ModuleType
    inference_pb2_grpc: ModuleType
    management_pb2: ModuleType
    management_pb2_grpc: ModuleType


def jar_path() -> Path:
    import ts

    return Path(ts.__file__).resolve().parent / "frontend" / "model-server.jar"


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kserve_torchserve" / "protos"


def _cache_key(jar: Path) -> str:
    # TorchServe's version and the jar's size, not its mtime: image layers keep whole seconds
    # only, so an mtime key would miss stubs compiled into an image after a push and pull.
    import ts.version

    return hashlib.sha256(f"{jar}:{ts.version.__version__}:{jar.stat().st_size}".encode()).hexdigest()[:16]


def _compile(jar: Path, out: Path) -> None:
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        pkg_src = src / _PACKAGE
        pkg_src.mkdir(parents=True)
        with zipfile.ZipFile(jar) as zf:
            for name in _PROTOS:
                (pkg_src / name).write_bytes(zf.read(name))
        gen = Path(tmp) / "gen"
        (gen / _PACKAGE).mkdir(parents=True)
        (gen / _PACKAGE / "__init__.py").write_text("")
        # google/protobuf/*.proto come with grpc_tools; google/rpc/status.proto
        # with googleapis-common-protos (its generated module is imported at run time).
        includes = [str(Path(protoc.__file__).parent / "_proto")]
        import google.rpc

        includes.append(str(Path(next(iter(google.rpc.__path__))).parent.parent))
        args = ["protoc", f"-I{src}", *(f"-I{i}" for i in includes),
                f"--python_out={gen}", f"--grpc_python_out={gen}",
                *(f"{_PACKAGE}/{name}" for name in _PROTOS)]
        if protoc.main(args) != 0:
            raise StartupError(f"could not compile TorchServe's gRPC protos from {jar}")
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(dir=out.parent))
        shutil.copytree(gen, staged, dirs_exist_ok=True)
        try:
            os.rename(staged, out)  # atomic: a concurrent first start sees all or nothing
        except OSError:
            shutil.rmtree(staged, ignore_errors=True)  # another process won the race


_loaded: Stubs | None = None


def load() -> Stubs:
    """Return the compiled stubs, compiling them on first use."""
    global _loaded
    if _loaded is not None:
        return _loaded
    jar = jar_path()
    if not jar.is_file():
        raise StartupError(f"TorchServe's jar is missing at {jar}; reinstall torchserve")
    out = _cache_root() / _cache_key(jar)
    if not (out / _PACKAGE / "inference_pb2_grpc.py").is_file():
        try:
            _compile(jar, out)
        except OSError:  # not writable: a read-only root filesystem (EROFS), or another user's home
            out = Path(tempfile.gettempdir()) / "kserve_torchserve_protos" / _cache_key(jar)
            if not (out / _PACKAGE / "inference_pb2_grpc.py").is_file():
                _compile(jar, out)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    modules: dict[str, Any] = {
        name: importlib.import_module(f"{_PACKAGE}.{name}")
        for name in ("inference_pb2", "inference_pb2_grpc", "management_pb2", "management_pb2_grpc")
    }
    _loaded = Stubs(**modules)
    return _loaded
