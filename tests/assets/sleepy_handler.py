"""Test handler: echoes each row after sleeping row["sleep"] seconds (for drain and timeout tests)."""

import json
import time

from ts.torch_handler.base_handler import BaseHandler


class SleepyHandler(BaseHandler):
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        answers = []
        for row in data:
            value = row.get("data") if row.get("data") is not None else row.get("body")
            if isinstance(value, (bytes, bytearray)):
                value = json.loads(value)
            time.sleep(float(value.get("sleep", 0)))
            answers.append({"echo": value})
        return answers
