# The runtime description's eager-mode model: TorchServe imports this file and builds
# the one class in it; model.pth holds its state dict.
import torch.nn as nn


class MyModel(nn.Module):
    def __init__(self):
        super(MyModel, self).__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        return self.linear(x.view(x.size(0), -1))
