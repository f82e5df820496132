"""Benchmark handler: answers each row with its input's size, so the cost measured is the front's, not a model's."""

from typing import Any

from ts.torch_handler.base_handler import BaseHandler


class SizeHandler(BaseHandler):  # type: ignore[misc]
    def initialize(self, context: Any) -> None:
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, int]]:
        return [{"size": len(row.get("data") or row.get("body") or b"")} for row in data]
