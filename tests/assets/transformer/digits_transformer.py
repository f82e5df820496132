"""A KServe transformer in front of the digits example, written the way KServe's docs write one.

Clients send ``{"instances": [{"image_b64": <base64 of an 8x8 grayscale PNG>}, ...]}``;
``preprocess`` turns each image into the 64 pixel values (0-16) the digits model takes and
hands them on in the predictor's protocol (``--predictor_protocol v1``, ``v2`` or ``grpc-v2``);
kserve's ``Model.predict`` calls the predictor; ``postprocess`` answers
``{"predictions": [[10 probabilities], ...]}`` whichever protocol it was.

    python -m tests.assets.transformer.digits_transformer --model_name digits \
        --predictor_host 127.0.0.1:8080 --predictor_protocol v2 --http_port 8090 --grpc_port 8091
"""

from __future__ import annotations

import argparse
import base64
import io
from typing import Any, Dict, Optional, Union

import numpy as np
from kserve import InferInput, InferRequest, InferResponse, Model, ModelServer, logging, model_server
from kserve.errors import InvalidInput
from kserve.model import PredictorProtocol
from PIL import Image

SIDE = 8  # the digits data set's images are 8x8, pixel values 0-16
GREY_PER_STEP = 16  # a PNG holds 0-255: value v is stored as min(16 v, 255) and read back by rounding


def png_b64(pixels: list[float]) -> str:
    """One image of the data set (64 values 0-16) as the base64 PNG a client would send."""
    grey = np.clip(np.array(pixels, dtype=np.float64).reshape(SIDE, SIDE) * GREY_PER_STEP, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(grey).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def pixels(image_b64: str) -> list[float]:
    try:
        image = Image.open(io.BytesIO(base64.b64decode(image_b64))).convert("L")
    except Exception:
        raise InvalidInput("image_b64 is not a base64-encoded image")
    if image.size != (SIDE, SIDE):
        raise InvalidInput(f"expected an {SIDE}x{SIDE} image, got {image.size[0]}x{image.size[1]}")
    return [float(round(v / GREY_PER_STEP)) for v in np.asarray(image).reshape(-1)]


class DigitsTransformer(Model):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    def preprocess(self, payload: Union[Dict[str, Any], InferRequest], headers: Optional[Dict[str, str]] = None
                   ) -> Union[Dict[str, Any], InferRequest]:
        if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
            raise InvalidInput('expected {"instances": [{"image_b64": "..."}, ...]}')
        rows = np.array([pixels(instance["image_b64"]) for instance in payload["instances"]], dtype=np.float32)
        if self.predictor_config.predictor_protocol == PredictorProtocol.REST_V1.value:
            return {"instances": rows.tolist()}
        tensor = InferInput(name="pixels", datatype="FP32", shape=list(rows.shape), data=rows)
        return InferRequest(model_name=self.name, infer_inputs=[tensor])

    def postprocess(self, result: Union[Dict[str, Any], InferResponse], headers: Optional[Dict[str, str]] = None,
                    response_headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        if isinstance(result, InferResponse):  # v2 over REST or gRPC
            return {"predictions": result.outputs[0].as_numpy().tolist()}
        return result


parser = argparse.ArgumentParser(parents=[model_server.parser])
args, _ = parser.parse_known_args()

if __name__ == "__main__":
    if args.configure_logging:
        logging.configure_logging(args.log_config_file)
    ModelServer().start([DigitsTransformer(args.model_name)])
