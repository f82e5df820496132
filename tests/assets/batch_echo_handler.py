"""Test handler: answers each row with the size of the batch it arrived in, its own input, torch's thread count
and how its OpenMP threads wait.

A row {"reject": reason} is refused on its own with status 422 (the rest of its batch is answered)."""

import json
import os

import torch
from ts.torch_handler.base_handler import BaseHandler


class BatchEchoHandler(BaseHandler):
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        answers = []
        for index, row in enumerate(data):
            # {"data": ...} for a plain instance; one input per key for a dict instance
            value = {key: json.loads(raw) for key, raw in row.items()}
            value = value["data"] if list(value) == ["data"] else value
            if isinstance(value, dict) and "reject" in value:
                context.set_response_status(422, f"rejected: {value['reject']}", index)
                answers.append(f"rejected: {value['reject']}")
                continue
            answers.append({"batch_size": len(data), "echo": value, "threads": torch.get_num_threads(),
                            "spin": os.environ.get("GOMP_SPINCOUNT")})
        return answers
