"""Benchmark handler: answers each row with its input's size, so the cost measured is the front's, not a model's."""

from ts.torch_handler.base_handler import BaseHandler


class SizeHandler(BaseHandler):
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        return [{"size": len(row.get("data") or row.get("body") or b"")} for row in data]
