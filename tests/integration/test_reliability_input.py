"""Hostile and broken input against the real server (issue #16, rows 1, 2, 3 and 18).

One server serves the digits example for the whole module. Every bad request must get a
4xx with ``{"error": "<one short line>"}`` (never the input echoed, under 4 KB), over v1,
v2 REST and v2 gRPC alike; oversized and slow requests are cut off without holding up
anyone else; and each client error writes at most one line to the server's log.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from typing import Any, Iterator

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from kserve_torchserve.serving.deadlines import BODY_TIMEOUT_S, HEADER_TIMEOUT_S
from tests.helpers import Server, http, running

pytestmark = pytest.mark.integration
MARKER = "MARKER-5c2f"  # in every bad body: an answer that holds it echoed the input
LIMIT = 6553600  # TorchServe's default max_request_size: the server runs with it
PIXELS = [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0] * 8
V1, V2 = "/v1/models/digits:predict", "/v2/models/digits/infer"


@pytest.fixture(scope="module")
def server(digits: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(Server(digits["store"], tmp_path_factory.mktemp("reliability-input"), model_name="digits")) as srv:
        yield srv


def _tensor(datatype: str = "FP32", shape: list[int] | None = None, data: Any = None, name: str = "pixels") -> Any:
    return {"name": name, "shape": [1, 64] if shape is None else shape, "datatype": datatype,
            "data": PIXELS if data is None else data}


def _assert_short_error(status: int, body: Any, expected: tuple[int, ...]) -> str:
    assert status in expected, (status, str(body)[:300])
    assert isinstance(body, dict) and list(body) == ["error"], str(body)[:300]
    message = body["error"]
    assert isinstance(message, str) and "\n" not in message and MARKER not in message
    assert len(json.dumps(body)) < 4096
    return message


DEEP = b"[" * 100_000 + b"]" * 100_000
BAD_BODIES = [  # (id, path, raw body, content type, statuses allowed)
    ("malformed-v1", V1, f'{{"instances": ["{MARKER}", '.encode(), "application/json", (400,)),
    ("malformed-v2", V2, f'{{"inputs": [{{"name": "{MARKER}", '.encode(), "application/json", (400,)),
    ("non-utf8-v1", V1, f'{{"instances": ["{MARKER}\xff\xfe"]}}'.encode("latin-1"), "application/json", (400,)),
    ("non-utf8-v2", V2, json.dumps({"inputs": [_tensor(name=MARKER)]}).encode().replace(b"MARKER", b"\xff\xfeMARKER"),
     "application/json", (400,)),
    ("deep-v1", V1, DEEP, "application/json", (400,)),
    ("deep-v2", V2, DEEP, "application/json", (400,)),
    ("text-plain-v1", V1, json.dumps({"instances": [PIXELS], "x": MARKER}).encode(), "text/plain", (415,)),
    ("text-plain-v2", V2, json.dumps({"inputs": [_tensor()], "x": MARKER}).encode(), "text/plain", (415,)),
    ("empty-v1", V1, b"", "application/json", (400,)),
    ("empty-v2", V2, b"", "application/json", (400,)),
    ("v1-body-on-v2", V2, json.dumps({"instances": [[MARKER]]}).encode(), "application/json", (400,)),
    ("v2-body-on-v1", V1, json.dumps({"inputs": [_tensor(name=MARKER)]}).encode(), "application/json", (400,)),
    ("schema-v2", V2, json.dumps({"inputs": [{"name": MARKER, "shape": [1], "datatype": "FP32"}]}).encode(),
     "application/json", (400,)),
]


@pytest.mark.parametrize("path,raw,content_type,statuses", [case[1:] for case in BAD_BODIES],
                         ids=[case[0] for case in BAD_BODIES])
def test_bad_bodies_get_one_short_error_in_one_format(server: Server, path: str, raw: bytes, content_type: str,
                                                      statuses: tuple[int, ...]) -> None:
    status, body = http("POST", server.url + path, raw=raw, headers={"Content-Type": content_type})
    _assert_short_error(status, body, statuses)


def test_a_large_body_failing_the_v2_schema_is_not_echoed(server: Server) -> None:
    """kserve answered a 12.9 MB body failing its schema with 422 and the body inside a 20.6 MB answer."""
    raw = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": MARKER + "x" * 5_000_000}]})
    status, body = http("POST", server.url + V2, raw=raw.encode())
    assert "valid list" in _assert_short_error(status, body, (400,))  # kserve's words: data must be a list


# (id, inputs, words the message must hold: the input, what it got, what fits)
BAD_TENSORS = [
    ("unknown-datatype", [_tensor("FLOAT99")], ["'pixels'", "'FLOAT99'", "FP32"]),
    ("negative-dim", [_tensor(shape=[-1, 64])], ["'pixels'", "[-1, 64]", "at least 1"]),
    ("zero-dim", [_tensor(shape=[0, 64], data=[])], ["'pixels'", "[0, 64]", "at least 1"]),
    ("shape-data-mismatch", [_tensor(data=PIXELS[:10])], ["'pixels'", "[1, 64]", "64 values", "10"]),
    ("fp32-overflow", [_tensor(data=[1e40] + PIXELS[1:])], ["'pixels'", "FP32", "finite"]),
    ("uint8-overflow", [_tensor("UINT8", data=[300] + [1] * 63)], ["'pixels'", "300", "UINT8", "0 to 255"]),
    ("bytes-in-fp32", [_tensor(data=["abc"] + PIXELS[1:])], ["'pixels'", "FP32", "strings (BYTES)", "numbers"]),
    ("100-inputs", [_tensor(name=f"in{i}") for i in range(100)], ["100 inputs", "at most 64"]),
]


def _grpc_request(inputs: list[dict[str, Any]]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="digits")
    for spec in inputs:
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=spec["shape"])
        data = spec["data"]
        if any(isinstance(v, str) for v in data):
            tensor.contents.bytes_contents.extend(str(v).encode() for v in data)
        elif spec["datatype"] == "UINT8":
            tensor.contents.uint_contents.extend(int(v) for v in data)
        else:  # FP32 and the unknown datatype: the values a client would send
            tensor.contents.fp32_contents.extend(data)
    return request


@pytest.mark.parametrize("inputs,words", [case[1:] for case in BAD_TENSORS], ids=[case[0] for case in BAD_TENSORS])
def test_bad_v2_tensors_are_400_naming_the_input_over_rest_and_grpc(server: Server, inputs: list[dict[str, Any]],
                                                                     words: list[str]) -> None:
    status, body = http("POST", server.url + V2, {"inputs": inputs})
    message = _assert_short_error(status, body, (400,))
    assert all(word in message for word in words), message
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as failed:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_grpc_request(inputs), timeout=30)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.value.details() == message  # the same words on both doors


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    return sock


def _response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


def _one_response(sock: socket.socket) -> bytes:
    """One response (its head and Content-Length bytes of body); the connection may stay open."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _head(path: str, extra: str) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{extra}\r\n".encode()


def test_a_body_over_the_limit_is_413_before_it_is_read(server: Server) -> None:
    # Declared too large: answered from the head alone (nothing of the body is ever sent).
    with _connect(server) as sock:
        sock.sendall(_head(V1, f"Content-Length: {LIMIT + 1}\r\n"))
        answer = _one_response(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    message = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert "TS_MAX_REQUEST_SIZE" in message and str(LIMIT) in message
    # Chunked: refused once past the limit, without waiting for the end of the body (never sent). The
    # client stops one byte past the limit: what it sends after the answer would reset the connection.
    with _connect(server) as sock:
        sock.sendall(_head(V2, "Transfer-Encoding: chunked\r\n"))
        left = LIMIT + 1
        while left:
            chunk = b"x" * min(left, 1 << 20)
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            left -= len(chunk)
        answer = _one_response(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # A client that sends its whole body before it reads (urllib) gets the 413 too, not a reset.
    status, body = http("POST", server.url + V1, raw=b"[" * (LIMIT + 1))
    assert "TS_MAX_REQUEST_SIZE" in _assert_short_error(status, body, (413,))
    assert http("POST", server.url + V1, {"instances": [PIXELS]})[0] == 200  # and it serves on


def test_slow_clients_are_cut_after_a_timeout_and_others_are_served_meanwhile(server: Server) -> None:
    """Three slowloris clients (head and body at 1 byte/s, one silent) while a normal client predicts."""
    answers: dict[str, tuple[float, bytes]] = {}

    def slow(kind: str) -> None:
        started = time.monotonic()
        with _connect(server) as sock:
            if kind == "body":
                sock.sendall(_head(V1, "Content-Length: 1000\r\n"))
            dribble = {"head": _head(V1, "Content-Length: 2\r\n"), "body": b"[" * 1000, "silent": b""}[kind]
            try:
                for byte in dribble:
                    sock.sendall(bytes([byte]))
                    sock.settimeout(1.0)
                    try:
                        if sock.recv(65536, socket.MSG_PEEK):
                            break  # the server answered
                    except socket.timeout:
                        continue
                sock.settimeout(30)
                answer = _response(sock)
                answers[kind] = (time.monotonic() - started, answer)
            except OSError as exc:
                answers[kind] = (time.monotonic() - started, repr(exc).encode())

    threads = [threading.Thread(target=slow, args=(kind,)) for kind in ("head", "body", "silent")]
    for thread in threads:
        thread.start()
    served = 0
    while any(thread.is_alive() for thread in threads):
        status, body = http("POST", server.url + V1, {"instances": [PIXELS]}, timeout=10)
        assert status == 200, body
        served += 1
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    assert served >= 10  # one every 0.2 s or so while the slow clients were held: nobody waited on them
    bound = max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 15  # generous: the timeouts plus a loaded CI machine
    for kind in ("head", "body"):
        took, answer = answers[kind]
        assert answer.startswith(b"HTTP/1.1 408 "), (kind, answer[:200])
        assert "error" in json.loads(answer.split(b"\r\n\r\n", 1)[1]) and took < bound
    took, answer = answers["silent"]
    assert answer == b"" and HEADER_TIMEOUT_S - 1 < took < bound  # closed, quietly


OUR_LINE = re.compile(r"^\S+ \S+ [A-Z]+ kserve_torchserve\.")  # our loggers' lines (TorchServe's are "torchserve:")


def _log_from(server: Server, offset: int) -> list[str]:
    return server.log()[offset:].splitlines()


def test_every_client_error_logs_one_line_at_info_and_repeats_fold(server: Server) -> None:
    time.sleep(0.5)  # lines of earlier tests are written
    offset = len(server.log())
    ids = []
    for case in BAD_BODIES:  # one of every kind, each with its own request id
        ids.append(f"bad-{case[0]}-{uuid.uuid4().hex[:6]}")
        http("POST", server.url + case[1], raw=case[2], headers={"Content-Type": case[3], "x-request-id": ids[-1]})
    for _, inputs, _ in BAD_TENSORS:
        ids.append(f"bad-tensor-{uuid.uuid4().hex[:6]}")
        http("POST", server.url + V2, {"inputs": inputs}, headers={"x-request-id": ids[-1]})
    ids.append("bad-instance-for-the-handler")  # refused by the model's own handler in TorchServe's worker
    assert http("POST", server.url + V1, {"instances": [[1, 2, 3]]}, headers={"x-request-id": ids[-1]})[0] == 400
    for _ in range(20):  # the same mistake, again and again
        http("POST", server.url + V1, raw=b"{", headers={"x-request-id": "repeat"})
    time.sleep(1.0)
    lines = _log_from(server, offset)
    assert not any("Traceback" in line for line in lines), "\n".join(lines[:40])
    ours = [line for line in lines if "request failed: " in line]
    assert len(lines) == len(ours), "\n".join(line for line in lines if line not in ours)[:4000]
    assert all(" INFO " in line and "request failed: 4" in line for line in ours), "\n".join(ours)
    for request_id in ids:
        mentioned = [line for line in ours if f"(request id {request_id})" in line]
        # One line each; two kinds whose message is the same fold into the first one's line.
        assert len(mentioned) <= 1, mentioned
    assert len(ours) <= len(ids) + 1  # the 20 repeats wrote one line (its summary comes after 10 s)
    assert sum("(request id repeat)" in line for line in ours) == 1
    (handler,) = [line for line in ours if "bad-instance-for-the-handler" in line]
    assert "request failed: 400 POST /v1/models/digits:predict (request id bad-instance-for-the-handler): " \
           "model digits: expected a list of 64 numbers" in handler


def test_server_failures_log_one_line_and_repeats_fold(server: Server) -> None:
    """5xx: one WARNING line for a burst of the same failure (the handler has no explain path: 501)."""
    time.sleep(0.5)
    offset = len(server.log())
    for _ in range(10):
        status, body = http("POST", server.url + "/v1/models/digits:explain", {"instances": [PIXELS]})
        _assert_short_error(status, body, (501,))
    time.sleep(1.0)
    ours = [line for line in _log_from(server, offset) if OUR_LINE.match(line)]
    assert len(ours) == 1 and " WARNING " in ours[0] and "request failed: 501" in ours[0], ours
