"""Test handler: answers each row with the version TorchServe loaded it as, so two versions answer differently.

Behaviour by version name (for traffic tests): a version containing "slow" sleeps 1 s per
batch; one containing "flaky" fails every second batch. Row options: {"fail": true} fails
the batch; {"sleep": s} sleeps s seconds first.
"""

import json
import time

from ts.torch_handler.base_handler import BaseHandler


class VersionHandler(BaseHandler):
    def initialize(self, context):
        self.version = context.manifest["model"]["modelVersion"]
        self.calls = 0
        self.initialized = True

    def handle(self, data, context):
        self.calls += 1
        if "flaky" in self.version and self.calls % 2 == 0:
            raise RuntimeError("flaky on purpose")
        if "slow" in self.version:
            time.sleep(1)
        answers = []
        for row in data:
            # {"data": ...} for a plain instance; one input per key for a dict instance
            value = {key: json.loads(raw) for key, raw in row.items()}
            value = value["data"] if list(value) == ["data"] else value
            if isinstance(value, dict) and value.get("fail"):
                raise RuntimeError("failing on purpose")
            if isinstance(value, dict) and value.get("sleep"):
                time.sleep(float(value["sleep"]))
            answers.append({"version": self.version})
        return answers
