"""TorchServe request envelope ``kserve_torchserve``: all rows of a client request in one TorchServe request.

TorchServe batches requests; each of ours carries the N rows of one client request
(``framing.pack_rows``). This envelope, loaded by TorchServe's worker for every model
(config.properties ``service_envelope``; ``backend/worker_site/sitecustomize.py`` makes it
importable under TorchServe's envelope package), flattens the rows of every request in the
batch, so the handler sees one row per instance, exactly as if each had been a TorchServe
request of its own, and batches across clients as before. The context the handler gets has
one request processor per row (same request headers, its own status), so
``context.set_response_status(code, phrase, idx)`` still addresses one row; the answers go
back per request as ``framing.pack_answers`` (status, phrase, body per row), bodies encoded
as TorchServe encodes a handler's answers. A request that is not a frame (TorchServe called
directly, describe) is one row, as without the envelope.

A handler that refuses its input with a client error (``PredictionException(msg, 4xx)``) fails
only the client request it came from: alone in its batch, that request is answered with the
status and message, without the traceback TorchServe's worker would log for it (a client's
mistake is one line in our log, not twenty in TorchServe's); batched with others, each request
is run again on its own, so the others get their answers.

With batching in front (backend/batcher.py), one TorchServe request carries several client
requests (``framing.pack_many``): each is handled here as if it were a request of its own in the
batch (its rows, its refusal, its status), at most batch size of them per handler call, and the
answers go back together (``framing.pack_many_answers``).

TorchServe's own kserve envelope read ``data[0]`` only and so broke batching; this one
keeps it.
"""

from __future__ import annotations

import io
from typing import Any, Callable, cast

from ts.context import RequestProcessor
from ts.utils.util import PredictionException

from kserve_torchserve.model_store.handlers import framing, rows


def _encode(value: Any) -> tuple[bytes, bool]:
    """What TorchServe's worker sends for one answer (otf_message_handler), compact; and whether it is
    JSON we wrote (our process may then splice it into a v1 answer without parsing it)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), False
    if isinstance(value, str):
        return value.encode("utf-8"), False
    if type(value).__module__ == "torch" and type(value).__name__ == "Tensor":
        import torch

        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue(), False
    return rows.to_json(value), True


def _unpack(body: bytes) -> list[dict[str, bytes]]:
    if body[:4] == framing.V1:
        return rows.v1_rows(body[4:])
    return framing.unpack_rows(body)


class RowsEnvelope:
    def __init__(self, handle_fn: Callable[[list[Any], Any], Any]) -> None:
        self._handle_fn = handle_fn

    def handle(self, data: list[Any], context: Any) -> list[Any] | None:
        if any(framing.is_many(r.get("body") if isinstance(r, dict) else None) for r in data):
            return self._handle_many(data, context)
        framed = [framing.is_rows(r.get("body") if isinstance(r, dict) else None) for r in data]
        if not any(framed):
            answered: list[Any] | None = self._handle_fn(data, context)  # nothing of ours in this batch
            return answered
        try:
            return self._handle_rows(data, context)
        except PredictionException as exc:
            if not 400 <= exc.error_code < 500 or not all(framed):
                raise  # a handler's failure (5xx): TorchServe answers and logs it, as without us
            if len(data) == 1:
                return [_refused(context.request_processor[0], exc)]
            return [self._alone(index, data[index], context) for index in range(len(data))]

    def _handle_many(self, data: list[Any], context: Any) -> list[Any]:
        """Every client request of every many frame as a request of its own in this batch; answered per frame."""
        original, original_ids = context.request_processor, context.request_ids or {}
        units: list[Any] = []
        owners: list[int] = []
        many: set[int] = set()  # the requests that are many frames (the others are answered as they are)
        processors = []
        for index, request in enumerate(data):
            body = request.get("body") if isinstance(request, dict) else None
            if not framing.is_many(body):
                units.append(request)
                owners.append(index)
                processors.append(original[index])
                continue
            many.add(index)
            headers = dict(original[index].get_request_properties())
            # Our own frame: a malformed one is a bug, and fails the batch.
            for frame in framing.unpack_many(bytes(cast(bytes, body))):
                units.append({"body": frame})
                owners.append(index)
                processors.append(RequestProcessor(dict(headers)))
        ids = [original_ids.get(owner) for owner in owners]
        # TorchServe may hand a worker two of our batches at once (even at delay 0 it takes a job already
        # queued behind the first): the handler still gets at most batch size client requests per call.
        size = int((getattr(context, "system_properties", None) or {}).get("batch_size") or 0) or max(len(units), 1)
        results: list[Any] = []
        try:
            for start in range(0, len(units), size):
                context.request_processor = processors[start:start + size]
                context.request_ids = dict(enumerate(ids[start:start + size]))
                results += self.handle(units[start:start + size], context) or []
        finally:
            context.request_processor, context.request_ids = original, original_ids
        parts: list[list[tuple[int, bytes]]] = [[] for _ in data]
        plain: dict[int, Any] = {}
        for owner, result, processor in zip(owners, results, processors):
            if owner not in many:
                plain[owner] = result
                continue
            parts[owner].append((processor.get_response_status_code() or 200, bytes(result)))
        return [plain[i] if i in plain else framing.pack_many_answers(parts[i]) for i in range(len(data))]

    def _alone(self, index: int, request: Any, context: Any) -> Any:
        """Request ``index`` of the batch through the handler on its own (a batch of one)."""
        processors, ids = context.request_processor, context.request_ids
        context.request_processor, context.request_ids = [processors[index]], {0: (ids or {}).get(index)}
        try:
            return (self.handle([request], context) or [None])[0]
        finally:
            context.request_processor, context.request_ids = processors, ids

    def _handle_rows(self, data: list[Any], context: Any) -> list[Any]:
        original, original_ids = context.request_processor, context.request_ids or {}
        flat: list[Any] = []
        owners: list[tuple[int, bool]] = []  # (request index, framed)
        refused: dict[int, bytes] = {}
        processors = []
        for index, request in enumerate(data):
            body = request.get("body") if isinstance(request, dict) else None
            if not isinstance(body, (bytes, bytearray)) or not framing.is_rows(body):
                flat.append(request)
                owners.append((index, False))
                processors.append(original[index])
                continue
            headers = dict(original[index].get_request_properties())
            try:
                unpacked = _unpack(bytes(body))
            except rows.RowError as exc:  # a v1 body a client got wrong: its request alone answers 400
                original[index].report_status(400, reason_phrase="InvalidInput")
                refused[index] = rows.to_json({"code": 400, "type": "InvalidInput", "message": str(exc)})
                continue
            for row in unpacked:
                flat.append(row)
                owners.append((index, True))
                processors.append(RequestProcessor(dict(headers)))
        context.request_processor = processors
        context.request_ids = {i: original_ids.get(owner) for i, (owner, _) in enumerate(owners)}
        try:
            results = self._handle_fn(flat, context) if flat else []
        finally:
            context.request_processor, context.request_ids = original, original_ids
        if results is None or len(results) != len(flat):
            raise ValueError(f"the handler answered {0 if results is None else len(results)} rows for {len(flat)}")
        answers: list[list[framing.Answer]] = [[] for _ in data]
        plain: dict[int, Any] = {}
        for (owner, framed), result, processor in zip(owners, results, processors):
            if not framed:
                plain[owner] = result
                continue
            status = processor.get_response_status_code() or 200
            phrase = processor.get_response_status_phrase() or ""
            answers[owner].append((status, phrase, *_encode(result)))
        return [plain[i] if i in plain else refused[i] if i in refused else framing.pack_answers(answers[i])
                for i in range(len(data))]


def _refused(processor: Any, exc: PredictionException) -> bytes:
    """A request the handler refused: its status, and TorchServe's error body with the handler's message."""
    processor.report_status(exc.error_code, reason_phrase="PredictionException")
    return rows.to_json({"code": exc.error_code, "type": "PredictionException", "message": exc.message})
