"""The command line: kserve's model server flags (--http_port, --grpc_port, ...) extended with ours."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

DEFAULT_STORAGE_URI = "/mnt/models"  # where KServe's storage initializer puts the model


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """kserve's own parser (--http_port, --grpc_port, ...) extended with ours."""
    from kserve import model_server

    parser = argparse.ArgumentParser(
        prog="python -m kserve_torchserve",
        description="Serve PyTorch models with TorchServe behind the KServe model server "
        "(v1, v2 REST and v2 gRPC). TS_* environment variables configure TorchServe; "
        "see README.md for the list.",
        # A copy: argparse's "resolve" edits the actions it replaces, and kserve's
        # parser must stay as it is for a second call (tests build several).
        parents=[copy.deepcopy(model_server.parser)],
        conflict_handler="resolve",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model_name",
        default=None,
        help="Name to serve a single model under (KServe passes the InferenceService name). "
        "Default: the name inside the model archive.",
    )
    parser.add_argument(
        "--storage_uri",
        default=None,
        help="Where the model is: a local path, file://, s3://, gs://, http(s)://, ... "
        f"Default: $STORAGE_URI, else {DEFAULT_STORAGE_URI} (where KServe mounts it).",
    )
    parser.add_argument(
        "--work_dir",
        type=Path,
        default=None,
        help="Directory for the model store, config.properties, TorchServe's logs and temp files. "
        "Default: a new temporary directory.",
    )
    parser.add_argument(
        "--startup_timeout",
        type=_positive_float,
        default=300.0,
        help="Seconds TorchServe may take to become ready (ping healthy and every worker READY).",
    )
    parser.add_argument(
        "--grace_period",
        type=_positive_float,
        default=30.0,
        help="Seconds to let in-flight requests finish on SIGTERM, and TorchServe to stop before KILL.",
    )
    parser.add_argument(
        "--max_restarts",
        type=int,
        default=5,
        help="TorchServe restarts allowed within --restart_window before the server exits non-zero.",
    )
    parser.add_argument(
        "--restart_window",
        type=_positive_float,
        default=300.0,
        help="Seconds over which --max_restarts is counted.",
    )
    parser.add_argument(
        "--health_interval",
        type=_positive_float,
        default=2.0,
        help="Seconds between checks of TorchServe's worker states (model readiness).",
    )
    parser.add_argument(
        "--max_unpacked_bytes",
        type=int,
        default=32 * 2**30,
        help="Largest size a model archive (.tar.gz/.zip storage URI) may expand to; bigger ones are refused.",
    )
    parser.add_argument(
        "--request_per_instance",
        action="store_true",
        help="Send TorchServe one request per instance (v1) or row (v2) instead of one per client request "
        "split into rows by our envelope in the worker (slower; see benchmarks/README.md).",
    )
    parser.add_argument(
        "--torchserve_batching",
        action="store_true",
        help="Let TorchServe's batcher make each model's dynamic batches from one TorchServe request per client "
        "request, instead of making them in this process and sending TorchServe one request per batch (the "
        "handler sees the same batches either way; ours costs Java and the workers less per request, see "
        "benchmarks/README.md).",
    )
    parser.add_argument(
        "--disable_fast_path",
        action="store_true",
        help="Route v1 :predict and v2 /infer through kserve's FastAPI endpoints, and gRPC ModelInfer through "
        "kserve's interceptors and servicer, too, instead of the fast paths (same answers, more CPU per "
        "request; for debugging).",
    )
    parser.add_argument(
        "--allow_no_models",
        action="store_true",
        help="Start (and be ready) with no model in storage; models come later through POST /models or the v2 "
        "repository extension (KServe's multi-model serving: its agent loads each TrainedModel).",
    )
    parser.add_argument(
        "--enable_model_api",
        action="store_true",
        help="Turn on the /models writes (register, unregister, scale, set-default, traffic); also "
        "TS_ENABLE_MODEL_API=true. They then need the key from TS_MODEL_API_KEY or --model_api_key_file.",
    )
    parser.add_argument(
        "--model_api_key_file",
        type=Path,
        default=None,
        help="File holding the bearer key for the /models writes (instead of TS_MODEL_API_KEY).",
    )
    return parser
