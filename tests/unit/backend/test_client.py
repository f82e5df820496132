"""The TorchServe client: frames and rows (its error mapping: test_failures.py)."""

from __future__ import annotations

from typing import Any

import pytest


async def test_rows_travel_in_frames_no_bigger_than_torchservers_limit(tmp_path: Any) -> None:
    from kserve_torchserve.backend.auth import TokenSource
    from kserve_torchserve.backend.client import TorchServeClient
    from kserve_torchserve.errors import UpstreamError
    from kserve_torchserve.model_store.handlers import framing

    client = TorchServeClient("127.0.0.1:1", "127.0.0.1:1", TokenSource(tmp_path / "k", "", enabled=False),
                              inference_url="http://127.0.0.1:1", max_request_bytes=100)
    try:
        rows = [{"data": bytes(30)} for _ in range(7)]
        frames = client.frames(rows, "m")
        assert all(len(frame) <= 100 for _, frame in frames) and len(frames) > 1
        assert [row for _, frame in frames for row in framing.unpack_rows(frame)] == rows
        assert [first for first, _ in frames] == [0, 2, 4, 6]
        with pytest.raises(UpstreamError) as info:
            client.frames([{"data": b"x"}, {"data": bytes(200)}], "m")
        assert info.value.http_status == 413 and info.value.message.startswith("instance 1:")
    finally:
        await client.close()
