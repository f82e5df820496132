"""Test handler whose workers never load: TorchServe keeps retrying, start-up must time out."""

from ts.torch_handler.base_handler import BaseHandler


class BrokenHandler(BaseHandler):
    def initialize(self, context):
        raise RuntimeError("this model cannot load: broken on purpose")
