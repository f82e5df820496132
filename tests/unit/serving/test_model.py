"""TorchServeModel's refusals when it cannot take a request (serving itself: integration)."""

from __future__ import annotations

import pytest

from kserve_torchserve.config.model_config import ModelSpec
from kserve_torchserve.errors import UpstreamError
from kserve_torchserve.serving.model import TorchServeModel


def _model() -> TorchServeModel:
    return TorchServeModel(ModelSpec("m", "1.0", "m.mar", "h"), None, 120, 100)  # type: ignore[arg-type]


def test_a_model_not_ready_yet_is_503_with_retry_after() -> None:
    with pytest.raises(UpstreamError) as info:
        _model().check_ready()
    assert (info.value.http_status, info.value.retry_after_s) == (503, 1)
    assert "model m is not ready" in info.value.message


def test_a_model_whose_workers_could_not_load_says_why_and_no_retry() -> None:
    model = _model()
    model.failure = "its workers could not load: RuntimeError: weights missing"
    with pytest.raises(UpstreamError) as info:
        model.check_ready()
    assert info.value.http_status == 503 and info.value.retry_after_s is None  # retrying will not help
    assert info.value.message == "model m is not served: its workers could not load: RuntimeError: weights missing"


def test_a_ready_model_passes() -> None:
    model = _model()
    model.ready = True
    model.check_ready()
