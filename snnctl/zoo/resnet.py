"""ResNet-18 (He et al. 2016) with an ImageNet stem or a small-input stem (CIFAR-style, 32x32).

The activation after each residual add is the block's output neuron in the SNN twin (a spiking
ResNet); the ANN twin is the standard torchvision layout, layer for layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from snnctl.nn.layers import ActivationFactory


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, act: ActivationFactory) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = act()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.act2 = act()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.downsample(x))


def stem(kind: str, in_channels: int, width: int, act: ActivationFactory) -> nn.Sequential:
    if kind == "imagenet":
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), act(),
            nn.MaxPool2d(3, 2, 1),
        )
    if kind == "small":
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), act())
    raise TypeError(f"stem must be 'imagenet' or 'small', got {kind!r}")


def build_resnet18(
    act: ActivationFactory,
    num_classes: int = 1000,
    in_channels: int = 3,
    stem_type: str = "imagenet",
    width: int = 64,
) -> nn.Module:
    blocks: list[nn.Module] = [stem(stem_type, in_channels, width, act)]
    c_in = width
    for stage, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
        stride = 1 if stage == 0 else 2
        blocks += [BasicBlock(c_in, c_out, stride, act), BasicBlock(c_out, c_out, 1, act)]
        c_in = c_out
    blocks += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*blocks)
