"""torchvision ResNets (ResNet-50 is the paper's ImageNet model), with an optional CIFAR stem
(3x3 stride-1 first conv, no max-pool) for 32x32 inputs."""
import torchvision
from torch import nn
from torchvision.models.resnet import ResNet


def _adapt(model: torchvision.models.ResNet, architecture: str, in_channels: int,
           cifar_stem: bool):
    model.architecture = architecture
    if cifar_stem or in_channels != 3:
        kernel, stride, padding = (3, 1, 1) if cifar_stem else (7, 2, 3)
        model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, kernel, stride, padding,
                                bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if cifar_stem:
        model.maxpool = nn.Identity()
    return model


def resnet50(num_classes: int = 1000, in_channels: int = 3, cifar_stem: bool = False):
    return _adapt(torchvision.models.resnet50(num_classes=num_classes), "resnet50",
                  in_channels, cifar_stem)


def resnet18(num_classes: int = 1000, in_channels: int = 3, cifar_stem: bool = False):
    return _adapt(torchvision.models.resnet18(num_classes=num_classes), "resnet18",
                  in_channels, cifar_stem)


def stages(model: ResNet) -> list[nn.Module]:
    """The network as a chain, as torchvision's `ResNet.forward` runs it: the stem, each
    residual block of layer1-layer4, then pooling and the classifier."""
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    blocks = [block for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
              for block in layer]
    return [stem, *blocks, nn.Sequential(model.avgpool, nn.Flatten(1), model.fc)]
