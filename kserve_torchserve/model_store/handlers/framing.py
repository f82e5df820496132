"""The wire format between our process and TorchServe's workers for one client request with N rows.

One TorchServe request carries all rows of a client request: as rows (``pack_rows``, v2
and gRPC, whose tensors we decode), or as the v1 body exactly as the client sent it
(``pack_v1``: nothing parsed in our process, the worker makes the rows with rows.py). Its
answer carries one (status, phrase, body, JSON or not) per row (``pack_answers``). The request
envelope (``rows_envelope.py``) unpacks them in the worker, so a handler sees exactly the rows
it would see if each were a TorchServe request of its own. Plain stdlib: it runs in
TorchServe's workers too.

    rows:    b"KTR1" | u32 rows | per row: u16 fields | per field: u16 len, name, u32 len, value
    v1:      b"KTV1" | the client's JSON body
    answers: b"KTA1" | u32 rows | per row: u16 status, u8 json, u16 len, phrase, u32 len, body

With batching in front (backend/batcher.py), one TorchServe request carries several client
requests, each its own rows or v1 frame, and its answer one part per client request: an
answers frame, or the error body (TorchServe's ``{"code", "type", "message"}``) of a request
refused alone:

    many:         b"KTM1" | u32 requests | per request: u32 len, a rows or v1 frame
    many answers: b"KTN1" | u32 requests | per request: u16 status, u32 len, body
"""

from __future__ import annotations

import struct
from typing import Mapping, Sequence

ROWS, V1, ANSWERS, MANY, MANY_ANSWERS = b"KTR1", b"KTV1", b"KTA1", b"KTM1", b"KTN1"
CONTENT_TYPE = "application/octet-stream"
_U16, _U32 = struct.Struct("!H"), struct.Struct("!I")

Answer = tuple[int, str, bytes, bool]  # (status, phrase, body, body is JSON) of one row


class FrameError(ValueError):
    """Bytes that are not a well-formed frame."""


def pack_rows(rows: Sequence[Mapping[str, bytes]]) -> bytes:
    parts = [ROWS, _U32.pack(len(rows))]
    for row in rows:
        parts.append(_U16.pack(len(row)))
        for name, value in row.items():
            key = name.encode("utf-8")
            parts += [_U16.pack(len(key)), key, _U32.pack(len(value)), value]
    return b"".join(parts)


def is_rows(body: object) -> bool:
    return isinstance(body, (bytes, bytearray)) and body[:4] in (ROWS, V1)


def pack_v1(body: bytes) -> bytes:
    return V1 + body


def is_many(body: object) -> bool:
    return isinstance(body, (bytes, bytearray)) and body[:4] == MANY


def pack_many(frames: Sequence[bytes]) -> bytes:
    parts = [MANY, _U32.pack(len(frames))]
    for frame in frames:
        parts += [_U32.pack(len(frame)), frame]
    return b"".join(parts)


def many_size(sizes: int, count: int) -> int:
    """The bytes of a many frame holding ``count`` frames of ``sizes`` bytes in all."""
    return 8 + 4 * count + sizes


class _Reader:
    def __init__(self, data: bytes, magic: bytes) -> None:
        if data[:4] != magic:
            raise FrameError("not a frame of this kind")
        self.data, self.at = memoryview(data), 4

    def take(self, size: int) -> bytes:
        end = self.at + size
        if end > len(self.data):
            raise FrameError("frame is cut short")
        chunk, self.at = self.data[self.at:end].tobytes(), end
        return chunk

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def done(self) -> None:
        if self.at != len(self.data):
            raise FrameError("frame has trailing bytes")


def unpack_rows(body: bytes) -> list[dict[str, bytes]]:
    reader = _Reader(bytes(body), ROWS)
    rows = []
    for _ in range(reader.u32()):
        row = {}
        for _ in range(reader.u16()):
            name = reader.take(reader.u16()).decode("utf-8")
            row[name] = reader.take(reader.u32())
        rows.append(row)
    reader.done()
    return rows


def pack_answers(answers: Sequence[Answer]) -> bytes:
    parts = [ANSWERS, _U32.pack(len(answers))]
    for status, phrase, body, is_json in answers:
        text = phrase.encode("utf-8")[:65535]
        parts += [_U16.pack(status), b"\x01" if is_json else b"\x00", _U16.pack(len(text)), text,
                  _U32.pack(len(body)), body]
    return b"".join(parts)


def unpack_answers(body: bytes) -> list[Answer]:
    reader = _Reader(body, ANSWERS)
    answers = []
    for _ in range(reader.u32()):
        status = reader.u16()
        is_json = reader.take(1) == b"\x01"
        phrase = reader.take(reader.u16()).decode("utf-8", "replace")
        answers.append((status, phrase, reader.take(reader.u32()), is_json))
    reader.done()
    return answers


def unpack_many(body: bytes) -> list[bytes]:
    """The client requests' frames of a many frame, each a rows or v1 frame."""
    reader = _Reader(bytes(body), MANY)
    frames = [reader.take(reader.u32()) for _ in range(reader.u32())]
    reader.done()
    if not all(is_rows(frame) for frame in frames):
        raise FrameError("a many frame holds something other than rows or v1 frames")
    return frames


def pack_many_answers(answers: Sequence[tuple[int, bytes]]) -> bytes:
    parts = [MANY_ANSWERS, _U32.pack(len(answers))]
    for status, body in answers:
        parts += [_U16.pack(status), _U32.pack(len(body)), body]
    return b"".join(parts)


def unpack_many_answers(body: bytes) -> list[tuple[int, bytes]]:
    reader = _Reader(body, MANY_ANSWERS)
    answers = []
    for _ in range(reader.u32()):
        status = reader.u16()
        answers.append((status, reader.take(reader.u32())))
    reader.done()
    return answers
