"""The ResNet backbone, written here instead of imported from torchvision.

Why: ``import torchvision`` costs about 1.3 s of CPU (it pulls in ``torch._dynamo`` through its
detection ops), paid by every process that builds a model: the app's first page load, each
fine-tune job, the CLI. The encoder needs only the five ResNet constructors.

The modules, their names and their order are torchvision's (``conv1, bn1, relu, maxpool,
layer1..layer4, avgpool, fc``; blocks ``conv1/bn1/conv2/bn2[/conv3/bn3], downsample``), so
torchvision-format state dicts (ImageNet weights, the original code's checkpoints) load with
``strict=True``. The random initialisation is torchvision's too, drawn in the same order (He
normal with fan-out for convolutions, BN weight 1 and bias 0, PyTorch's default for the
classifier), so a seeded model is bit-identical to one built with torchvision
(tests/test_resnet.py checks both against torchvision where it is installed).

Architecture facts (He et al., 2016): a 7×7 stride-2 stem and a 3×3 stride-2 max-pool, then four
stages of 64, 128, 256 and 512 planes, the last three starting with stride 2; 18/34 layers use
two-conv "basic" blocks, 50/101/152 three-conv "bottleneck" blocks with 4× wider outputs; a 1×1
convolution + BN projects the shortcut where the shape changes.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet", "BLOCKS", "STAGE_BLOCKS"]


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=k // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BN; the shortcut is added before the last ReLU."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        y += x if self.downsample is None else self.downsample(x)
        return self.relu(y)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride), 1×1 expand to 4× the planes, each with BN."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(y)))))
        y += x if self.downsample is None else self.downsample(x)
        return self.relu(y)


# depth -> (block type, blocks per stage)
STAGE_BLOCKS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3)),
                101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}
BLOCKS = (BasicBlock, Bottleneck)


class ResNet(nn.Module):
    """An ImageNet ResNet with torchvision's module names (see the module docstring)."""

    def __init__(self, block: type[nn.Module], counts: tuple[int, int, int, int], num_classes: int = 1000):
        super().__init__()
        self._width = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(block, 64, counts[0], 1)
        self.layer2 = self._stage(block, 128, counts[1], 2)
        self.layer3 = self._stage(block, 256, counts[2], 2)
        self.layer4 = self._stage(block, 512, counts[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():           # same order as torchvision, so the same random draws
            if getattr(getattr(m, "weight", None), "is_meta", False):
                continue                   # built to receive a checkpoint (see decoder.init_conv_bn)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, block, planes: int, n: int, stride: int) -> nn.Sequential:
        out = planes * block.expansion
        down = None
        if stride != 1 or self._width != out:
            down = nn.Sequential(_conv(self._width, out, 1, stride), nn.BatchNorm2d(out))
        blocks = [block(self._width, planes, stride, down)]
        self._width = out
        blocks += [block(out, planes) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet(depth: int) -> ResNet:
    """A randomly initialised ResNet-``depth`` (18, 34, 50, 101 or 152)."""
    block, counts = STAGE_BLOCKS[depth]
    return ResNet(block, counts)
