"""kserve-torchserve: the PyTorch runtime for KServe, TorchServe behind KServe's model server."""

__version__ = "0.1.0"
