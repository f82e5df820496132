"""Test handler that fails on request, for the reliability tests (tests/integration/test_reliability_faults.py).

Each row is a JSON object, or a number (seconds to sleep: what a v2 tensor row can carry);
what a row asks for happens to its whole batch:
  {"raise": "why"}       the handler raises RuntimeError(why)
  {"wrong_count": true}  the handler answers one row more than it got
  {"sleep": s}           the batch sleeps s seconds (the longest of its rows), once
  {"allocate_mb": n}     the handler allocates and writes n MiB (for an out-of-memory kill)
Every answered row is {"echo": row, "pid": the worker's pid, "batch": rows in the batch}.
"""

import json
import os
import time

from ts.torch_handler.base_handler import BaseHandler


def _value(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8")  # a string arrives as its UTF-8 text


def _decode(row):
    value = {key: _value(raw) for key, raw in row.items()}
    return value["data"] if list(value) == ["data"] else value


class FaultHandler(BaseHandler):
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        rows = [_decode(row) for row in data]
        asks = [row if isinstance(row, dict) else {"sleep": row} for row in rows]
        for ask in asks:
            if ask.get("raise"):
                raise RuntimeError(ask["raise"])
            if ask.get("allocate_mb"):
                hog = b"\x01" * (int(ask["allocate_mb"]) << 20)  # written, so really resident
                del hog
        time.sleep(max(float(ask.get("sleep") or 0) for ask in asks))
        answers = [{"echo": row, "pid": os.getpid(), "batch": len(rows)} for row in rows]
        if any(ask.get("wrong_count") for ask in asks):
            answers.append({"extra": True})
        return answers
