"""A handler that adds custom metrics through TorchServe's metrics API (the runtime description's MetricsStore example, in its current form). Declare them in metrics.yaml beside the model.

It keeps BaseHandler.handle, which times the handler (HandlerTime), and overrides the steps.
"""

import json
import time

from ts.torch_handler.base_handler import BaseHandler


class CustomMetricsHandler(BaseHandler):
    def initialize(self, context):
        self.initialized = True

    def preprocess(self, data):
        self.started = time.perf_counter()
        self.context.metrics.add_counter("CustomCounter", len(data))
        return [json.loads(row.get("data") or b"null") for row in data]

    def inference(self, data, *args, **kwargs):
        return data

    def postprocess(self, data):
        self.context.metrics.add_time("CustomTimer", (time.perf_counter() - self.started) * 1000)
        return [{"echo": value} for value in data]
