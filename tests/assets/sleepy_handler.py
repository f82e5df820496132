"""Test handler: echoes each instance after sleeping instance["sleep"] seconds (for drain tests).

A dict instance arrives as one TorchServe input per key, each value JSON text as bytes.
"""

import json
import time

from ts.torch_handler.base_handler import BaseHandler


class SleepyHandler(BaseHandler):
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        answers = []
        for row in data:
            value = {key: json.loads(raw) for key, raw in row.items()}
            time.sleep(float(value.get("sleep", 0)))
            answers.append({"echo": value})
        return answers
