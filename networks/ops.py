"""Layers and module surgery several families share: plain 3 x 3 / 1 x 1 convolutions and
replacing submodules by kind."""
from typing import Callable

import torch.nn as nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def replace_modules(model: nn.Module, kind: type, make: Callable[[nn.Module], nn.Module]) -> None:
    """Replaces every submodule that is a `kind` by make(it), in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                setattr(parent, name, make(child))
