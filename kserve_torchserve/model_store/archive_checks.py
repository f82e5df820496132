"""Archive entries checked before anything unpacks them: us (kserve_storage, the handler probe) or TorchServe.

TorchServe's Java frontend unpacks a .mar or .tar.gz model with a zip-slip check only, and
kserve_storage unpacks a storage archive with none of ours, so every archive is checked
first, from its directory (zip) or its headers (tar), never by unpacking it:

- no entry may leave the target directory (``..``, an absolute path, a drive) or be a link
  or device (a tar hard link included);
- at most 10,000 entries (a model needs tens; 100,000 empty ones cost minutes and inodes);
- no zip bomb: past 16 MiB, an entry (of a zip) or the stream (of a .tar.gz) may expand at
  most 100-fold; weights pack about 1.1:1, text 10:1, a bomb 1000:1 (deflate's best);
- optionally a cap on the whole (``--max_unpacked_bytes`` for storage archives);
- a zip's local headers say what its central directory says, entry for entry, with nothing
  before, between or after them: Python reads a zip from its directory, TorchServe's Java
  (``ZipInputStream``) from the local headers in order, so an archive that tells the two
  different stories could pass our checks and unpack something else there.

A refusal is one StartupError naming the archive, the entry (quoted, escaped, at most 120
characters: the user needs it, nothing more of the input) and the limit.
"""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import StartupError

MAX_ENTRIES = 10_000
MAX_RATIO = 100
RATIO_FLOOR = 16 * 2**20  # bytes an entry (or a whole .tar.gz) may expand to at any ratio
_SHOWN_NAME = 120  # characters of an entry's name an error shows


def shown(name: str) -> str:
    """An entry's name as errors show it: quoted, control characters escaped, at most 120 characters."""
    return repr(name if len(name) <= _SHOWN_NAME else name[:_SHOWN_NAME] + "...")


def _unsafe_member(name: str) -> bool:
    """An entry name that, joined to a target directory, would land outside it."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or (bool(path.parts) and ":" in path.parts[0])


def _too_many(path: Path, name: str) -> StartupError:
    return StartupError(f"{path}: more than {MAX_ENTRIES} entries (entry {shown(name)} is one too many); "
                        "a model needs far fewer: pack only its files")


def _bomb(path: Path, name: str, unpacked: int, packed: int) -> StartupError:
    return StartupError(
        f"{path}: entry {shown(name)} expands {unpacked // max(packed, 1)}-fold ({unpacked} bytes from {packed}): "
        f"beyond {RATIO_FLOOR // 2**20} MiB, more than {MAX_RATIO}-fold is refused as a zip bomb; if the data is "
        "real, store it uncompressed"
    )


def _over_cap(path: Path, size: int, max_bytes: int) -> StartupError:
    return StartupError(f"archive {path.name} would expand to {size} bytes, over the cap of {max_bytes} "
                        "(--max_unpacked_bytes)")


_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # a zip local file header, 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"
_DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
_UNKNOWN_SIZE = 0xFFFFFFFF  # zip64 or a data descriptor: the size is elsewhere


def _local_headers_agree(zf: zipfile.ZipFile, path: Path) -> None:
    """Each directory entry's local header, in file order, names the same entry, and together they
    tile the file from byte 0 to the directory (no hidden local entry a streaming reader would
    unpack). StartupError naming the first entry where the two disagree."""
    fp = zf.fp
    assert fp is not None
    offset = 0
    for info in sorted(zf.infolist(), key=lambda i: i.header_offset):
        if info.header_offset != offset:
            raise _two_stories(path, info.filename)
        fp.seek(offset)
        header = fp.read(_LOCAL.size)
        if len(header) < _LOCAL.size:
            raise _two_stories(path, info.filename)
        signature, _, flags, method, _, _, _, packed, _, name_len, extra_len = _LOCAL.unpack(header)
        name = fp.read(name_len)
        central_name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        if (signature != _LOCAL_SIGNATURE or name != central_name or method != info.compress_type
                or packed not in (info.compress_size, 0, _UNKNOWN_SIZE)):
            raise _two_stories(path, info.filename)
        offset += _LOCAL.size + name_len + extra_len + info.compress_size
        if flags & 0x08:  # a data descriptor follows the data: crc and sizes, maybe signed, maybe zip64
            fp.seek(offset)
            signed = fp.read(4) == _DESCRIPTOR_SIGNATURE
            offset += (4 if signed else 0) + (20 if info.file_size >= _UNKNOWN_SIZE else 12)
    if offset != zf.start_dir:  # type: ignore[attr-defined]
        raise StartupError(f"{path}: data between its last entry and its directory that the directory does not "
                           "list; rebuild the archive with a standard zip tool")


def _two_stories(path: Path, name: str) -> StartupError:
    return StartupError(f"{path}: entry {shown(name)} is stored differently from how the archive's directory "
                        "lists it (a hidden or renamed entry); rebuild the archive with a standard zip tool")


def check_zip(path: Path, max_bytes: int | None = None) -> zipfile.ZipFile:
    """Open a zip, refusing entries that would escape the directory it is unpacked in, and bombs.

    Everything is read from the central directory and the local headers: nothing is
    decompressed. The sizes it declares are the sizes Python's zipfile writes (it stops
    there and checks the CRC).
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise StartupError(f"{path} is not a valid zip archive: rebuild it (torch-model-archiver for .mar)") from None
    try:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise _too_many(path, infos[MAX_ENTRIES].filename)
        for info in infos:
            if _unsafe_member(info.filename) or stat.S_ISLNK(info.external_attr >> 16):
                raise StartupError(
                    f"{path}: entry {shown(info.filename)} would be written outside the model directory "
                    "(absolute path, '..' or a link); rebuild the archive from plain files"
                )
            if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * info.compress_size:
                raise _bomb(path, info.filename, info.file_size, info.compress_size)
        size = sum(info.file_size for info in infos)
        if max_bytes is not None and size > max_bytes:
            raise _over_cap(path, size, max_bytes)
        _local_headers_agree(zf, path)
    except StartupError:
        zf.close()
        raise
    return zf


class _PastLimit(Exception):
    pass


class _Bounded(io.RawIOBase):
    """A decompressed tar stream that refuses reads past ``limit`` (and reads over 1 MiB at once).

    Checking a tar reads only headers; tarfile reads a long-name or pax header whole while it
    looks for the next entry, so a header claiming gigabytes is refused here, not read.
    """

    _MAX_READ = 2**20

    def __init__(self, stream: io.BufferedIOBase, limit: int) -> None:
        super().__init__()
        self._stream, self._limit = stream, limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if len(view) > self._MAX_READ or self._stream.tell() + len(view) > self._limit + self._MAX_READ:
            raise _PastLimit()
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == io.SEEK_SET and offset > self._limit + self._MAX_READ:  # the slack: a header's padding
            raise _PastLimit()
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def _tar_stream(path: Path) -> io.BufferedIOBase:
    """The decompressed bytes of a .tar.gz (or of a plain .tar)."""
    with open(path, "rb") as head:
        gzipped = head.read(2) == b"\x1f\x8b"
    return gzip.GzipFile(path, "rb") if gzipped else open(path, "rb")


def check_tar(path: Path, max_bytes: int | None = None) -> int:
    """Refuse a tar whose entries are links, devices, paths outside its directory, too many, or a bomb.

    Headers are read one by one and each entry's size is judged before its data is passed
    over, so a refused archive costs no more than the limit it broke. Returns the bytes it
    unpacks to.
    """
    packed = path.stat().st_size
    limit = max(RATIO_FLOOR, MAX_RATIO * packed)
    last, total = "", 0
    try:
        with _tar_stream(path) as stream, tarfile.open(fileobj=_Bounded(stream, limit), mode="r:") as tf:
            for count, member in enumerate(tf, 1):
                if count > MAX_ENTRIES:
                    raise _too_many(path, member.name)
                if _unsafe_member(member.name) or not (member.isfile() or member.isdir()):
                    raise StartupError(
                        f"{path}: entry {shown(member.name)} would be written outside the model directory or is "
                        "not a plain file (absolute path, '..', link or device); rebuild the archive from plain files"
                    )
                end = member.offset_data + member.size
                if end > limit:
                    raise _bomb(path, member.name, end, packed)
                total += member.size
                if max_bytes is not None and total > max_bytes:
                    raise StartupError(f"archive {path.name} would expand to more than {max_bytes} bytes "
                                       f"(at entry {shown(member.name)}), over the cap (--max_unpacked_bytes)")
                last = member.name
    except _PastLimit:
        raise StartupError(f"{path}: the header after entry {shown(last)} would expand the archive past {limit} "
                           f"bytes, {MAX_RATIO}-fold its packed size: refused as a tar bomb") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        raise StartupError(f"{path} is not a valid .tar.gz archive: rebuild it") from None
    return total
