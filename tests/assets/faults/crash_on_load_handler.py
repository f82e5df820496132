"""Test handler whose workers crash while loading, every time (a missing weight file, a bad import...)."""

from ts.torch_handler.base_handler import BaseHandler


class CrashOnLoadHandler(BaseHandler):
    def initialize(self, context):
        raise RuntimeError("cannot load: weights file model.bin is missing (crashing on purpose)")
