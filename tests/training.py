"""A tiny network on two separable classes of 4x4 images and a trainer for it: what the loop,
stage and pruning tests train in a fraction of a second."""
import torch
from torch import nn

from harness.data.arrays import ArrayDataset, Augment
from harness.engine.train import Trainer


def blobs(n=96, seed=0):
    """Two separable classes of 4x4 single-channel images."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = (torch.rand(n, 1, 4, 4, generator=generator) * 100 + labels.view(-1, 1, 1, 1)
              * 150).to(torch.uint8)
    return ArrayDataset(images, labels, 2, (0.5,), (0.3,))


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.2),
                         nn.Flatten(), nn.Linear(64, 2))


def trainer(**kwargs):
    settings = dict(epochs=4, batch_size=16, lr=0.1, augment=Augment(1, True), progress=False)
    settings.update(kwargs)
    return Trainer(**settings)


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class SmallNet(nn.Module):
    """Conv (grouped too) + linear, with biases and a norm layer that must stay dense: a net the
    sparse core does not special-case."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, groups=4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.features(x))
