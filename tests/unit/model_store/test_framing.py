"""The frames between our process and TorchServe's workers, and the request envelope that unpacks them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ts.context import Context, RequestProcessor

from kserve_torchserve.model_store.handlers import framing
from kserve_torchserve.model_store.handlers.rows_envelope import RowsEnvelope


def test_rows_and_answers_round_trip() -> None:
    rows = [{"data": b"[1,2]"}, {"input_ids": b"[101]", "attention_mask": b"[1]"}, {"data": b""}, {}]
    assert framing.unpack_rows(framing.pack_rows(rows)) == rows
    answers = [(200, "", b'{"a":1}', True), (422, "rejected: too short", b"rejected", False),
               (200, "", b"\x00\xff", False)]
    assert framing.unpack_answers(framing.pack_answers(answers)) == answers


@pytest.mark.parametrize("broken", [b"", b"KTR1", b"KTR1\x00\x00\x00\x02\x00\x01", b"KTA1\x00\x00\x00\x00extra",
                                    b"XXXX\x00\x00\x00\x00"])
def test_malformed_frames_are_refused(broken: bytes) -> None:
    with pytest.raises(framing.FrameError):
        framing.unpack_rows(broken) if not broken.startswith(b"KTA1") else framing.unpack_answers(broken)


def context(requests: int) -> Context:
    ctx = Context("m", "/tmp", {"model": {"modelVersion": "1.0"}}, 8, None, "0.12.0")
    ctx.request_processor = [RequestProcessor({"x-request": str(i), "explain": "False"}) for i in range(requests)]
    ctx.request_ids = {i: f"req-{i}" for i in range(requests)}
    return ctx


def test_the_handler_sees_one_row_per_instance_across_requests_and_answers_go_back_per_request() -> None:
    seen: list[Any] = []

    def handle(data: list[Any], ctx: Context) -> list[Any]:
        seen.append((data, [ctx.get_request_header(i, "x-request") for i in range(len(data))],
                     [ctx.get_request_id(i) for i in range(len(data))]))
        for i, row in enumerate(data):
            if row.get("data") == b"bad":
                ctx.set_response_status(422, "rejected: bad", i)
        return [{"got": row["data"].decode()} if isinstance(row.get("data"), bytes) else "plain" for row in data]

    first = framing.pack_rows([{"data": b"a"}, {"data": b"bad"}])
    second = framing.pack_rows([{"data": b"c"}])
    ctx = context(3)
    out = RowsEnvelope(handle).handle([{"body": first}, {"body": second}, {"data": [1]}], ctx)
    rows, headers, ids = seen[0]
    assert rows == [{"data": b"a"}, {"data": b"bad"}, {"data": b"c"}, {"data": [1]}]  # one handler call: batched
    assert headers == ["0", "0", "1", "2"] and ids == ["req-0", "req-0", "req-1", "req-2"]
    assert framing.unpack_answers(out[0]) == [(200, "", b'{"got":"a"}', True),
                                              (422, "rejected: bad", b'{"got":"bad"}', True)]
    assert framing.unpack_answers(out[1]) == [(200, "", b'{"got":"c"}', True)]
    assert out[2] == "plain"  # a request that is not a frame is answered as without the envelope
    assert [p.get_request_property("x-request") for p in ctx.request_processor] == ["0", "1", "2"]  # restored


def test_a_batch_without_frames_passes_through() -> None:
    calls = []

    def handle(data: list[Any], ctx: Context) -> list[Any]:
        calls.append(data)
        return ["x"] * len(data)

    assert RowsEnvelope(handle).handle([{"data": b"1"}], context(1)) == ["x"]
    assert calls == [[{"data": b"1"}]]


def test_a_wrong_answer_count_fails_the_batch() -> None:
    with pytest.raises(ValueError, match="answered 1 rows for 2"):
        RowsEnvelope(lambda data, ctx: ["one"]).handle([{"body": framing.pack_rows([{"data": b"a"}] * 2)}],
                                                        context(1))


def test_a_v1_body_becomes_rows_in_the_worker_as_our_codec_makes_them() -> None:
    from kserve_torchserve.serving import codec

    body = b'{"instances": [[1, 2.5], "text", {"b64": "AAE="}, {"input_ids": [1], "mask": [1]}]}'
    seen: list[Any] = []

    def handle(data: list[Any], ctx: Context) -> list[Any]:
        seen.extend(data)
        return [b"raw", "text", {"n": 1}, [1, 2]]

    out = RowsEnvelope(handle).handle([{"body": framing.pack_v1(body)}], context(1))
    assert seen == codec.v1_rows(body)  # the same rows our process would have sent
    answers = framing.unpack_answers(out[0])
    assert answers == [(200, "", b"raw", False), (200, "", b"text", False), (200, "", b'{"n":1}', True),
                       (200, "", b"[1,2]", True)]
    assert codec.v1_answer([(b, j) for _, _, b, j in answers]) == b'{"predictions":["raw","text",{"n":1},[1,2]]}'
    spliced = [(b'{"n":1}', True), (b"[1,2]", True)]
    assert codec.v1_answer(spliced) == b'{"predictions":[{"n":1},[1,2]]}'


@pytest.mark.parametrize("body,message", [
    (b"{not json", "Unrecognized request format: "),
    (b'{"instance": [1]}', 'v1 request needs "instances"'),
    (b'{"instances": []}', '"instances" is empty'),
])
def test_a_bad_v1_body_is_refused_alone_with_a_400(body: bytes, message: str) -> None:
    ctx = context(2)
    out = RowsEnvelope(lambda data, c: ["ok"] * len(data)).handle(
        [{"body": framing.pack_v1(body)}, {"body": framing.pack_v1(b'{"instances": [1]}')}], ctx)
    refused = json.loads(out[0])
    assert refused["code"] == 400 and refused["type"] == "InvalidInput" and message in refused["message"]
    assert ctx.request_processor[0].get_response_status_code() == 400
    assert framing.unpack_answers(out[1]) == [(200, "", b"ok", False)]  # the other request is answered


def test_a_v2_body_sent_to_v1_is_named_as_such() -> None:
    body = b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}'
    out = RowsEnvelope(lambda data, c: ["ok"] * len(data)).handle([{"body": framing.pack_v1(body)}], context(1))
    assert "this is a v2 body" in json.loads(out[0])["message"]
    columnar = b'{"inputs": [[1, 2]]}'  # TF Serving's v1 form stays an instance list
    out = RowsEnvelope(lambda data, c: ["ok"] * len(data)).handle([{"body": framing.pack_v1(columnar)}], context(1))
    assert framing.unpack_answers(out[0]) == [(200, "", b"ok", False)]


def _refusing(calls: list[list[Any]]) -> Any:
    """A handler that refuses a whole batch holding a "bad" row, as handlers raising PredictionException do."""
    from ts.utils.util import PredictionException

    def handle(data: list[Any], ctx: Context) -> list[Any]:
        calls.append(data)
        if any(row.get("data") == b"bad" for row in data):
            raise PredictionException("expected a number", 400)
        return ["ok"] * len(data)

    return handle


def test_a_handlers_client_error_answers_its_request_without_a_traceback() -> None:
    calls: list[list[Any]] = []
    ctx = context(1)
    out = RowsEnvelope(_refusing(calls)).handle([{"body": framing.pack_rows([{"data": b"1"}, {"data": b"bad"}])}], ctx)
    assert json.loads(out[0]) == {"code": 400, "type": "PredictionException", "message": "expected a number"}
    assert ctx.request_processor[0].get_response_status_code() == 400 and len(calls) == 1


def test_a_handlers_client_error_in_a_batch_fails_only_the_request_it_came_from() -> None:
    calls: list[list[Any]] = []
    ctx = context(2)
    out = RowsEnvelope(_refusing(calls)).handle([{"body": framing.pack_rows([{"data": b"bad"}])},
                                                 {"body": framing.pack_rows([{"data": b"2"}, {"data": b"3"}])}], ctx)
    assert json.loads(out[0])["message"] == "expected a number"
    assert framing.unpack_answers(out[1]) == [(200, "", b"ok", False)] * 2  # the other client's answers
    assert len(calls) == 3  # the batch, then each request alone
    assert [p.get_response_status_code() for p in ctx.request_processor] == [400, 200]
    assert ctx.request_ids == {0: "req-0", 1: "req-1"}  # restored


def test_a_handlers_server_error_is_left_to_torchserve() -> None:
    from ts.utils.util import PredictionException

    def handle(data: list[Any], ctx: Context) -> list[Any]:
        raise PredictionException("out of memory", 507)

    with pytest.raises(PredictionException):
        RowsEnvelope(handle).handle([{"body": framing.pack_rows([{"data": b"1"}])}], context(1))


def test_many_frames_and_their_answers_round_trip() -> None:
    frames = [framing.pack_v1(b'{"instances": [1]}'), framing.pack_rows([{"data": b"2"}])]
    packed = framing.pack_many(frames)
    assert framing.is_many(packed) and not framing.is_rows(packed)
    assert framing.unpack_many(packed) == frames and len(packed) == framing.many_size(sum(map(len, frames)), 2)
    answers = [(200, framing.pack_answers([(200, "", b"1", True)])), (400, b'{"code":400}')]
    assert framing.unpack_many_answers(framing.pack_many_answers(answers)) == answers


@pytest.mark.parametrize("broken", [b"KTM1", b"KTM1\x00\x00\x00\x01\x00\x00\x00\x09KTV1", b"KTM1\x00\x00\x00\x00x",
                                    framing.pack_many([b"XXXXnot a frame"]), framing.pack_many([framing.pack_many([])])])
def test_malformed_many_frames_are_refused(broken: bytes) -> None:
    with pytest.raises(framing.FrameError):
        framing.unpack_many(broken)


def test_each_client_request_of_a_many_frame_is_a_request_of_its_own_in_the_batch() -> None:
    """Batched in front: the handler sees the rows of every client request of every TorchServe request in
    one call, each row with its TorchServe request's headers and id; a v1 body a client got wrong is
    refused alone, a row's status stays its own; answers go back per client request."""
    seen: list[Any] = []

    def handle(data: list[Any], ctx: Context) -> list[Any]:
        seen.append((data, [ctx.get_request_header(i, "x-request") for i in range(len(data))],
                     [ctx.get_request_id(i) for i in range(len(data))]))
        for i, row in enumerate(data):
            if row.get("data") == b"bad":  # a string instance reaches the handler as its bytes
                ctx.set_response_status(422, "rejected: bad", i)
        return [row["data"].decode() if isinstance(row.get("data"), bytes) else "plain" for row in data]

    many = framing.pack_many([framing.pack_v1(b'{"instances": [1, "bad"]}'), framing.pack_v1(b'{"instances": []}'),
                              framing.pack_rows([{"data": b"3"}])])
    ctx = context(3)
    out = RowsEnvelope(handle).handle([{"body": many}, {"body": framing.pack_v1(b'{"instances": [4]}')},
                                       {"data": [5]}], ctx)
    rows, headers, ids = seen[0]
    assert len(seen) == 1  # one handler call for the whole batch
    assert rows == [{"data": b"1"}, {"data": b"bad"}, {"data": b"3"}, {"data": b"4"}, {"data": [5]}]
    assert headers == ["0", "0", "0", "1", "2"] and ids == ["req-0", "req-0", "req-0", "req-1", "req-2"]
    first, empty, third = framing.unpack_many_answers(out[0])
    assert first == (200, framing.pack_answers([(200, "", b"1", False), (422, "rejected: bad", b"bad", False)]))
    assert empty[0] == 400 and '"instances" is empty' in json.loads(empty[1])["message"]
    assert third == (200, framing.pack_answers([(200, "", b"3", False)]))
    assert framing.unpack_answers(out[1]) == [(200, "", b"4", False)]
    assert out[2] == "plain"
    assert [p.get_response_status_code() for p in ctx.request_processor] == [200, 200, 200]  # the requests' own
    assert ctx.request_ids == {0: "req-0", 1: "req-1", 2: "req-2"}  # restored


def test_a_handlers_client_error_fails_only_the_client_request_of_a_many_frame_it_came_from() -> None:
    calls: list[list[Any]] = []
    many = framing.pack_many([framing.pack_rows([{"data": b"1"}]), framing.pack_rows([{"data": b"bad"}]),
                              framing.pack_rows([{"data": b"3"}])])
    out = RowsEnvelope(_refusing(calls)).handle([{"body": many}], context(1))
    answers = framing.unpack_many_answers(out[0])
    assert [status for status, _ in answers] == [200, 400, 200]
    assert json.loads(answers[1][1])["message"] == "expected a number"
    assert framing.unpack_answers(answers[0][1]) == [(200, "", b"ok", False)]
    assert len(calls) == 4  # the batch, then each client request alone


def test_two_many_frames_in_one_worker_batch_reach_the_handler_at_most_batch_size_client_requests_at_a_time() -> None:
    """TorchServe at delay 0 still hands a worker a second job already queued: 2 x 3 client requests with
    batch size 4 are two handler calls (4, then 2), each request answered in its own frame."""
    calls: list[list[Any]] = []

    def handle(data: list[Any], ctx: Context) -> list[Any]:
        calls.append(data)
        return [row["data"].decode() + f"@{ctx.get_request_id(i)}" for i, row in enumerate(data)]

    ctx = Context("m", "/tmp", {"model": {"modelVersion": "1.0"}}, 4, None, "0.12.0")
    ctx.request_processor = [RequestProcessor({}) for _ in range(2)]
    ctx.request_ids = {0: "job-0", 1: "job-1"}
    jobs = [{"body": framing.pack_many([framing.pack_rows([{"data": b"%d" % (3 * j + k)}]) for k in range(3)])}
            for j in range(2)]
    out = RowsEnvelope(handle).handle(jobs, ctx)
    assert [len(c) for c in calls] == [4, 2]
    answers = [framing.unpack_answers(body)[0][2] for job in out for _, body in framing.unpack_many_answers(job)]
    assert answers == [b"0@job-0", b"1@job-0", b"2@job-0", b"3@job-1", b"4@job-1", b"5@job-1"]
    assert ctx.request_ids == {0: "job-0", 1: "job-1"}
