"""The files one TorchServe instance starts from: ``config.properties``, ``log4j2.xml``, ``metrics.yaml``."""

from __future__ import annotations

from pathlib import Path

from ..config.log4j2 import render_log4j2
from ..config.metrics_yaml import merged_metrics_config, torchserve_default, user_metrics_file
from ..config.properties import Ports, effective_properties, render_properties
from ..config.settings import TorchServeOptions
from ..model_store.build import ModelStore
from .ports import free_ports
from .process import Layout


def write_config(ts: TorchServeOptions, layout: Layout, store: ModelStore, storage_dir: Path,
                 envelope: bool) -> dict[str, str]:
    """Write TorchServe's files into ``layout`` (on fresh loopback ports); the effective properties.

    The user's own ``config.properties`` (in storage, then ``TS_CONFIG_FILE``) is the base our
    ``TS_*`` settings and fixed security keys go over (``effective_properties``); a
    ``metrics.yaml`` beside the model is merged into TorchServe's own, since TorchServe exports
    only declared metrics.
    """
    user_text = ""
    for path in (store.user_properties, ts.config_file):
        if path is not None:
            user_text += path.read_text() + "\n"
    layout.create()
    props = effective_properties(ts, Ports(*free_ports(5)), str(layout.model_store), user_text, envelope=envelope)
    user_metrics = user_metrics_file(storage_dir)
    if user_metrics is not None and "metrics_config" not in props:
        props["metrics_config"] = str(
            merged_metrics_config(torchserve_default(), user_metrics, layout.root / "metrics.yaml")
        )
    layout.config_file.write_text(render_properties(props))
    layout.log_config.write_text(render_log4j2(ts.log_level))
    return props
