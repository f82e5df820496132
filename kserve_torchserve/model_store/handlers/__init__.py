"""Handlers kserve-torchserve packs into archives it builds (copied into the .mar, run by TorchServe's workers)."""

from pathlib import Path

DEFAULT_HANDLER = Path(__file__).with_name("tensor_handler.py")
