"""The runtime description's formats and request/response examples, against one real multi-model server.

Storage, one model per directory plus a MAR, as a user would lay it out:
  image/          resnet18 TorchScript + index_to_name.json + config.json {"handler": "image_classifier"}
  image_top1/     the same model with handler.py answering {"class", "confidence"}, the seed's shape
  text/           sentiment model.pt + handler.py + vocab.json
  eager/          the seed's MyModel: model.py + model.pth
  custom_input/   TorchScript taking input_ids + attention_mask
  custom-resnet.mar   the seed's custom image handler, built with the torch-model-archiver command
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from tests.helpers import ROOT, Server, http, running

pytestmark = pytest.mark.integration
EXAMPLES = ROOT / "examples"
SEED_TEXTS = ["This movie was absolutely fantastic! Great acting and plot.", "Terrible movie, waste of time."]


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / name / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("storage")
    for name, directory in (("image_classifier", "image"), ("image_top1", "image_top1"), ("text_classifier", "text"),
                            ("eager", "eager"), ("custom_input", "custom_input")):
        _example(name).build(root / directory)
    built = _example("custom_image_handler").build(tmp_path_factory.mktemp("custom"))
    shutil.copy(built / "custom-resnet.mar", root / "custom-resnet.mar")
    return root


@pytest.fixture(scope="module")
def server(storage: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(Server(storage, tmp_path_factory.mktemp("seed-server")), timeout=300) as srv:
        yield srv


@pytest.fixture(scope="module")
def png() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _predict(server: Server, model: str, instances: list[Any]) -> Any:
    status, body = http("POST", f"{server.url}/v1/models/{model}:predict", {"instances": instances})
    assert status == 200, body
    return body["predictions"]


def _resnet_probabilities(model: torch.nn.Module, image: bytes, size: tuple[int, int] | None = None) -> torch.Tensor:
    steps = [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    tensor = transforms.Compose(steps)(Image.open(io.BytesIO(image)).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        return torch.softmax(model(tensor), dim=1)[0]


def test_every_model_is_served(server: Server) -> None:
    status, body = http("GET", f"{server.url}/v1/models")
    assert status == 200
    assert sorted(body["models"]) == ["custom-resnet", "custom_input", "eager", "image", "image_top1", "text"]


def test_image_classification_with_the_builtin_handler(server: Server, storage: Path, png: bytes) -> None:
    (prediction,) = _predict(server, "image", [{"data": base64.b64encode(png).decode()}])
    categories = json.loads((storage / "image" / "index_to_name.json").read_text())
    assert len(prediction) == 5 and set(prediction) <= set(categories.values())
    expected = _resnet_probabilities(torch.jit.load(str(storage / "image" / "model.pt")), png)
    top = torch.topk(expected, 5)
    assert list(prediction) == [categories[str(int(i))] for i in top.indices]  # ranked, by class name
    np.testing.assert_allclose(list(prediction.values()), top.values.tolist(), atol=1e-4)


def test_image_classification_in_the_seeds_shape(server: Server, storage: Path, png: bytes) -> None:
    (prediction,) = _predict(server, "image_top1", [{"data": base64.b64encode(png).decode()}])
    assert set(prediction) == {"class", "confidence"}
    expected = _resnet_probabilities(torch.jit.load(str(storage / "image_top1" / "model.pt")), png)
    categories = json.loads((storage / "image_top1" / "index_to_name.json").read_text())
    assert prediction["class"] == categories[str(int(expected.argmax()))]
    assert abs(prediction["confidence"] - float(expected.max())) < 1e-3


def test_the_seeds_custom_image_handler_ranks_top_5(server: Server, png: bytes, storage: Path) -> None:
    (prediction,) = _predict(server, "custom-resnet", [{"data": base64.b64encode(png).decode()}])
    assert [set(item) for item in prediction] == [{"class", "probability"}] * 5
    probabilities = [item["probability"] for item in prediction]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) < 1
    import torchvision.models as models

    torch.manual_seed(0)
    reference = models.resnet18(weights=None).eval()  # the build script's weights, same seed
    expected = torch.topk(_resnet_probabilities(reference, png), 5)
    categories = models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert [item["class"] for item in prediction] == [categories[int(i)] for i in expected.indices]
    np.testing.assert_allclose(probabilities, expected.values.tolist(), atol=1e-4)


def test_text_classification_in_the_seeds_shape(server: Server) -> None:
    predictions = _predict(server, "text", SEED_TEXTS)
    assert [p["label"] for p in predictions] == ["POSITIVE", "NEGATIVE"]
    assert all(set(p) == {"label", "score"} and 0.5 < p["score"] <= 1 for p in predictions)


def test_the_text_handler_refuses_what_is_not_a_text_even_though_every_value_arrives_as_bytes(
        server: Server) -> None:
    """123 arrives as b"123" and "" as b"": a type check never fires, so the handler checks what it decodes.
    A bad instance is refused on its own row (context.set_response_status); the request names it."""
    for instances, index in (([123, ""], 0), ([SEED_TEXTS[0], 123], 1), ([SEED_TEXTS[0], [1, 2]], 1)):
        status, body = http("POST", f"{server.url}/v1/models/text:predict", {"instances": instances})
        assert status == 400, body
        assert body["error"].startswith(f"instance {index}: model text: each instance must be a text with words"), body
    assert [p["label"] for p in _predict(server, "text", SEED_TEXTS)] == ["POSITIVE", "NEGATIVE"]  # and it serves on


def test_explain_reaches_the_handlers_explain_path(server: Server) -> None:
    status, body = http("POST", f"{server.url}/v1/models/text:explain", {"instances": SEED_TEXTS[:1]})
    assert status == 200, body
    (explanation,) = body["explanations"]
    assert explanation["label"] == "POSITIVE"
    contributions = explanation["word_contributions"]
    assert {"fantastic", "great", "movie"} <= set(contributions)
    assert contributions["fantastic"] > 0 and contributions["great"] > 0


def test_explain_without_handler_support_is_501(server: Server) -> None:
    status, body = http("POST", f"{server.url}/v1/models/eager:explain", {"instances": [[0.0] * 784]})
    assert status == 501 and "has no explain support" in body["error"]


def test_custom_input_reaches_the_model_as_named_inputs(server: Server, storage: Path) -> None:
    instance = {"input_ids": [101, 2023, 2003, 102], "attention_mask": [1, 1, 1, 1]}
    (prediction,) = _predict(server, "custom_input", [instance])
    model = torch.jit.load(str(storage / "custom_input" / "model.pt"))
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([instance["input_ids"]]),
                          attention_mask=torch.tensor([instance["attention_mask"]]))[0]
    np.testing.assert_allclose(prediction, expected.tolist(), atol=1e-6)


def test_eager_model_equals_torch_in_process(server: Server, storage: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.random((3, 784)).round(4).tolist()
    predictions = _predict(server, "eager", images)
    spec = importlib.util.spec_from_file_location("seed_model", storage / "eager" / "model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.MyModel()
    model.load_state_dict(torch.load(storage / "eager" / "model.pth", weights_only=True))
    with torch.no_grad():
        expected = model(torch.tensor(images, dtype=torch.float32))
    np.testing.assert_allclose(predictions, expected.tolist(), atol=1e-5)


def test_eager_input_of_the_wrong_shape_is_400(server: Server) -> None:
    status, body = http("POST", f"{server.url}/v1/models/eager:predict", {"instances": [[1.0, 2.0]]})
    assert status == 400, body
    assert "the model rejected inputs of shape data [1, 2]" in body["error"]
