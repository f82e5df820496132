"""Image classification answering in the runtime description's shape: {"class": ..., "confidence": ...}.

TorchServe's image_classifier does the image work (decode, resize, crop, normalise,
batch); only the answer changes: the best class and its probability per image.
"""

from typing import Any

import torch
from ts.torch_handler.image_classifier import ImageClassifier


class TopClassHandler(ImageClassifier):  # type: ignore[misc]
    def postprocess(self, data: torch.Tensor) -> list[dict[str, Any]]:
        probabilities = torch.softmax(data, dim=1)
        confidence, index = probabilities.max(dim=1)
        return [
            {"class": self.mapping[str(int(i))] if self.mapping else str(int(i)), "confidence": round(float(c), 4)}
            for c, i in zip(confidence, index)
        ]
