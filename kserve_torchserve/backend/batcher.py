"""Dynamic batching in our process: several client requests in one TorchServe request.

Why: TorchServe's own batcher pays per request, not per batch. Java parses, queues and
answers every HTTP request, and the worker decodes and encodes every one; our process pays
one upstream exchange per client request: with batching on (W1, batch 8), Java's 0.09 ms per
request, most of the worker's 0.17 and part of our 0.10 (benchmarks/README.md has the figures).
Here the batch is made before TorchServe: up to ``size`` client requests go as one request
(``framing.pack_many``), which TorchServe, told max batch delay 0 (registration.py), hands
straight to a worker, where our envelope (rows_envelope.py) treats each client request as a
request of its own in the batch, so the handler sees the same batches as with TorchServe's
batcher: at most ``size`` client requests, and a request waits at most ``delay_s`` for others.

Like TorchServe's batcher, a batch goes when it is full or its oldest request has waited
``delay_s``, and only when a worker can take it: at most ``slots`` batches are in flight
(the model's workers, plus one queued in TorchServe so that a worker finishing a batch finds
the next one there). While every slot is busy, requests gather into the next batch instead
of queueing in TorchServe one small batch each. A batch also stays within TorchServe's
max_request_size. At most ``max_waiting`` requests wait here (the model sets job_queue_size
batches' worth: TorchServe's queue held that many of its requests, which are batches now): one
more is refused, as TorchServe refuses a request to a full queue. One timer per batch, never one per request.

A client request cancelled while it waits leaves its batch; one cancelled after its batch
went is answered into nothing. A failure of the whole TorchServe request (worker died,
timeout, TorchServe gone) is every client request's failure in it, as it is with
TorchServe's batcher; a request the handler or our envelope refuses fails alone.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Awaitable, Callable

import grpc

from ..errors import RETRY_AFTER_S, UpstreamError
from ..model_store.handlers import framing

# (status, body) of one client request: an answers frame (status < 300), or the error body of its refusal.
Result = tuple[int, bytes]


class Batcher:
    def __init__(self, name: str, send: Callable[[bytes], Awaitable[bytes]], size: int, delay_s: float,
                 slots: int, max_bytes: int | None = None, max_waiting: int = 100) -> None:
        self.name = name  # the model's, for messages
        self._send = send  # one frame to TorchServe -> its answer (UpstreamError on failure)
        self.size = size
        self.delay_s = delay_s
        self.slots = max(1, slots)
        self._max_bytes = max_bytes
        self._max_waiting = max_waiting
        self._pending: collections.deque[tuple[bytes, asyncio.Future[Result], float]] = collections.deque()
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None  # when it fires: re-armed only when the oldest request changes
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return self._in_flight

    def set_slots(self, slots: int) -> None:
        """Batches allowed in flight at once (the workers changed)."""
        self.slots = max(1, slots)
        self._flush()

    async def submit(self, frame: bytes) -> Result:
        """One client request's rows or v1 frame -> its (status, body), once its batch is answered."""
        if len(self._pending) >= self._max_waiting:
            raise UpstreamError(503, f"model {self.name} is overloaded: {len(self._pending)} requests wait for a batch, "
                                     "its queue's limit (TS_JOB_QUEUE_SIZE); retry later",
                                retry_after_s=RETRY_AFTER_S, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((frame, future, loop.time()))
        self._flush()
        return await future  # cancelled: the future is too, and _take skips it

    def _flush(self) -> None:
        """Send every batch that is due and has a slot; then time the oldest request still waiting."""
        loop = asyncio.get_running_loop()
        while self._in_flight < self.slots:
            while self._pending and self._pending[0][1].done():  # cancelled while waiting
                self._pending.popleft()
            if not self._pending:
                break
            if len(self._pending) < self.size and loop.time() < self._pending[0][2] + self.delay_s:
                break
            self._start(self._take())
        # Not full and a slot free: the batch goes when its oldest request is due. With every slot
        # busy, the batch that ends frees one and flushes.
        due = self._pending[0][2] + self.delay_s if self._pending and self._in_flight < self.slots else None
        if due != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(due, self._expire) if due is not None else None
            self._timer_at = due

    def _expire(self) -> None:
        self._timer, self._timer_at = None, None
        self._flush()

    def _take(self) -> list[tuple[bytes, asyncio.Future[Result]]]:
        batch: list[tuple[bytes, asyncio.Future[Result]]] = []
        size = 0
        while self._pending and len(batch) < self.size:
            frame, future, _ = self._pending[0]
            if future.done():
                self._pending.popleft()
                continue
            if (batch and self._max_bytes is not None
                    and framing.many_size(size + len(frame), len(batch) + 1) > self._max_bytes):
                break  # the rest goes in the next batch
            self._pending.popleft()
            batch.append((frame, future))
            size += len(frame)
        return batch

    def _start(self, batch: list[tuple[bytes, asyncio.Future[Result]]]) -> None:
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[bytes, asyncio.Future[Result]]]) -> None:
        futures = [future for _, future in batch]
        try:
            if len(batch) == 1:  # alone: the request as it would go without us batching
                results = [(200, await self._send(batch[0][0]))]
            else:
                raw = await self._send(framing.pack_many([frame for frame, _ in batch]))
                results = _unpack(raw, len(batch), self.name)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        else:
            for future, result in zip(futures, results):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._flush()


def _unpack(raw: bytes, count: int, name: str) -> list[Result]:
    try:
        results = framing.unpack_many_answers(raw)
    except framing.FrameError:
        results = []
    if len(results) != count:
        raise UpstreamError(500, f"model {name} answered a batch of {count} requests without our request "
                                 "envelope's answers: is TorchServe's service_envelope changed?")
    return results
