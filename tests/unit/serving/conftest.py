from __future__ import annotations

from typing import Iterator

import pytest

from kserve_torchserve.serving import logs


@pytest.fixture(autouse=True)
def no_folded_lines() -> Iterator[None]:
    """Each test sees every log line: none folded into one an earlier test wrote (logs.FOLDED is global)."""
    logs.FOLDED.forget()
    yield
    logs.FOLDED.forget()
