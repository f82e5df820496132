"""backend/batcher.py: client requests made into batches in our process, as TorchServe's batcher would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kserve_torchserve.backend.batcher import Batcher
from kserve_torchserve.errors import UpstreamError
from kserve_torchserve.model_store.handlers import framing


class Upstream:
    """Stands where TorchServe and our envelope are: records each request; answers each client request
    with its own frame back (``answer`` decides), once ``release`` is set."""

    def __init__(self, hold: bool = False) -> None:
        self.sent: list[list[bytes]] = []  # per TorchServe request: the client requests' frames in it
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.fail: Exception | None = None
        self.statuses: dict[bytes, int] = {}  # frame -> the status our envelope would give it
        self.raw: bytes | None = None  # answer this instead

    async def send(self, frame: bytes) -> bytes:
        frames = framing.unpack_many(frame) if framing.is_many(frame) else [frame]
        self.sent.append(frames)
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        if self.raw is not None:
            return self.raw
        if not framing.is_many(frame):
            return b"answer:" + frame
        return framing.pack_many_answers([(self.statuses.get(f, 200), b"answer:" + f) for f in frames])


def frame(i: int) -> bytes:
    return framing.pack_v1(b'{"instances": [%d]}' % i)


def batcher(upstream: Upstream, size: int = 4, delay_s: float = 10.0, slots: int = 2, max_bytes: int | None = None,
            max_waiting: int = 100) -> Batcher:
    return Batcher("m", upstream.send, size, delay_s, slots, max_bytes, max_waiting)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_full_batch_goes_at_once_as_one_request_answered_per_caller() -> None:
    async def main() -> Any:
        upstream = Upstream()
        b = batcher(upstream, size=3)  # a 10-s delay: only a full batch can go
        results = await asyncio.wait_for(asyncio.gather(*(b.submit(frame(i)) for i in range(3))), 5)
        return upstream.sent, results

    sent, results = asyncio.run(main())
    assert sent == [[frame(0), frame(1), frame(2)]]
    assert results == [(200, b"answer:" + frame(i)) for i in range(3)]


def test_a_partial_batch_waits_for_its_oldest_requests_delay_then_goes() -> None:
    async def main() -> Any:
        upstream = Upstream()
        b = batcher(upstream, size=8, delay_s=0.2)
        tasks = [asyncio.ensure_future(b.submit(frame(i))) for i in range(2)]
        await asyncio.sleep(0.05)
        early = list(upstream.sent)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return early, upstream.sent, results

    early, sent, results = asyncio.run(main())
    assert early == []  # not full, not due
    assert sent == [[frame(0), frame(1)]]
    assert [status for status, _ in results] == [200, 200]


def test_a_request_alone_goes_as_its_own_frame() -> None:
    async def main() -> Any:
        upstream = Upstream()
        result = await asyncio.wait_for(batcher(upstream, size=8, delay_s=0.01).submit(frame(7)), 5)
        return upstream.sent, result

    sent, result = asyncio.run(main())
    assert sent == [[frame(7)]] and result == (200, b"answer:" + frame(7))


def test_with_every_slot_busy_requests_gather_into_the_next_batch() -> None:
    async def main() -> Any:
        upstream = Upstream(hold=True)
        b = batcher(upstream, size=4, delay_s=0.0, slots=1)  # no delay: only a busy slot makes batches
        first = asyncio.ensure_future(b.submit(frame(0)))
        await settle()
        rest = [asyncio.ensure_future(b.submit(frame(i))) for i in range(1, 7)]
        await settle()
        while_busy = [list(s) for s in upstream.sent]
        upstream.release.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), 5)
        return while_busy, upstream.sent, b.in_flight

    while_busy, sent, in_flight = asyncio.run(main())
    assert while_busy == [[frame(0)]]  # one slot, taken: the others wait here, not in TorchServe
    assert sent == [[frame(0)], [frame(i) for i in range(1, 5)], [frame(5), frame(6)]]
    assert in_flight == 0


def test_more_slots_let_more_batches_go_at_once() -> None:
    async def main() -> Any:
        upstream = Upstream(hold=True)
        b = batcher(upstream, size=1, slots=1)
        tasks = [asyncio.ensure_future(b.submit(frame(i))) for i in range(3)]
        await settle()
        before = len(upstream.sent)
        b.set_slots(3)
        await settle()
        after = len(upstream.sent)
        upstream.release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return before, after

    assert asyncio.run(main()) == (1, 3)


def test_a_failed_torchserve_request_fails_every_caller_in_it() -> None:
    async def main() -> Any:
        upstream = Upstream()
        upstream.fail = UpstreamError(503, "model m is unavailable")
        b = batcher(upstream, size=2)
        return await asyncio.wait_for(asyncio.gather(*(b.submit(frame(i)) for i in range(2)),
                                                     return_exceptions=True), 5)

    results = asyncio.run(main())
    assert [(type(r), r.http_status) for r in results] == [(UpstreamError, 503)] * 2  # type: ignore[union-attr]


def test_a_request_refused_in_the_batch_fails_alone() -> None:
    async def main() -> Any:
        upstream = Upstream()
        upstream.statuses[frame(1)] = 400
        b = batcher(upstream, size=3)
        return await asyncio.wait_for(asyncio.gather(*(b.submit(frame(i)) for i in range(3))), 5)

    assert [status for status, _ in asyncio.run(main())] == [200, 400, 200]


def test_an_answer_without_our_envelope_fails_the_batch_with_a_500() -> None:
    async def main() -> Any:
        upstream = Upstream()
        upstream.raw = b"[1, 2]"  # TorchServe answered, but not through our envelope
        b = batcher(upstream, size=2)
        return await asyncio.wait_for(asyncio.gather(*(b.submit(frame(i)) for i in range(2)),
                                                     return_exceptions=True), 5)

    for result in asyncio.run(main()):
        assert isinstance(result, UpstreamError) and result.http_status == 500
        assert "service_envelope" in result.message


def test_a_caller_that_gives_up_while_waiting_leaves_its_batch() -> None:
    async def main() -> Any:
        upstream = Upstream()
        b = batcher(upstream, size=3)
        gone = asyncio.ensure_future(b.submit(frame(0)))
        await settle()
        gone.cancel()
        await settle()
        results = await asyncio.wait_for(asyncio.gather(*(b.submit(frame(i)) for i in range(1, 4))), 5)
        return upstream.sent, results

    sent, results = asyncio.run(main())
    assert sent == [[frame(1), frame(2), frame(3)]]
    assert len(results) == 3


def test_a_caller_that_gives_up_after_its_batch_went_leaves_the_others_answered() -> None:
    async def main() -> Any:
        upstream = Upstream(hold=True)
        b = batcher(upstream, size=2)
        gone, stays = asyncio.ensure_future(b.submit(frame(0))), asyncio.ensure_future(b.submit(frame(1)))
        await settle()
        gone.cancel()
        upstream.release.set()
        return await asyncio.wait_for(stays, 5), gone.cancelled()

    assert asyncio.run(main()) == ((200, b"answer:" + frame(1)), True)


def test_a_batch_stays_within_torchserves_max_request_size() -> None:
    async def main() -> Any:
        upstream = Upstream()
        limit = framing.many_size(2 * len(frame(0)), 2)  # room for two frames, not three
        b = batcher(upstream, size=3, delay_s=0.1, max_bytes=limit)  # the one left over goes when due
        await asyncio.wait_for(asyncio.gather(*(b.submit(frame(i)) for i in range(3))), 5)
        return upstream.sent, limit

    sent, limit = asyncio.run(main())
    assert sent[0] == [frame(0), frame(1)]
    assert all(len(framing.pack_many(frames)) <= limit for frames in sent if len(frames) > 1)
    assert sorted(f for frames in sent for f in frames) == sorted(frame(i) for i in range(3))


def test_one_timer_per_batch_not_one_per_request() -> None:
    async def main() -> Any:
        upstream = Upstream()
        b = batcher(upstream, size=8, delay_s=0.1)
        loop = asyncio.get_running_loop()
        armed = []
        call_at = loop.call_at

        def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            if getattr(callback, "__self__", None) is b:  # the batcher's (wait_for arms one of its own)
                armed.append(when)
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = counting  # type: ignore[method-assign,assignment]
        await asyncio.wait_for(asyncio.gather(*(b.submit(frame(i)) for i in range(5))), 5)
        return armed, upstream.sent

    armed, sent = asyncio.run(main())
    assert len(armed) == 1 and len(sent) == 1


@pytest.mark.parametrize("size", [1, 2, 5])
def test_every_caller_gets_exactly_its_own_answer_under_load(size: int) -> None:
    async def main() -> Any:
        upstream = Upstream()
        # Room for all 200 to wait: on a slow machine most of them can be waiting at once, and
        # this test is about who gets which answer; refusal past the limit has its own test below.
        b = batcher(upstream, size=size, delay_s=0.001, slots=2, max_waiting=200)

        async def call(i: int) -> tuple[int, bytes]:
            await asyncio.sleep((i % 7) / 1000)
            return await b.submit(frame(i))

        return await asyncio.wait_for(asyncio.gather(*(call(i) for i in range(200))), 10), upstream.sent

    results, sent = asyncio.run(main())
    assert results == [(200, b"answer:" + frame(i)) for i in range(200)]
    assert max(len(frames) for frames in sent) <= size


def test_past_the_queues_limit_a_request_is_refused_as_overloaded() -> None:
    async def main() -> Any:
        upstream = Upstream(hold=True)
        b = Batcher("m", upstream.send, 2, 0.05, 1, None, max_waiting=3)
        waiting = [asyncio.ensure_future(b.submit(frame(i))) for i in range(5)]  # 2 in flight, 3 waiting
        await settle()
        with pytest.raises(UpstreamError) as refused:
            await b.submit(frame(9))
        upstream.release.set()
        await asyncio.wait_for(asyncio.gather(*waiting), 5)
        return refused.value

    refused = asyncio.run(main())
    assert refused.http_status == 503 and "overloaded" in refused.message and refused.retry_after_s
