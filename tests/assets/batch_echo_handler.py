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
            # {"data": ...} for a plain instance; one input per key for a dict instance
            value = {key: json.loads(raw) for key, raw in row.items()}
            value = value["data"] if list(value) == ["data"] else value
            answers.append({"batch_size": len(data), "echo": value, "threads": torch.get_num_threads()})
        return answers
