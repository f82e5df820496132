"""Test handler: echoes each instance after sleeping instance["sleep"] seconds (for drain tests).

A dict instance arrives as one TorchServe input per key: strings as their UTF-8 text,
anything else as JSON text.
"""

import json
import time

from ts.torch_handler.base_handler import BaseHandler


def _decode(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8")


class SleepyHandler(BaseHandler):
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        answers = []
        for row in data:
            value = {key: _decode(raw) for key, raw in row.items()}
            time.sleep(float(value.get("sleep", 0)))
            answers.append({"echo": value})
        return answers
