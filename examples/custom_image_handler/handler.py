# The runtime description's custom image handler, completed so it runs: its own
# preprocessing (resize, crop, normalise) and a top-5 postprocess with class names
# from class_mapping.json (packed with --extra-files).
import base64
import io
import json
import os

import torch
from PIL import Image
from torchvision import transforms
from ts.torch_handler.image_classifier import ImageClassifier


class CustomImageHandler(ImageClassifier):
    def __init__(self):
        super(CustomImageHandler, self).__init__()
        self.transform = transforms.Compose([
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406],
                                 [0.229, 0.224, 0.225])
        ])

    def initialize(self, context):
        super().initialize(context)
        model_dir = context.system_properties.get("model_dir")
        with open(os.path.join(model_dir, "class_mapping.json")) as f:
            self.mapping = json.load(f)

    def preprocess(self, data):
        """Custom preprocessing logic"""
        images = []
        for row in data:
            image = row.get("data") or row.get("body")
            if isinstance(image, str):
                image = base64.b64decode(image)
            image = Image.open(io.BytesIO(image)).convert("RGB")
            images.append(self.transform(image))
        return torch.stack(images).to(self.device)

    def postprocess(self, output):
        """Custom postprocessing logic"""
        probabilities = torch.nn.functional.softmax(output, dim=1)
        top5_prob, top5_indices = torch.topk(probabilities, 5)

        results = []
        for i in range(len(output)):
            result = []
            for j in range(5):
                result.append({
                    "class": self.mapping[str(top5_indices[i][j].item())],
                    "probability": top5_prob[i][j].item()
                })
            results.append(result)
        return results
