"""Test handler: answers each row with the size of the batch it arrived in, its own input, and torch's thread count."""

import json

import torch
from ts.torch_handler.base_handler import BaseHandler


class BatchEchoHandler(BaseHandler):
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        answers = []
        for row in data:
            value = row.get("data") if row.get("data") is not None else row.get("body")
            if isinstance(value, (bytes, bytearray)):
                value = json.loads(value)
            answers.append({"batch_size": len(data), "echo": value, "threads": torch.get_num_threads()})
        return answers
