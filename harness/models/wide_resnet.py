"""Wide ResNet WRN-d-k (Zagoruyko & Komodakis 2016), pre-activation, as used by the paper
and uncertainty-baselines for CIFAR. WRN-28-10 has 36.5M parameters. Variants (MC dropout,
BatchEnsemble, MIMO, TreeNet) are built from it by harness/models/variants.py."""
from torch import nn

from harness.core.errors import check_integer


class PreActBlock(nn.Module):
    # Its forward below, declared to sparse inference (harness/kernels/inference.py,
    # FusedPreActBlock), which computes it with bn2 folded into conv1 and the passes fused.
    pre_activation_residual = True

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x):
        out = self.bn1(x).relu()
        # The projection shortcut sees the pre-activated input, as in the original WRN.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.bn2(out).relu())
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), "
                             f"got {depth}")
        blocks = (depth - 4) // 6
        self.architecture = f"wrn{depth}_{width}"
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        layers = []
        in_planes = widths[0]
        for group, planes in enumerate(widths[1:]):
            for index in range(blocks):
                stride = 2 if group > 0 and index == 0 else 1
                layers.append(PreActBlock(in_planes, planes, stride))
                in_planes = planes
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return _classify(self.bn, self.pool, self.fc, self.blocks(self.conv1(x)))


def _classify(bn: nn.Module, pool: nn.Module, fc: nn.Module, features):
    return fc(pool(bn(features).relu()).flatten(1))


class Head(nn.Module):
    """The final BN-ReLU, pooling and classifier as one stage (for `stages`)."""

    def __init__(self, model: WideResNet):
        super().__init__()
        self.bn, self.pool, self.fc = model.bn, model.pool, model.fc

    def forward(self, x):
        return _classify(self.bn, self.pool, self.fc, x)


def stages(model: WideResNet) -> list[nn.Module]:
    """The network as a chain: the first convolution, each residual block, the head."""
    return [model.conv1, *model.blocks, Head(model)]


def wide_resnet(depth: int = 28, width: int = 10, num_classes: int = 10,
                in_channels: int = 3) -> WideResNet:
    check_integer("wide_resnet.width", width, 1)
    return WideResNet(depth, width, num_classes, in_channels)
